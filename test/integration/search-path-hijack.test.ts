import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardgateClient } from '../../src/client/index.js';
import { AppointmentStatus } from '../../src/gen/shardgate/v1/appointment.js';
import {
  adminUrlOf,
  createTestTopology,
  freshClientId,
  statusOf,
  withPg,
  startTestGateway,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

// CVE-2018-1058 class: objects planted in a schema on the search_path (public, the `$user`
// schema `shardgate`, the client's own schema, the catalog's and shared store's schemas) that
// shadow, or out-match, what a statement means. The gateway pins search_path to pg_catalog and
// names every schema, so none of them may run or change any result.

/** A planted function: it records that it ran, then returns a wrong value. */
interface Plant {
  name: string;
  args: string;
  returns: string;
  value: string;
}

const PLANTED_FUNCTIONS: Plant[] = [
  { name: 'now', args: '', returns: 'timestamptz', value: `'2000-01-01 00:00:00+00'` },
  { name: 'date_trunc', args: 'text, timestamptz', returns: 'timestamptz', value: `'2000-01-01'` },
  {
    name: 'gen_random_uuid',
    args: '',
    returns: 'uuid',
    value: `'00000000-0000-4000-8000-000000000000'`,
  },
  { name: 'lower', args: 'text', returns: 'text', value: `'hijacked'` },
  { name: 'lower', args: 'character varying', returns: 'text', value: `'hijacked'` },
  { name: 'jsonb_build_object', args: 'text, text', returns: 'jsonb', value: `'{"h":1}'` },
  { name: 'jsonb_set', args: 'jsonb, text[], jsonb', returns: 'jsonb', value: `'{"h":1}'` },
  { name: 'to_jsonb', args: 'anyelement', returns: 'jsonb', value: `'{"h":1}'` },
  { name: '"coalesce"', args: 'text, text', returns: 'text', value: `'hijacked'` },
  { name: '"coalesce"', args: 'jsonb, jsonb', returns: 'jsonb', value: `'{"h":1}'` },
  { name: 'pg_notify', args: 'text, text', returns: 'void', value: '' },
  { name: 'pg_advisory_xact_lock', args: 'bigint', returns: 'void', value: '' },
  { name: 'pg_advisory_xact_lock', args: 'integer', returns: 'void', value: '' },
  { name: 'hashtext', args: 'text', returns: 'integer', value: '0' },
  { name: 'current_setting', args: 'text', returns: 'text', value: `'hijacked'` },
  { name: 'to_regclass', args: 'text', returns: 'regclass', value: 'NULL' },
  { name: 'unnest', args: 'anyarray', returns: 'SETOF anyelement', value: '' },
];

/** Operators that would match everything (or nothing) if the gateway ever resolved them. */
const PLANTED_OPERATORS = [
  { op: '=', left: 'uuid', right: 'uuid', returns: 'boolean', value: 'true' },
  { op: '=', left: 'text', right: 'text', returns: 'boolean', value: 'true' },
  { op: '<', left: 'timestamptz', right: 'timestamptz', returns: 'boolean', value: 'true' },
  { op: '>', left: 'timestamptz', right: 'timestamptz', returns: 'boolean', value: 'true' },
  { op: '||', left: 'text', right: 'text', returns: 'text', value: `'hijacked'` },
  { op: '->>', left: 'jsonb', right: 'text', returns: 'text', value: `'hijacked'` },
];

/** Tables named like the gateway's, for schemas that do not have them already. */
const PLANTED_TABLES = [
  'appointments',
  'handoffs',
  'state',
  'request_ids',
  'tenants',
  'shards',
  'ring',
  'tokens',
  'benchmarks',
  'knowledge_entries',
];

function plantSql(schema: string, withTables: boolean): string {
  const log = (what: string): string =>
    `INSERT INTO public.hijack_log VALUES (${`'${schema}.${what}'`});`;
  const functions = PLANTED_FUNCTIONS.map(
    (f) => `CREATE FUNCTION ${schema}.${f.name}(${f.args}) RETURNS ${f.returns}
      LANGUAGE plpgsql AS $$ BEGIN ${log(f.name)} RETURN ${f.value}; END $$;`,
  );
  const operators = PLANTED_OPERATORS.map((o, i) => {
    const fn = `${schema}.hijack_op_${i}`;
    return `CREATE FUNCTION ${fn}(${o.left}, ${o.right}) RETURNS ${o.returns}
        LANGUAGE plpgsql AS $$ BEGIN ${log(`operator ${o.op}`)} RETURN ${o.value}; END $$;
      CREATE OPERATOR ${schema}.${o.op} (LEFTARG = ${o.left}, RIGHTARG = ${o.right}, FUNCTION = ${fn});`;
  });
  const tables = withTables
    ? PLANTED_TABLES.map(
        (t) => `CREATE TABLE ${schema}.${t} AS SELECT 'hijacked'::text AS planted;
          GRANT ALL ON ${schema}.${t} TO PUBLIC;`,
      )
    : [];
  return [...functions, ...operators, ...tables].join('\n');
}

/** Plants in `schemas` of the database behind `url`, as the superuser. */
async function plant(url: string, schemas: { name: string; tables: boolean }[]): Promise<void> {
  await withPg(adminUrlOf(url), async (c) => {
    await c.query(`CREATE TABLE IF NOT EXISTS public.hijack_log (what text NOT NULL);
      GRANT INSERT ON public.hijack_log TO PUBLIC;
      GRANT USAGE ON SCHEMA public TO PUBLIC;`);
    for (const s of schemas) {
      await c.query(
        `CREATE SCHEMA IF NOT EXISTS ${s.name}; GRANT USAGE ON SCHEMA ${s.name} TO PUBLIC`,
      );
      await c.query(plantSql(s.name, s.tables));
    }
  });
}

async function hijackLog(url: string): Promise<string[]> {
  return withPg(adminUrlOf(url), async (c) =>
    (await c.query<{ what: string }>('SELECT what FROM public.hijack_log')).rows.map((r) => r.what),
  );
}

// Version 4 (random ids) or 7 (handoff ids, time-ordered).
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[47][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * Replaces what differs between two runs on different clients by design — ids (numbered by first
 * appearance), the client id, its schema, page tokens — and checks every server-made timestamp
 * is from this run (a planted now() would say 2000).
 */
function normalizer(clientId: string, startedMs: number): (value: unknown) => unknown {
  const ids = new Map<string, string>();
  const walk = (value: unknown, key = ''): unknown => {
    if (value instanceof Date) {
      if (!['createdAt', 'updatedAt', 'churnedAt'].includes(key)) return value.toISOString();
      expect(value.getTime(), key).toBeGreaterThanOrEqual(startedMs - 1_000);
      expect(value.getTime(), key).toBeLessThanOrEqual(Date.now() + 1_000);
      return 'this run';
    }
    if (Array.isArray(value)) return value.map((v) => walk(v));
    if (value && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k)]));
    }
    if (typeof value !== 'string') return value;
    if (value.includes(clientId)) return value.replaceAll(clientId, '<client>');
    if (key === 'schema') return '<schema>';
    if (key === 'nextPageToken' || key === 'pageToken') return value === '' ? '' : '<token>';
    if (UUID.test(value)) {
      expect(value).not.toBe('00000000-0000-4000-8000-000000000000');
      if (!ids.has(value)) ids.set(value, `<id ${ids.size + 1}>`);
      return ids.get(value);
    }
    return value;
  };
  return (value) => walk(value);
}

