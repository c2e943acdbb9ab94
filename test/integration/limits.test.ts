import {
  createChannel,
  createClient,
  createClientFactory,
  Status,
  type Channel,
  type ClientError,
} from 'nice-grpc';
import {
  errorDetailsClientMiddleware,
  QuotaFailure,
  RetryInfo,
  RichClientError,
} from 'nice-grpc-error-details';
import { HealthDefinition } from 'nice-grpc-server-health';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { configSchema, type LimitsConfig } from '../../src/core/config.js';
import { StateServiceDefinition } from '../../src/gen/shardgate/v1/state.js';
import { startWatch, waitUntil } from '../support/handoff-watch.js';
import {
  adminUrlOf,
  createTestTopology,
  errorOf,
  eventually,
  freshClientId,
  startTestGateway,
  statusOf,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

/** The full limits section with some options set (the rest at their defaults). */
const limitsWith = (partial: Partial<LimitsConfig>): LimitsConfig =>
  configSchema.shape.limits.parse(partial);

/** SERVING in grpc.health.v1.HealthCheckResponse.ServingStatus. */
const SERVING = 1;

/** A plain nice-grpc StateService client that decodes google.rpc error details. */
function richStateClient(channel: Channel) {
  return createClientFactory()
    .use(errorDetailsClientMiddleware)
    .create(StateServiceDefinition, channel);
}

/** The rejection of `promise`, which must be a RichClientError (it has status details). */
async function richErrorOf(promise: Promise<unknown>): Promise<RichClientError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof RichClientError) return err;
    throw err;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** RetryInfo.retry_delay of an error, in milliseconds. */
function retryDelayMs(err: RichClientError): number {
  const info = err.extra.find((d) => d.$type === RetryInfo.$type) as RetryInfo | undefined;
  if (!info?.retryDelay) throw new Error(`no RetryInfo in ${JSON.stringify(err.extra)}`);
  return info.retryDelay.seconds * 1000 + info.retryDelay.nanos / 1e6;
}

interface Backend {
  pid: number;
  wait_event_type: string | null;
  query: string;
}

/** The gateway's backends on `url` waiting on a lock, seen from outside. */
async function backendsWaitingOnLock(url: string): Promise<Backend[]> {
  return withPg(adminUrlOf(url), async (c) => {
    const { rows } = await c.query<Backend>(
      `SELECT pid, wait_event_type, query FROM pg_stat_activity
       WHERE datname = current_database() AND application_name = 'shardgate'
         AND wait_event_type = 'Lock'`,
    );
    return rows;
  });
}

