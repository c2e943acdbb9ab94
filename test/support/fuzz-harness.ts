import fc from 'fast-check';
import { createChannel, createClient, Status } from 'nice-grpc';
import { HealthDefinition } from 'nice-grpc-server-health';
import pg from 'pg';
import { expect } from 'vitest';
import type { GatewayConfig } from '../../src/core/config.js';
import { validClientId } from './arbitraries.js';
import {
  createTestTopology,
  freshClientId,
  startTestGateway,
  type TestGateway,
  type TestTopology,
} from './harness.js';

/**
 * What the fuzz tests share: a gateway on real Postgres, direct connections behind its back, a
 * tenant the fuzz may write to, and a canary tenant nothing may ever touch.
 */
export interface FuzzWorld {
  topology: TestTopology;
  gw: TestGateway;
  catalog: pg.Client;
  shards: Map<string, pg.Client>;
  /** An active tenant that generated requests target; valid writes land here. */
  fuzz: SeededTenant;
  /** An active tenant no request targets: its rows must stay identical. */
  canary: SeededTenant;
  /** By database name ('catalog' or a shard): the statement `fingerprint` runs there. */
  fingerprintQueries: Map<string, string>;
  /** grpc.health.v1 answers SERVING. */
  expectHealthy(): Promise<void>;
  /** grpc.health.v1 answers SERVING and a known-good read of the canary succeeds. */
  expectServing(): Promise<void>;
  close(): Promise<void>;
}

/** A tenant with two appointments, two handoffs and a state document, plus page tokens over them. */
export interface SeededTenant {
  clientId: string;
  shard: string;
  schema: string;
  appointmentIds: string[];
  handoffIds: string[];
  tokens: { appointments: string; handoffs: string };
}

const appointment = {
  clientPhone: '+1 555 0100',
  scheduledAt: new Date('2031-01-01T09:00:00.000Z'),
  serviceType: 'furnace-repair',
};
const handoff = { fromAgent: 'intake', toAgent: 'dispatch', version: 1, summary: { note: 'ok' } };

/** Starts a topology and gateway and seeds the fuzz and canary tenants. */
export async function createFuzzWorld(overrides: Partial<GatewayConfig> = {}): Promise<FuzzWorld> {
  const topology = await createTestTopology();
  const gw = await startTestGateway(topology, overrides);
  const catalog = new pg.Client({ connectionString: topology.catalogUrl });
  await catalog.connect();
  const shards = new Map<string, pg.Client>();
  for (const s of topology.shards) {
    const db = new pg.Client({ connectionString: s.url });
    await db.connect();
    shards.set(s.name, db);
  }
  const [fuzz, canary] = await Promise.all([seed(gw, 'fuzz'), seed(gw, 'canary')]);
  await gw.client.state.putState({ clientId: canary.clientId, document: { canary: ['a', 1] } });
  const fingerprintQueries = new Map([
    ['catalog', fingerprintQuery(await tablesIn(catalog, ['shardgate', 'shared']))],
  ]);
  for (const [name, db] of shards) {
    const schemas = [fuzz, canary].filter((t) => t.shard === name).map((t) => t.schema);
    fingerprintQueries.set(name, fingerprintQuery(await tablesIn(db, schemas)));
  }
  const channel = createChannel(gw.gateway.address);
  const health = createClient(HealthDefinition, channel);
  const expectHealthy = async (): Promise<void> => {
    const { status } = await health.check({ service: '' }, { signal: AbortSignal.timeout(5_000) });
    expect(status).toBe(1); // SERVING
  };
  return {
    topology,
    gw,
    catalog,
    shards,
    fuzz,
    canary,
    fingerprintQueries,
    expectHealthy,
    async expectServing() {
      await expectHealthy();
      const { state } = await gw.client.state.getState(
        { clientId: canary.clientId },
        { deadline: 5_000 },
      );
      expect(state?.document).toEqual({ canary: ['a', 1] });
    },
    async close() {
      channel.close();
      await Promise.all([catalog.end(), ...[...shards.values()].map((db) => db.end())]);
      await gw.close();
    },
  };
}

async function seed(gw: TestGateway, prefix: string): Promise<SeededTenant> {
  const clientId = freshClientId(prefix);
  const { tenant } = await gw.client.tenants.createTenant({ clientId });
  const appointmentIds: string[] = [];
  const handoffIds: string[] = [];
  for (let i = 0; i < 2; i++) {
    appointmentIds.push(
      (await gw.client.appointments.createAppointment({ clientId, appointment })).appointment!.id,
    );
    handoffIds.push((await gw.client.handoffs.appendHandoff({ clientId, handoff })).handoff!.id);
  }
  const [a, h] = await Promise.all([
    gw.client.appointments.listAppointments({ clientId, pageSize: 1 }),
    gw.client.handoffs.listHandoffs({ clientId, pageSize: 1 }),
  ]);
  return {
    clientId,
    shard: tenant!.shard,
    schema: tenant!.schema,
    appointmentIds,
    handoffIds,
    tokens: { appointments: a.nextPageToken, handoffs: h.nextPageToken },
  };
}