/** Every API a client's agents use, in one run; returns each result, normalized. */
async function exercise(client: ShardgateClient, clientId: string): Promise<unknown[]> {
  const norm = normalizer(clientId, Date.now());
  const out: unknown[] = [];
  const record = (value: unknown): void => void out.push(norm(value));
  record(await client.tenants.createTenant({ clientId }));
  const made = [];
  for (const n of [3, 1, 2]) {
    const res = await client.appointments.createAppointment({
      clientId,
      appointment: {
        id: '',
        clientPhone: `+1 555 010${n}`,
        scheduledAt: new Date(Date.UTC(2031, 0, n, 9)),
        serviceType: `Mixed Case Service ${n}`,
        status: AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED,
      },
      requestId: n === 2 ? crypto.randomUUID() : '',
    });
    record(res);
    made.push(res.appointment!.id);
  }
  record(await client.appointments.getAppointment({ clientId, id: made[1]! }));
  const page1 = await client.appointments.listAppointments({ clientId, pageSize: 2 });
  record(page1);
  record(
    await client.appointments.listAppointments({
      clientId,
      pageSize: 2,
      pageToken: page1.nextPageToken,
    }),
  );
  record(
    await client.appointments.listAppointments({
      clientId,
      scheduledAfter: new Date(Date.UTC(2031, 0, 2)),
    }),
  );
  record(
    await client.appointments.updateAppointment({
      clientId,
      appointment: { id: made[0]!, status: AppointmentStatus.APPOINTMENT_STATUS_CONFIRMED },
      updateMask: ['status'],
    }),
  );
  record(await client.appointments.cancelAppointment({ clientId, id: made[2]! }));
  record(
    await client.appointments.listAppointments({
      clientId,
      statuses: [AppointmentStatus.APPOINTMENT_STATUS_CONFIRMED],
    }),
  );
  for (const n of [1, 2, 3]) {
    record(
      await client.handoffs.appendHandoff({
        clientId,
        handoff: {
          id: '',
          fromAgent: 'Intake',
          toAgent: n === 3 ? 'billing' : 'dispatch',
          version: n,
          summary: { n, note: `Caller ${n}`, nested: { tags: ['A', 'b'], ok: true } },
        },
      }),
    );
  }
  record(await client.handoffs.listHandoffs({ clientId, toAgent: 'dispatch' }));
  record(await client.handoffs.listHandoffs({ clientId, fromAgent: 'Intake', pageSize: 2 }));
  record(await client.handoffs.getLatestHandoff({ clientId, toAgent: 'dispatch' }));
  record(await client.state.getState({ clientId }));
  record(await client.state.putState({ clientId, document: { step: 'One', list: [1, 2] } }));
  record(await client.state.patchState({ clientId, patch: { extra: { deep: 'X' }, step: null } }));
  record(
    await statusOf(
      client.state.putState({ clientId, document: { lost: true }, expectedVersion: 1 }),
    ),
  );
  record(await client.state.patchState({ clientId, patch: { more: 1 }, expectedVersion: 2 }));
  record(await client.state.getState({ clientId }));
  record(await client.tenants.getTenant({ clientId }));
  const listed = await client.tenants.listTenants({ pageSize: 1000 });
  record(listed.tenants.filter((t) => t.clientId === clientId));
  record(await client.tenants.churnTenant({ clientId }));
  record(await statusOf(client.state.getState({ clientId })));
  record(await client.tenants.reactivateTenant({ clientId }));
  const industry = `industry-${clientId}`;
  record(
    await client.shared.putBenchmark({
      benchmark: { industry, metric: 'close_rate', value: 0.25, unit: 'ratio', source: 'test' },
    }),
  );
  record(await client.shared.getBenchmark({ industry, metric: 'close_rate' }));
  record(await client.shared.listBenchmarks({ industry }));
  const topic = `topic-${clientId}`;
  record(
    await client.shared.addKnowledgeEntry({
      entry: { id: '', topic, agent: 'Intake', content: 'Mixed CASE content' },
    }),
  );
  record(await client.shared.listKnowledgeEntries({ topic }));
  return out;
}

