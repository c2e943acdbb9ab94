import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardgateClient } from '../../src/client/index.js';
import { configSchema } from '../../src/core/config.js';
import { AppointmentStatus } from '../../src/gen/shardgate/v1/appointment.js';
import {
  adminUrlOf,
  createTestTopology,
  eventually,
  freshClientId,
  startTestGateway,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

/** One pooled connection for the shard: both clients' calls take turns on the same session. */
const POOL_OF_ONE = { ...configSchema.parse({}).pool, max: 1 };

type Outcome = 'ok' | 'aborted' | Status;

/** How a call ended: 'ok', 'aborted' (our AbortSignal), or its gRPC status. */
async function outcome(call: Promise<unknown>): Promise<Outcome> {
  try {
    await call;
    return 'ok';
  } catch (err) {
    if ((err as Error).name === 'AbortError') return 'aborted';
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number') return code as Status;
    throw err;
  }
}

/** What one client wrote: tags that must be there, may be there (cancelled), must not be. */
class Ledger {
  readonly acked = new Set<string>();
  readonly maybe = new Set<string>();
  readonly never = new Set<string>();

  /** Files a write under what its outcome proves; any outcome outside `allowed` fails. */
  record(tag: string, result: Outcome, allowed: readonly Outcome[]): void {
    expect(allowed, `${tag} ended ${String(result)}`).toContain(result);
    if (result === 'ok') this.acked.add(tag);
    else if (result === 'aborted' || result === Status.DEADLINE_EXCEEDED) this.maybe.add(tag);
    else this.never.add(tag);
  }
}

/** Writes made with a deadline or signal that may fire before, during or after the statement. */
const RACY: readonly Outcome[] = ['ok', Status.DEADLINE_EXCEEDED, 'aborted'];

interface Agent {
  owner: 'a' | 'b';
  clientId: string;
  schema: string;
  ledger: Ledger;
}

const randomMs = (max: number): number => 1 + Math.floor(Math.random() * max);

const ROUNDS = 12;

/** Every tag a client writes starts with its owner letter (unique-… ones after the prefix). */
const isOwn = (tag: string, owner: string): boolean =>
  tag.startsWith(`${owner}-`) || tag.startsWith(`unique-${owner}-`);

/** Every tag in the client's data: appointment service types, handoff tags, state keys. */
async function tagsOf(client: ShardgateClient, clientId: string): Promise<string[]> {
  const tags: string[] = [];
  let pageToken = '';
  do {
    const page = await client.appointments.listAppointments({
      clientId,
      pageSize: 1000,
      pageToken,
    });
    tags.push(...page.appointments.map((a) => a.serviceType));
    pageToken = page.nextPageToken;
  } while (pageToken);
  do {
    const page = await client.handoffs.listHandoffs({ clientId, pageSize: 1000, pageToken });
    tags.push(...page.handoffs.map((h) => String(h.summary?.tag)));
    pageToken = page.nextPageToken;
  } while (pageToken);
  const { state } = await client.state.getState({ clientId });
  tags.push(...Object.keys(state?.document ?? {}));
  return tags;
}

function appointment(serviceType: string) {
  return {
    id: '',
    clientPhone: '+1 555 0100',
    scheduledAt: new Date(Date.UTC(2031, 5, 1)),
    serviceType,
    status: AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED,
  };
}

function handoff(tag: string, version: number) {
  return { id: '', fromAgent: 'x', toAgent: 'y', version, summary: { tag } };
}

describe('one pooled connection shared by two clients, with errors and cancels', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  let agents: [Agent, Agent];
  const lockers: pg.Client[] = [];

  beforeAll(async () => {
    topology = await createTestTopology(1);
    gw = await startTestGateway(topology, { pool: POOL_OF_ONE });
    const make = async (owner: 'a' | 'b'): Promise<Agent> => {
      const clientId = freshClientId(`pool-${owner}`);
      const { tenant } = await gw.client.tenants.createTenant({ clientId });
      return { owner, clientId, schema: tenant!.schema, ledger: new Ledger() };
    };
    agents = [await make('a'), await make('b')];
    // Input the database itself rejects: a CHECK violation and a unique violation, raised by
    // PostgreSQL mid-statement (the gateway's own validation lets both through).
    await withPg(topology.shards[0]!.url, async (c) => {
      for (const { schema } of agents) {
        const s = pg.escapeIdentifier(schema);
        await c.query(`ALTER TABLE ${s}.appointments
          ADD CONSTRAINT pool_test_reject CHECK (service_type <> 'reject me')`);
        await c.query(`CREATE UNIQUE INDEX pool_test_unique ON ${s}.appointments (service_type)
          WHERE service_type LIKE 'unique-%'`);
      }
    });
  });
  afterAll(async () => {
    await Promise.all(lockers.map((l) => l.end().catch(() => undefined)));
    await gw?.close();
  });

  /** What a round's calls share: the client, its tags, and how outcomes are filed. */
  function roundOf(agent: Agent, n: number) {
    const tag = (what: string): string => `${agent.owner}-${what}-${n}`;
    const track = async (t: string, call: Promise<unknown>, allowed: readonly Outcome[]) =>
      agent.ledger.record(t, await outcome(call), allowed);
    return { c: gw.client, clientId: agent.clientId, tag, track };
  }

  /** One round of one client's calls, all started at once and interleaved with the other's. */
  function round(agent: Agent, n: number): Promise<void>[] {
    const { c, clientId, tag, track } = roundOf(agent, n);
    return [
      track(
        tag('appt'),
        c.appointments.createAppointment({ clientId, appointment: appointment(tag('appt')) }),
        ['ok'],
      ),
      track(
        tag('handoff'),
        c.handoffs.appendHandoff({ clientId, handoff: handoff(tag('handoff'), n) }),
        ['ok'],
      ),
      track(tag('key'), c.state.patchState({ clientId, patch: { [tag('key')]: n } }), ['ok']),
      ...failing(agent, n),
      ...racy(agent, n),
      // Reads in between see only this client's rows.
      (async () => {
        const tags = await tagsOf(c, clientId);
        expect(tags.filter((t) => !isOwn(t, agent.owner))).toEqual([]);
      })(),
    ];
  }

  /** Failures raised by PostgreSQL, and by the gateway after reading the database. */
  function failing(agent: Agent, n: number): Promise<void>[] {
    const { c, clientId, tag, track } = roundOf(agent, n);
    const requestId = crypto.randomUUID();
    return [
      track(
        'reject me',
        c.appointments.createAppointment({ clientId, appointment: appointment('reject me') }),
        [Status.INTERNAL],
      ),
      (async () => {
        const t = `unique-${tag('u')}`;
        const twins = [1, 2].map(() =>
          outcome(c.appointments.createAppointment({ clientId, appointment: appointment(t) })),
        );
        expect((await Promise.all(twins)).sort()).toEqual([Status.ALREADY_EXISTS, 'ok'].sort());
        agent.ledger.acked.add(t);
      })(),
      track(
        tag('stale'),
        c.state.putState({ clientId, document: { [tag('stale')]: true }, expectedVersion: 1e6 }),
        [Status.ABORTED],
      ),
      // One request_id, two different creates: exactly one goes through.
      ...['first', 'second'].map((which) =>
        track(
          tag(`req-${which}`),
          c.appointments.createAppointment({
            clientId,
            appointment: appointment(tag(`req-${which}`)),
            requestId,
          }),
          ['ok', Status.FAILED_PRECONDITION],
        ),
      ),
    ];
  }

  /** Cancelled at a random moment: queued for the connection, mid-statement, or too late. */
  function racy(agent: Agent, n: number): Promise<void>[] {
    const { c, clientId, tag, track } = roundOf(agent, n);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), randomMs(15));
    return [
      track(
        tag('racy-appt'),
        c.appointments.createAppointment(
          { clientId, appointment: appointment(tag('racy-appt')) },
          { deadline: randomMs(20) },
        ),
        RACY,
      ),
      track(
        tag('racy-key'),
        c.state.patchState(
          { clientId, patch: { [tag('racy-key')]: n } },
          { signal: controller.signal },
        ),
        RACY,
      ),
      track(
        tag('racy-handoff'),
        c.handoffs.appendHandoff(
          { clientId, handoff: handoff(tag('racy-handoff'), n) },
          { deadline: randomMs(20) },
        ),
        RACY,
      ),
    ];
  }

  it("each client ends with exactly its own acknowledged writes and none of the other's", async () => {
    for (let n = 1; n <= ROUNDS; n++) {
      await Promise.all([...round(agents[0], n), ...round(agents[1], n)]);
    }
    // Exactly one of each pair of creates sharing a request_id went through.
    for (const { ledger, owner } of agents) {
      for (let n = 1; n <= ROUNDS; n++) {
        const winners = ['first', 'second'].filter((w) =>
          ledger.acked.has(`${owner}-req-${w}-${n}`),
        );
        expect(winners).toHaveLength(1);
      }
    }
    await cancelWhileTheOnlyConnectionIsBlocked();
    await expectExactlyOwnWrites();
    await expectHealthyConnection();
  });

  /** A superuser connection to the shard, behind the gateway's back; closed in afterAll too. */
  async function connectAdmin(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: adminUrlOf(topology.shards[0]!.url) });
    lockers.push(client);
    client.on('error', () => undefined);
    await client.connect();
    return client;
  }

  /**
   * A holds the only connection, blocked on a row lock taken behind the gateway's back: first a
   * call cancelled by its AbortSignal mid-statement, then one whose deadline passes mid-statement
   * while B's calls queue for the connection. The lock is held until all of that has happened,
   * so none of the cancelled writes can have committed.
   */
  async function cancelWhileTheOnlyConnectionIsBlocked(): Promise<void> {
    const [a, b] = agents;
    const locker = await connectAdmin();
    await locker.query('BEGIN');
    await locker.query(`SELECT * FROM ${pg.escapeIdentifier(a.schema)}.state FOR UPDATE`);
    const monitor = await connectAdmin();
    // Outside a transaction, so each look gets a fresh pg_stat_activity snapshot.
    const waitingOnLock = async (expected = 1): Promise<void> => {
      const res = await monitor.query(
        `SELECT 1 FROM pg_stat_activity WHERE application_name = 'shardgate'
           AND datname = current_database() AND wait_event_type = 'Lock'`,
      );
      expect(res.rowCount).toBe(expected);
    };

    const aborted = new AbortController();
    const first = outcome(
      gw.client.state.patchState(
        { clientId: a.clientId, patch: { 'a-blocked-signal': 1 } },
        { signal: aborted.signal },
      ),
    );
    await eventually(() => waitingOnLock());
    aborted.abort();
    expect(await first).toBe('aborted');
    a.ledger.never.add('a-blocked-signal');
    // The cancel reached PostgreSQL: the only connection is free again.
    await eventually(() => waitingOnLock(0));

    // One statement (a patch is two: B could slip in between), holding the connection throughout.
    const second = outcome(
      gw.client.state.putState(
        { clientId: a.clientId, document: { 'a-blocked-deadline': 1 } },
        { deadline: 1_500 },
      ),
    );
    await eventually(() => waitingOnLock());
    const patient = await queueBehind(b, waitingOnLock);
    expect(await second).toBe(Status.DEADLINE_EXCEEDED);
    a.ledger.never.add('a-blocked-deadline');
    expect(await patient).toBe('ok');
    b.ledger.acked.add('b-patient-key');
    await locker.query('ROLLBACK');
    await Promise.all([locker.end(), monitor.end()]);
  }

  /**
   * B's calls wait for the connection A's blocked statement holds: the short ones give up while
   * queued, so they never ran; the patient one (returned) runs once A's statement is cancelled.
   */
  async function queueBehind(b: Agent, stillBlocked: () => Promise<void>): Promise<Outcome> {
    const c = gw.client;
    const clientId = b.clientId;
    const aborted = new AbortController();
    setTimeout(() => aborted.abort(), 100);
    const queued = [
      c.appointments.createAppointment(
        { clientId, appointment: appointment('b-queued-appt') },
        { deadline: 300 },
      ),
      c.state.patchState({ clientId, patch: { 'b-queued-key': 1 } }, { deadline: 300 }),
      c.handoffs.appendHandoff(
        { clientId, handoff: handoff('b-queued-handoff', 1) },
        { signal: aborted.signal },
      ),
    ].map(outcome);
    const patient = outcome(
      c.state.patchState({ clientId, patch: { 'b-patient-key': 1 } }, { deadline: 10_000 }),
    );
    expect(await Promise.all(queued)).toEqual([
      Status.DEADLINE_EXCEEDED,
      Status.DEADLINE_EXCEEDED,
      'aborted',
    ]);
    for (const t of ['b-queued-appt', 'b-queued-key', 'b-queued-handoff']) b.ledger.never.add(t);
    await stillBlocked(); // A's statement still holds the connection: nothing queued ran.
    return patient;
  }

  async function expectExactlyOwnWrites(): Promise<void> {
    for (const agent of agents) {
      const { acked, maybe, never } = agent.ledger;
      const tags = await tagsOf(gw.client, agent.clientId);
      expect(tags.filter((t) => !isOwn(t, agent.owner))).toEqual([]);
      expect(tags.filter((t) => never.has(t))).toEqual([]);
      expect([...acked].filter((t) => !tags.includes(t))).toEqual([]);
      expect(tags.filter((t) => !acked.has(t) && !maybe.has(t))).toEqual([]);
      expect(new Set(tags).size).toBe(tags.length); // every write landed at most once
      expect(acked.size).toBeGreaterThan(ROUNDS * 4);
    }
  }

  /** The one connection is idle, clean and still serves both clients. */
  async function expectHealthyConnection(): Promise<void> {
    const db = gw.gateway.context.pools.get('shard-1');
    const { rows } = await db.query<Record<string, unknown>>(
      `SELECT current_setting('search_path') AS search_path,
              current_setting('statement_timeout') AS statement_timeout,
              current_setting('shardgate.fence_bypass', true) AS fence_bypass,
              pg_catalog.txid_current_if_assigned() AS xid,
              pg_catalog.pg_my_temp_schema()::int AS temp_schema,
              (SELECT count(*)::int FROM pg_catalog.pg_prepared_statements) AS prepared,
              (SELECT count(*)::int FROM pg_catalog.pg_listening_channels()) AS listening,
              (SELECT count(*)::int FROM pg_catalog.pg_locks
                 WHERE pid = pg_catalog.pg_backend_pid() AND locktype = 'advisory') AS advisory`,
    );
    expect(rows[0]).toEqual({
      search_path: 'pg_catalog',
      statement_timeout: '30s',
      fence_bypass: null,
      xid: null,
      temp_schema: 0,
      prepared: 0,
      listening: 0,
      advisory: 0,
    });
    expect(db.stats().total).toBe(1);
    const states = await withPg(adminUrlOf(topology.shards[0]!.url), async (c) =>
      (
        await c.query<{ state: string }>(
          `SELECT state FROM pg_stat_activity
           WHERE application_name = 'shardgate' AND datname = current_database()`,
        )
      ).rows.map((r) => r.state),
    );
    expect(states.filter((s) => s !== 'idle')).toEqual([]);
    for (const { clientId, owner } of agents) {
      const { state } = await gw.client.state.patchState({
        clientId,
        patch: { [`${owner}-after`]: 1 },
      });
      expect(Object.keys(state!.document!).every((k) => k.startsWith(`${owner}-`))).toBe(true);
    }
  }
});

describe('pool.maxUses', () => {
  it('replaces a shard connection after that many checkouts, so no session serves calls forever', async () => {
    const topology = await createTestTopology(1);
    const gw = await startTestGateway(topology, { pool: { ...POOL_OF_ONE, maxUses: 3 } });
    try {
      const db = gw.gateway.context.pools.get('shard-1');
      const pids: number[] = [];
      for (let i = 0; i < 7; i++) {
        const { rows } = await db.query<{ pid: number }>(
          'SELECT pg_catalog.pg_backend_pid() AS pid',
        );
        pids.push(rows[0]!.pid);
      }
      const [p1, p2, p3] = [...new Set(pids)];
      expect(new Set(pids).size).toBe(3);
      expect(pids).toEqual([p1, p1, p1, p2, p2, p2, p3]);
    } finally {
      await gw.close();
    }
  });
});