/** Tables a call may write: the catalog's and shared ones, and those of the seeded tenants. */
async function tablesIn(db: pg.Client, schemas: string[]): Promise<string[]> {
  const res = await db.query<{ t: string }>(
    `SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables
      WHERE schemaname = ANY($1) AND (schemaname, tablename) <> ('shardgate', 'audit_events')
      ORDER BY 1`,
    [schemas],
  );
  return res.rows.map((r) => r.t);
}

/**
 * One statement reading a database's shape (schemas, relation count) and the version of every
 * row of `tables` (ctid and xmin: a new, changed or deleted row changes them; a read does not).
 */
function fingerprintQuery(tables: string[]): string {
  const versions = tables.map(
    (t) =>
      `(SELECT md5(coalesce(string_agg(ctid::text || ':' || xmin::text, ',' ORDER BY ctid), '')) FROM ${t}) AS ${pg.escapeIdentifier(t)}`,
  );
  return `SELECT ${[
    "(SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace) AS namespaces",
    '(SELECT count(*) FROM pg_class)::text AS relations',
    ...versions,
  ].join(', ')}`;
}

/**
 * Everything a call could write, read behind the gateway's back: schemas and relations on every
 * database, every row of the catalog's and shared tables (except the audit log, which records
 * rejected admin calls on purpose) and of the fuzz and canary tenants.
 */
export async function fingerprint(world: FuzzWorld): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  await Promise.all(
    [['catalog', world.catalog] as const, ...world.shards].map(async ([name, db]) => {
      out[name] = (await db.query(world.fingerprintQueries.get(name)!)).rows[0];
    }),
  );
  return out;
}

/** The canary's full rows, compared before and after each property. */
export async function canaryContents(world: FuzzWorld): Promise<string[]> {
  const db = world.shards.get(world.canary.shard)!;
  const s = pg.escapeIdentifier(world.canary.schema);
  const out: string[] = [];
  for (const table of ['appointments', 'handoffs', 'state']) {
    const res = await db.query<{ t: string }>(
      `SELECT t::text AS t FROM ${s}.${table} t ORDER BY 1`,
    );
    out.push(...res.rows.map((r) => `${table}: ${r.t}`));
  }
  const tenant = await world.catalog.query<{ t: string }>(
    'SELECT t::text AS t FROM shardgate.tenants t WHERE client_id = $1',
    [world.canary.clientId],
  );
  return [...out, ...tenant.rows.map((r) => `tenant: ${r.t}`)];
}

/** The status a request must get; for INVALID_ARGUMENT, the fields one of which the message names. */
export interface Expected {
  code: Status;
  fields?: readonly string[];
}

/** The common expectations; `invalid` lists the fields one of which the message must name. */
export const OK: Expected = { code: Status.OK };
export const notFound: Expected = { code: Status.NOT_FOUND };
export const failedPrecondition: Expected = { code: Status.FAILED_PRECONDITION };
export const invalid = (fields: readonly string[]): Expected => ({
  code: Status.INVALID_ARGUMENT,
  fields,
});

/** The gateway's default limits.maxMessageBytes (4 MiB), which the fuzz worlds keep. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** Mostly the fuzz tenant, sometimes a valid id that no tenant has. */
export function tenantIdArb(world: FuzzWorld): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.constant(world.fuzz.clientId), weight: 9 },
    { arbitrary: validClientId, weight: 1 },
  );
}

/** NOT_FOUND for a valid client id other than the fuzz tenant's; undefined for the fuzz tenant. */
export function tenantOutcome(world: FuzzWorld, clientId: string): Expected | undefined {
  return clientId === world.fuzz.clientId ? undefined : notFound;
}

/** How a call ended. */
export interface Outcome {
  code: Status;
  details: string;
  response?: unknown;
}

/** Runs a call to its end: the response, or the status of the error (nothing else may escape). */
export async function outcomeOf(call: Promise<unknown>): Promise<Outcome> {
  try {
    return { code: Status.OK, details: '', response: await call };
  } catch (err) {
    const e = err as { code?: unknown; details?: unknown };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, details: String(e.details ?? '') };
  }
}

/** Longest status message a caller may get: enough to name a field and the rule, never an echo. */
export const MAX_MESSAGE_LENGTH = 1024;