describe('objects planted to shadow what the gateway queries (search_path hijack)', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  beforeAll(async () => {
    topology = await createTestTopology(1);
    gw = await startTestGateway(topology);
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('change no result of any API and never run', async () => {
    const before = freshClientId('clean');
    const baseline = await exercise(gw.client, before);
    expect(baseline.length).toBeGreaterThan(30);
    const everything = async (clientId: string): Promise<unknown> => ({
      appointments: await gw.client.appointments.listAppointments({ clientId, pageSize: 100 }),
      handoffs: await gw.client.handoffs.listHandoffs({ clientId, pageSize: 100 }),
      state: await gw.client.state.getState({ clientId }),
      tenant: await gw.client.tenants.getTenant({ clientId }),
    });
    const beforeData = await everything(before);

    const shard = topology.shards[0]!.url;
    const { tenant } = await gw.client.tenants.getTenant({ clientId: before });
    await plant(shard, [
      { name: 'public', tables: true },
      { name: 'shardgate', tables: true }, // `$user` in the default search_path
      { name: `"${tenant!.schema}"`, tables: false },
    ]);
    await plant(topology.catalogUrl, [
      { name: 'public', tables: true },
      { name: 'shardgate', tables: false },
      { name: 'shared', tables: false },
    ]);

    // Data written before is read back unchanged, and a new client behaves exactly as before.
    expect(await everything(before)).toEqual(beforeData);
    const after = freshClientId('planted');
    expect(await exercise(gw.client, after)).toEqual(baseline);
    // The client that was there first works on too, with its own schema full of planted objects.
    const { state } = await gw.client.state.patchState({ clientId: before, patch: { again: 1 } });
    expect(state?.version).toBe(4);
    expect(state?.document).toEqual({ list: [1, 2], extra: { deep: 'X' }, more: 1, again: 1 });

    expect(await hijackLog(shard)).toEqual([]);
    expect(await hijackLog(topology.catalogUrl)).toEqual([]);
    // The planted objects are live: the same statement without the pinned search_path runs them.
    await withPg(adminUrlOf(shard), async (c) => {
      await c.query('SET search_path = public, pg_catalog');
      const res = await c.query<{ t: Date }>('SELECT now() AS t');
      expect(res.rows[0]!.t.getUTCFullYear()).toBe(2000);
    });
    expect(await hijackLog(shard)).toEqual(['public.now']);
  });
});
