import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TenantStatus } from '../../src/gen/shardgate/v1/tenant.js';
import { waitUntil } from '../support/handoff-watch.js';
import {
  createTestTopology,
  errorOf,
  freshClientId,
  startTestGateway,
  statusOf,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

const DEADLINE_MS = 300;

/** One pooled connection per database: any connection left dirty would break the next call. */
const ONE_CONNECTION_POOL = {
  max: 1,
  idleTimeoutMs: 30_000,
  connectionTimeoutMs: 3_000,
  statementTimeoutMs: 30_000,
  maxLifetimeSeconds: 600,
};

interface Backend {
  pid: number;
  state: string | null;
  wait_event_type: string | null;
  query: string;
  blocked_by: number[];
}

describe('deadlines and cancellation reach PostgreSQL', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  /** Connections this file opened behind the gateway's back; closed even when a test fails. */
  const direct = new Set<pg.Client>();
  /** One monitoring connection per database, reused so each look is quick. */
  const monitors = new Map<string, Promise<pg.Client>>();

  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(topology);
  });
  /** Ends every direct connection (releasing any lock a failed test still holds). */
  async function closeDirect(): Promise<void> {
    const all = [...direct];
    direct.clear();
    monitors.clear();
    await Promise.all(all.map((c) => c.end().catch(() => undefined)));
  }
  afterAll(async () => {
    await closeDirect();
    await gw?.close();
  });

  async function connect(url: string): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: url, application_name: 'deadlines-test' });
    client.on('error', () => undefined);
    await client.connect();
    direct.add(client);
    return client;
  }

  async function release(client: pg.Client): Promise<void> {
    direct.delete(client);
    await client.end();
  }

  async function newClient(
    g: TestGateway,
  ): Promise<{ clientId: string; url: string; schema: string }> {
    const clientId = freshClientId('deadline');
    const { tenant } = await g.client.tenants.createTenant({ clientId });
    const url = topology.shards.find((s) => s.name === tenant!.shard)!.url;
    return { clientId, url, schema: tenant!.schema };
  }

  /** Opens a transaction that holds the row lock on the client's state row. */
  async function lockStateRow(url: string, schema: string): Promise<pg.Client> {
    const locker = await connect(url);
    await locker.query('BEGIN');
    await locker.query(`SELECT * FROM ${pg.escapeIdentifier(schema)}.state FOR UPDATE`);
    return locker;
  }

  /** The gateway's backends on every database of this file's topology, seen from outside. */
  async function gatewayBackends(): Promise<Backend[]> {
    const urls = [topology.catalogUrl, ...topology.shards.map((s) => s.url)];
    const all = await Promise.all(
      urls.map(async (url) => {
        let monitor = monitors.get(url);
        if (!monitor) monitors.set(url, (monitor = connect(url)));
        // Each statement outside a transaction sees a fresh pg_stat_activity snapshot.
        const { rows } = await (
          await monitor
        ).query<Backend>(
          `SELECT pid, state, wait_event_type, query, pg_blocking_pids(pid) AS blocked_by
           FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'shardgate'`,
        );
        return rows;
      }),
    );
    return all.flat();
  }

  const waitingOnLock = (backends: Backend[]) =>
    backends.filter((b) => b.wait_event_type === 'Lock');

  async function expectNoBackendWaitingOnLock(): Promise<void> {
    await waitUntil(
      async () => waitingOnLock(await gatewayBackends()).length === 0,
      'no gateway backend waiting on a lock (the statement was cancelled)',
      2_000,
    );
  }

  async function expectNoBackendInTransaction(): Promise<void> {
    await waitUntil(
      async () =>
        (await gatewayBackends()).every((b) => b.state === 'idle' || b.state === 'active'),
      "no gateway backend 'idle in transaction'",
      2_000,
    );
    const states = (await gatewayBackends()).map((b) => b.state);
    expect(states).not.toContain('idle in transaction');
    expect(states).not.toContain('idle in transaction (aborted)');
  }

  it('a deadline cancels the PutState statement waiting on a row lock, which changes nothing', async () => {
    const { clientId, url, schema } = await newClient(gw);
    expect(
      (await gw.client.state.putState({ clientId, document: { step: 1 } })).state?.version,
    ).toBe(1);
    const locker = await lockStateRow(url, schema);
    const lockerPid = (locker as unknown as { processID: number }).processID;

    const started = Date.now();
    const call = gw.client.state.putState(
      { clientId, document: { step: 2 }, expectedVersion: 1 },
      { deadline: new Date(Date.now() + DEADLINE_MS) },
    );
    // The statement really reached PostgreSQL and waits on the lock this test holds.
    await waitUntil(
      async () =>
        waitingOnLock(await gatewayBackends()).some((b) => b.blocked_by.includes(lockerPid)),
      'the gateway backend to wait on the row lock',
      DEADLINE_MS,
    );
    expect(await statusOf(call)).toBe(Status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(DEADLINE_MS + 1_000);

    await expectNoBackendWaitingOnLock();
    await locker.query('ROLLBACK');
    await release(locker);

    const { state } = await gw.client.state.getState({ clientId });
    expect(state?.document).toEqual({ step: 1 });
    expect(state?.version).toBe(1);
    const next = await gw.client.state.putState({
      clientId,
      document: { step: 3 },
      expectedVersion: 1,
    });
    expect(next.state?.version).toBe(2);
    expect(next.state?.document).toEqual({ step: 3 });
  });

  it('a client cancel (AbortSignal) also cancels the statement', async () => {
    const { clientId, url, schema } = await newClient(gw);
    const locker = await lockStateRow(url, schema);
    const controller = new AbortController();
    const call = gw.client.state.patchState(
      { clientId, patch: { cancelled: true } },
      { signal: controller.signal },
    );
    await waitUntil(
      async () => waitingOnLock(await gatewayBackends()).length === 1,
      'the patch to wait on the lock',
    );
    controller.abort();
    await expect(call).rejects.toMatchObject({ name: 'AbortError' });
    await expectNoBackendWaitingOnLock();
    await locker.query('ROLLBACK');
    await release(locker);
    const { state } = await gw.client.state.getState({ clientId });
    expect(state?.version).toBe(0);
    expect(state?.document).toEqual({});
  });

  describe('with one pooled connection per database', () => {
    let small: TestGateway;
    beforeAll(async () => {
      small = await startTestGateway(topology, { pool: ONE_CONNECTION_POOL });
    });
    afterAll(async () => {
      await closeDirect();
      await small?.close();
    });

    it('leaves no connection in a transaction after deadlines, conflicts and bad patches', async () => {
      const c = small.client;
      const { clientId, url, schema } = await newClient(small);
      expect(
        (await c.state.putState({ clientId, document: { big: 'x'.repeat(200_000) } })).state
          ?.version,
      ).toBe(1);

      // Deadline while the only shard connection waits on a lock, for a put and for a patch.
      const locker = await lockStateRow(url, schema);
      const deadline = () => ({ deadline: new Date(Date.now() + DEADLINE_MS) });
      expect(await statusOf(c.state.putState({ clientId, document: { a: 1 } }, deadline()))).toBe(
        Status.DEADLINE_EXCEEDED,
      );
      await expectNoBackendWaitingOnLock();
      expect(await statusOf(c.state.patchState({ clientId, patch: { a: 1 } }, deadline()))).toBe(
        Status.DEADLINE_EXCEEDED,
      );
      await expectNoBackendWaitingOnLock();
      await locker.query('ROLLBACK');
      await release(locker);

      // A stale expected_version, and patches the gateway must refuse (one only after reading).
      const stale = await errorOf(c.state.putState({ clientId, document: {}, expectedVersion: 7 }));
      expect(stale.code).toBe(Status.ABORTED);
      expect(stale.details).toContain('current version is 1');
      const stalePatch = await errorOf(
        c.state.patchState({ clientId, patch: { a: 1 }, expectedVersion: 0 }),
      );
      expect(stalePatch.code).toBe(Status.ABORTED);
      const tooBig = await errorOf(
        c.state.patchState({ clientId, patch: { more: 'y'.repeat(100_000) } }),
      );
      expect(tooBig.code).toBe(Status.INVALID_ARGUMENT);
      const nul = await errorOf(c.state.patchState({ clientId, patch: { bad: 'nul\u0000char' } }));
      expect(nul.code).toBe(Status.INVALID_ARGUMENT);
      const noPatch = await errorOf(c.state.patchState({ clientId }));
      expect(noPatch.code).toBe(Status.INVALID_ARGUMENT);

      // A create whose schema transaction is cancelled mid-way (waiting on the per-schema lock).
      const blocked = freshClientId('deadline-create');
      const schemaLocks = await Promise.all(
        topology.shards.map(async (s) => {
          const conn = await connect(s.url);
          await conn.query(`SELECT pg_advisory_lock(hashtext('shardgate:' || $1))`, [
            `client_${blocked.replaceAll('-', '_')}`,
          ]);
          return conn;
        }),
      );
      const create = c.tenants.createTenant({ clientId: blocked }, deadline());
      await waitUntil(
        async () =>
          waitingOnLock(await gatewayBackends()).some((b) =>
            b.query.includes('pg_advisory_xact_lock'),
          ),
        'the create to wait on the schema lock inside its transaction',
        DEADLINE_MS,
      );
      expect(await statusOf(create)).toBe(Status.DEADLINE_EXCEEDED);
      await expectNoBackendWaitingOnLock();
      await expectNoBackendInTransaction();
      for (const conn of schemaLocks) await release(conn);

      // Every failure above left the state as it was, and the single connection is clean.
      await expectNoBackendInTransaction();
      const { state } = await c.state.getState({ clientId });
      expect(state?.version).toBe(1);
      expect(state?.document).toEqual({ big: 'x'.repeat(200_000) });
      const put = await c.state.putState({ clientId, document: { ok: true }, expectedVersion: 1 });
      expect(put.state?.version).toBe(2);
      const patched = await c.state.patchState({
        clientId,
        patch: { more: 1 },
        expectedVersion: 2,
      });
      expect(patched.state?.document).toEqual({ ok: true, more: 1 });
      const created = await c.tenants.createTenant({ clientId: blocked });
      expect(created.tenant?.status).toBe(TenantStatus.TENANT_STATUS_ACTIVE);
      await expectNoBackendInTransaction();
    });

    it('a call whose deadline passed while it waited for a pooled connection never runs its statement', async () => {
      const c = small.client;
      const { clientId, url, schema } = await newClient(small);
      const locker = await lockStateRow(url, schema);

      // The first call takes the only connection and waits on the lock; the second waits for it.
      const first = c.state.putState({ clientId, document: { by: 'first' } }, { deadline: 1_000 });
      await waitUntil(
        async () => waitingOnLock(await gatewayBackends()).length === 1,
        'the first put to wait on the lock',
      );
      const second = c.state.putState(
        { clientId, document: { by: 'second' } },
        { deadline: DEADLINE_MS },
      );
      expect(await statusOf(second)).toBe(Status.DEADLINE_EXCEEDED);
      expect(await statusOf(first)).toBe(Status.DEADLINE_EXCEEDED);

      // The connection went back to the pool after the first call: the second, already cancelled,
      // must not take it and run its UPDATE behind its caller's back.
      await expectNoBackendWaitingOnLock();
      await locker.query('ROLLBACK');
      await release(locker);
      const { state } = await c.state.getState({ clientId });
      expect(state?.version).toBe(0);
      expect(state?.document).toEqual({});
      await expectNoBackendInTransaction();
    });
  });
});