/** The outcome is the expected one, and its message is short, names the field, hides internals. */
export function expectClear(name: string, outcome: Outcome, expected: Expected): void {
  const summary = `${name}: got ${Status[outcome.code]} "${outcome.details.slice(0, 300)}"`;
  expect(Status[outcome.code], summary).toBe(Status[expected.code]);
  if (outcome.code === Status.OK) return;
  expect(outcome.details.length, summary).toBeLessThanOrEqual(MAX_MESSAGE_LENGTH);
  expect(outcome.details, summary).not.toMatch(/\n\s+at |\.[jt]s:\d+|node_modules|internal error/);
  if (expected.fields && expected.fields.length > 0) {
    const named = expected.fields.some(
      (f) => outcome.details.includes(f) || outcome.details.includes(f.replace(/\[\d+\]/g, '[]')),
    );
    expect(named, `${summary}; expected it to name one of ${expected.fields.join(', ')}`).toBe(
      true,
    );
  }
}

/** One RPC under fuzz: its requests, what the contract says each must get, and the call. */
export interface FuzzCase<R> {
  name: string;
  arb: fc.Arbitrary<R>;
  /** Turns a generated request into the one sent, e.g. filling in the current version. */
  prepare?(req: R): Promise<R>;
  /** The encoded request: one over the gateway's message limit must get RESOURCE_EXHAUSTED. */
  encode?(req: R): Uint8Array;
  expected(req: R): Expected | Promise<Expected>;
  call(req: R): Promise<unknown>;
  /** True for an RPC whose successful calls write; reads must leave the fingerprint unchanged. */
  writes?: boolean;
  /** Checks a successful call's response, e.g. that values were stored exactly as sent. */
  onOk?(req: R, response: unknown): void | Promise<void>;
  /** Checks every call's side effects, e.g. the audit record of an admin call. */
  after?(req: R, outcome: Outcome): Promise<void>;
  numRuns?: number;
}

/**
 * Runs one property: every generated request gets exactly its expected status with a clear
 * message; a rejected call (and any read) writes nothing; afterwards the gateway still serves
 * and the canary's rows are unchanged. fast-check prints the seed and path of a failure.
 */
export async function fuzz<R>(world: FuzzWorld, c: FuzzCase<R>): Promise<void> {
  const canaryBefore = await canaryContents(world);
  let last = await fingerprint(world);
  const seen = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(c.arb, async (generated) => {
      const req = c.prepare ? await c.prepare(generated) : generated;
      const tooLarge = c.encode && c.encode(req).length > MAX_MESSAGE_BYTES;
      const expected = tooLarge ? { code: Status.RESOURCE_EXHAUSTED } : await c.expected(req);
      const outcome = await outcomeOf(c.call(req));
      seen.set(Status[outcome.code], (seen.get(Status[outcome.code]) ?? 0) + 1);
      // The baseline moves before any assertion, so a failing run cannot skew the runs that
      // fast-check replays while shrinking it.
      const [before, now] = [last, await fingerprint(world)];
      last = now;
      expectClear(c.name, outcome, expected);
      if (outcome.code === Status.OK) await c.onOk?.(req, outcome.response);
      await c.after?.(req, outcome);
      await world.expectHealthy();
      if (outcome.code !== Status.OK || !c.writes)
        expect(now, `${c.name} wrote although it ${Status[outcome.code]}`).toEqual(before);
    }),
    {
      numRuns: c.numRuns ?? 100,
      // To replay a failure: SHARDGATE_FUZZ_SEED and SHARDGATE_FUZZ_PATH from fast-check's report
      // (ids and timestamps differ from run to run, so the replay is close, not exact).
      seed: process.env.SHARDGATE_FUZZ_SEED ? Number(process.env.SHARDGATE_FUZZ_SEED) : undefined,
      path: process.env.SHARDGATE_FUZZ_PATH,
    },
  );
  // SHARDGATE_FUZZ_STATS=1 shows how the runs ended, to check the generators reach every outcome.
  if (process.env.SHARDGATE_FUZZ_STATS) console.log(c.name, Object.fromEntries(seen));
  await world.expectServing();
  expect(await canaryContents(world)).toEqual(canaryBefore);
}

/** A string as the gateway receives it: UTF-8 encoding turns lone surrogates into U+FFFD. */
export function onTheWire<T>(value: T): T {
  if (typeof value === 'string') return Buffer.from(value, 'utf8').toString('utf8') as T;
  if (Array.isArray(value)) return value.map(onTheWire) as T;
  if (typeof value === 'object' && value !== null && !(value instanceof Date)) {
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      Object.defineProperty(o, onTheWire(k), {
        value: onTheWire(v),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return o as T;
  }
  return value;
}