describe('per-client limits', () => {
  let topology: TestTopology;
  /** Direct connections holding locks; closed even when a test fails. */
  const lockers = new Set<pg.Client>();

  beforeAll(async () => {
    topology = await createTestTopology(1);
  });
  /** A failed test must not leave its lock behind for the next one. */
  afterEach(async () => {
    const left = [...lockers];
    lockers.clear();
    await Promise.all(left.map((c) => c.end().catch(() => undefined)));
  });

  /** Holds the row lock on the client's state row until `release` (behind the gateway's back). */
  async function lockStateRow(gw: TestGateway, clientId: string) {
    const { tenant } = await gw.client.tenants.getTenant({ clientId });
    const locker = new pg.Client({ connectionString: adminUrlOf(topology.shards[0]!.url) });
    locker.on('error', () => undefined);
    await locker.connect();
    lockers.add(locker);
    await locker.query('BEGIN');
    await locker.query(`SELECT * FROM ${pg.escapeIdentifier(tenant!.schema)}.state FOR UPDATE`);
    return {
      pid: (locker as unknown as { processID: number }).processID,
      async release() {
        await locker.query('ROLLBACK');
        lockers.delete(locker);
        await locker.end();
      },
    };
  }

  describe('rate', () => {
    const RATE = 4;
    const BURST = 3;
    let gw: TestGateway;
    let channel: Channel;
    beforeAll(async () => {
      gw = await startTestGateway(topology, {
        limits: limitsWith({ clientRatePerSecond: RATE, clientBurst: BURST }),
      });
      channel = createChannel(gw.gateway.address);
    });
    afterAll(async () => {
      channel?.close();
      await gw?.close();
    });

    it('a client over its rate gets RESOURCE_EXHAUSTED with RetryInfo, and succeeds after that wait', async () => {
      const noisy = freshClientId('noisy');
      const quiet = freshClientId('quiet');
      // Each create spends one of its client's tokens.
      await gw.client.tenants.createTenant({ clientId: noisy });
      await gw.client.tenants.createTenant({ clientId: quiet });
      const state = richStateClient(channel);

      let admitted = 0;
      let refusal: RichClientError | undefined;
      while (!refusal && admitted <= BURST + 1) {
        try {
          await state.getState({ clientId: noisy });
          admitted++;
        } catch (err) {
          if (!(err instanceof RichClientError)) throw err;
          refusal = err;
        }
      }
      // The burst minus the create's token, plus at most one refilled while the calls ran.
      expect(admitted).toBeGreaterThanOrEqual(BURST - 1);
      expect(admitted).toBeLessThanOrEqual(BURST);
      expect(refusal!.code).toBe(Status.RESOURCE_EXHAUSTED);
      const delayMs = retryDelayMs(refusal!);
      expect(delayMs).toBeGreaterThan(0);
      expect(delayMs).toBeLessThanOrEqual(1000 / RATE);
      expect(Number.isInteger(delayMs)).toBe(true);
      expect(refusal!.details).toBe(
        `client '${noisy}' is over its rate limit of ${RATE} calls/s (burst ${BURST}) on this ` +
          `gateway replica; retry in ${delayMs} ms`,
      );
      const quota = refusal!.extra.find((d) => d.$type === QuotaFailure.$type) as QuotaFailure;
      expect(quota.violations).toEqual([
        {
          $type: 'google.rpc.QuotaFailure.Violation',
          subject: `client '${noisy}'`,
          description: 'rate limit per gateway replica',
        },
      ]);

      // Another client has its own bucket: its whole burst (less its create) goes through.
      for (let i = 0; i < BURST - 1; i++) await state.getState({ clientId: quiet });

      await new Promise((r) => setTimeout(r, delayMs));
      const { state: after } = await state.getState({ clientId: noisy });
      expect(after?.version).toBe(0);
    });

    it('the typed client hands the refusal over as a RichClientError carrying RetryInfo', async () => {
      const clientId = freshClientId('typed');
      await gw.client.tenants.createTenant({ clientId });
      let refusal: unknown;
      for (let i = 0; i <= BURST + 1 && refusal === undefined; i++) {
        await gw.client.state.getState({ clientId }).catch((err: unknown) => (refusal = err));
      }
      expect(refusal).toBeInstanceOf(RichClientError);
      expect((refusal as RichClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(retryDelayMs(refusal as RichClientError)).toBeGreaterThan(0);
    });

    /** Calls `call` until it is refused (at most 20 times); returns the refusal. */
    async function firstRefusal(call: (i: number) => Promise<unknown>): Promise<ClientError> {
      for (let i = 0; i < 20; i++) {
        try {
          await call(i);
        } catch (err) {
          const e = err as ClientError;
          if (e.code === Status.RESOURCE_EXHAUSTED) return e;
          expect(e.code).toBe(Status.INVALID_ARGUMENT);
        }
      }
      throw new Error('never refused');
    }

    it('calls without a client id (ListTenants, SharedService) count against the caller, not a client', async () => {
      const refusal = await firstRefusal(() => gw.client.tenants.listTenants({ pageSize: 1 }));
      expect(refusal.details).toMatch(
        /^caller 'anonymous' is over its rate limit of 4 calls\/s \(burst 3\) on this gateway replica; retry in \d+ ms$/,
      );
      // SharedService is billed to the caller too (the same key, so the same bucket).
      const shared = await firstRefusal(() =>
        gw.client.shared.listBenchmarks({ industry: 'hvac' }),
      );
      expect(shared.details).toMatch(/^caller 'anonymous' is over its rate limit/);
      // A client's own calls have their own bucket.
      const fresh = freshClientId('fresh');
      expect((await gw.client.tenants.createTenant({ clientId: fresh })).created).toBe(true);
    });

    it('malformed client ids are billed to the caller: inventing ids gives no fresh bucket', async () => {
      await new Promise((r) => setTimeout(r, (BURST * 1000) / RATE)); // the caller's bucket refills
      const refusal = await firstRefusal((i) =>
        gw.client.state.getState({ clientId: `Not_A_Client_${i}` }),
      );
      expect(refusal.details).toMatch(/^caller 'anonymous' is over its rate limit/);
    });

    it('health checks are never limited', async () => {
      const health = createClient(HealthDefinition, channel);
      for (let i = 0; i < BURST * 3; i++) {
        expect((await health.check({ service: '' })).status).toBe(SERVING);
      }
    });
  });

  describe('concurrency', () => {
    let gw: TestGateway;
    let channel: Channel;
    beforeAll(async () => {
      gw = await startTestGateway(topology, {
        limits: limitsWith({
          clientMaxConcurrent: 1,
          clientMaxInFlight: 2,
          clientMaxStreams: 2,
        }),
      });
      channel = createChannel(gw.gateway.address);
    });
    afterAll(async () => {
      channel?.close();
      await gw?.close();
    });

    it('past clientMaxInFlight a client gets RESOURCE_EXHAUSTED; queued calls wait their turn; others are unaffected', async () => {
      const busy = freshClientId('busy');
      const other = freshClientId('other');
      await gw.client.tenants.createTenant({ clientId: busy });
      await gw.client.tenants.createTenant({ clientId: other });
      const lock = await lockStateRow(gw, busy);
      const url = topology.shards[0]!.url;

      const first = gw.client.state.putState({ clientId: busy, document: { n: 1 } });
      await waitUntil(
        async () => (await backendsWaitingOnLock(url)).length === 1,
        'the first put to wait on the row lock',
      );
      const second = gw.client.state.putState({ clientId: busy, document: { n: 2 } });
      // The second is queued in the gateway (clientMaxConcurrent 1), not in the database.
      const refusal = await richErrorOf(richStateClient(channel).getState({ clientId: busy }));
      expect(refusal.code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(refusal.details).toBe(
        `client '${busy}' already has 2 calls running or queued on this gateway replica, its ` +
          'limit; retry in 100 ms',
      );
      expect(retryDelayMs(refusal)).toBe(100);
      expect(await backendsWaitingOnLock(url)).toHaveLength(1);

      // Another client on the same shard runs at once.
      const started = Date.now();
      const put = await gw.client.state.putState({ clientId: other, document: { ok: true } });
      expect(put.state?.version).toBe(1);
      expect(Date.now() - started).toBeLessThan(1_000);

      await lock.release();
      expect((await first).state?.version).toBe(1);
      expect((await second).state?.version).toBe(2);
      const { state } = await gw.client.state.getState({ clientId: busy });
      expect(state?.document).toEqual({ n: 2 });
    });

    it('a queued call whose caller gives up never runs, and frees its place', async () => {
      const clientId = freshClientId('queued');
      await gw.client.tenants.createTenant({ clientId });
      const lock = await lockStateRow(gw, clientId);
      const url = topology.shards[0]!.url;
      const first = gw.client.state.putState({ clientId, document: { by: 'first' } });
      await waitUntil(
        async () => (await backendsWaitingOnLock(url)).length === 1,
        'the first put to wait on the row lock',
      );
      const queued = gw.client.state.putState(
        { clientId, document: { by: 'queued' } },
        { deadline: 300 },
      );
      expect(await statusOf(queued)).toBe(Status.DEADLINE_EXCEEDED);
      // The caller's cancel reaches the gateway an instant after the caller gave up; from then on
      // the queued call's place is free: a probe is no longer refused for in-flight but queued
      // (and, with its own short deadline, given up too; a read, harmless if it runs later).
      await eventually(async () => {
        const probe = await errorOf(gw.client.state.getState({ clientId }, { deadline: 100 }));
        expect(probe.code).toBe(Status.DEADLINE_EXCEEDED);
      });
      await lock.release();
      expect((await first).state?.version).toBe(1);
      // The given-up put never ran: the first put's write is the last one.
      const { state } = await gw.client.state.getState({ clientId });
      expect(state?.version).toBe(1);
      expect(state?.document).toEqual({ by: 'first' });
      const next = await gw.client.state.putState({ clientId, document: { by: 'next' } });
      expect(next.state?.version).toBe(2);
    });

    it('past clientMaxStreams a client cannot open another WatchHandoffs until one closes', async () => {
      const clientId = freshClientId('watcher');
      await gw.client.tenants.createTenant({ clientId });
      const w1 = await startWatch(gw.client.handoffs, { clientId });
      const w2 = await startWatch(gw.client.handoffs, { clientId, toAgent: 'b' });
      const third = async () => {
        for await (const _ of gw.client.handoffs.watchHandoffs({ clientId })) break;
      };
      const refused = await errorOf(third());
      expect(refused.code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(refused.details).toBe(
        `client '${clientId}' already has 2 streams open on this gateway replica, its limit; ` +
          'close one, or retry in 1000 ms',
      );
      // Streams are not unary calls: the client's calls still run.
      expect((await gw.client.state.getState({ clientId })).state?.version).toBe(0);

      w1.cancel();
      await w1.ended;
      const w3 = await eventually(() => startWatch(gw.client.handoffs, { clientId }));
      await gw.client.handoffs.appendHandoff({
        clientId,
        handoff: { fromAgent: 'a', toAgent: 'b', version: 1, summary: { n: 1 } },
      });
      expect((await w3.waitForCount(1))[0]?.summary).toEqual({ n: 1 });
      expect((await w2.waitForCount(1))[0]?.summary).toEqual({ n: 1 });
      w2.cancel();
      w3.cancel();
    });
  });

  describe('message size', () => {
    let gw: TestGateway;
    beforeAll(async () => {
      gw = await startTestGateway(topology, { limits: limitsWith({ maxMessageBytes: 64 * 1024 }) });
    });
    afterAll(async () => {
      await gw?.close();
    });

    it('a request over maxMessageBytes fails RESOURCE_EXHAUSTED and the gateway stays up', async () => {
      const clientId = freshClientId('big');
      await gw.client.tenants.createTenant({ clientId });
      const tooBig = await errorOf(
        gw.client.state.putState({ clientId, document: { blob: 'x'.repeat(70 * 1024) } }),
      );
      expect(tooBig.code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(tooBig.details).toMatch(/larger than max/);
      const { state } = await gw.client.state.getState({ clientId });
      expect(state?.version).toBe(0);
      const put = await gw.client.state.putState({
        clientId,
        document: { blob: 'x'.repeat(1024) },
      });
      expect(put.state?.version).toBe(1);
    });

    it('a page that would exceed maxMessageBytes comes back shorter, with a next_page_token (AIP-158)', async () => {
      const clientId = freshClientId('bigpage');
      await gw.client.tenants.createTenant({ clientId });
      const summary = { blob: 'y'.repeat(40 * 1024) };
      for (let i = 0; i < 2; i++) {
        await gw.client.handoffs.appendHandoff({
          clientId,
          handoff: { fromAgent: 'a', toAgent: 'b', version: 1, summary },
        });
      }
      // Two 40 KiB handoffs do not fit one 64 KiB message: the page holds one and points on.
      const first = await gw.client.handoffs.listHandoffs({ clientId, pageSize: 2 });
      expect(first.handoffs).toHaveLength(1);
      expect(first.nextPageToken).not.toBe('');
      const second = await gw.client.handoffs.listHandoffs({
        clientId,
        pageSize: 2,
        pageToken: first.nextPageToken,
      });
      expect(second.handoffs).toHaveLength(1);
      expect(second.nextPageToken).toBe('');
      expect(second.handoffs[0]!.id).not.toBe(first.handoffs[0]!.id);
    });
  });

  describe('deadline cap', () => {
    const CAP_MS = 500;
    let gw: TestGateway;
    beforeAll(async () => {
      gw = await startTestGateway(topology, { limits: limitsWith({ maxDeadlineMs: CAP_MS }) });
    });
    afterAll(async () => {
      await gw?.close();
    });

    it('a call running past maxDeadlineMs ends DEADLINE_EXCEEDED near the cap and its statement is cancelled', async () => {
      const clientId = freshClientId('capped');
      await gw.client.tenants.createTenant({ clientId });
      const lock = await lockStateRow(gw, clientId);
      const url = topology.shards[0]!.url;

      const started = Date.now();
      // The caller allows 10 s; the gateway allows CAP_MS.
      const call = errorOf(
        gw.client.state.putState({ clientId, document: { late: true } }, { deadline: 10_000 }),
      );
      await waitUntil(
        async () => (await backendsWaitingOnLock(url)).some((b) => b.query.includes('UPDATE')),
        'the put to wait on the row lock',
      );
      const { code, details } = await call;
      const elapsed = Date.now() - started;
      expect(code).toBe(Status.DEADLINE_EXCEEDED);
      expect(details).toBe(
        `the call ran longer than the gateway's limit of ${CAP_MS} ms per call and was ` +
          'cancelled; ask for less per call (a smaller page or batch)',
      );
      expect(elapsed).toBeGreaterThanOrEqual(CAP_MS - 50);
      expect(elapsed).toBeLessThan(CAP_MS + 1_000);
      // Cancelled in PostgreSQL while the lock is still held: nothing waits on it any more.
      await waitUntil(
        async () => (await backendsWaitingOnLock(url)).length === 0,
        'the capped statement to be cancelled',
        2_000,
      );
      await lock.release();
      const { state } = await gw.client.state.getState({ clientId });
      expect(state?.version).toBe(0);
      expect(state?.document).toEqual({});
    });

    it('a caller deadline shorter than the cap still applies', async () => {
      const clientId = freshClientId('short');
      await gw.client.tenants.createTenant({ clientId });
      const lock = await lockStateRow(gw, clientId);
      const started = Date.now();
      expect(
        await statusOf(gw.client.state.putState({ clientId, document: {} }, { deadline: 150 })),
      ).toBe(Status.DEADLINE_EXCEEDED);
      expect(Date.now() - started).toBeLessThan(CAP_MS);
      await waitUntil(
        async () => (await backendsWaitingOnLock(topology.shards[0]!.url)).length === 0,
        'the statement to be cancelled',
        2_000,
      );
      await lock.release();
    });

    it('server streams are exempt: a WatchHandoffs outlives the cap', async () => {
      const clientId = freshClientId('longwatch');
      await gw.client.tenants.createTenant({ clientId });
      const watch = await startWatch(gw.client.handoffs, { clientId });
      await new Promise((r) => setTimeout(r, CAP_MS * 2));
      expect(watch.isEnded()).toBe(false);
      await gw.client.handoffs.appendHandoff({
        clientId,
        handoff: { fromAgent: 'a', toAgent: 'b', version: 1, summary: { after: 'cap' } },
      });
      expect((await watch.waitForCount(1))[0]?.summary).toEqual({ after: 'cap' });
      watch.cancel();
      const health = createClient(HealthDefinition, createChannel(gw.gateway.address));
      expect((await health.check({ service: '' })).status).toBe(SERVING);
    });
  });
});
