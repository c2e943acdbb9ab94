import { type ClientError, type Metadata, Status } from 'nice-grpc';
import { RetryInfo, RichClientError } from 'nice-grpc-error-details';
import { Status as RpcStatus } from 'nice-grpc-error-details/lib/proto/google/rpc/status.js';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createShardgateClient,
  type ShardgateClient,
  type ShardgateClientOptions,
} from '../../src/client/index.js';
import { pushbackDelayMs } from '../../src/client/pushback-retry.js';
import { configSchema, type LimitsConfig } from '../../src/core/config.js';
import {
  adminUrlOf,
  createTestTopology,
  eventually,
  freshClientId,
  startTestGateway,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

/** The full limits section with some options set (the rest at their defaults). */
const limitsWith = (partial: Partial<LimitsConfig>): LimitsConfig =>
  configSchema.shape.limits.parse(partial);

/**
 * The attempts of one call, as the gateway answered them: one trailer per attempt, and for a
 * refusal the RetryInfo delay it advertised (undefined for an answer without one).
 */
function attemptLog() {
  const delays: (number | undefined)[] = [];
  const onTrailer = (trailer: Metadata): void => {
    const bin = trailer.get('grpc-status-details-bin');
    const info = bin
      ? RpcStatus.decode(bin).details.find((d) => d.typeUrl.endsWith(`/${RetryInfo.$type}`))
      : undefined;
    const delay = info ? RetryInfo.decode(info.value).retryDelay : undefined;
    delays.push(delay ? delay.seconds * 1000 + delay.nanos / 1e6 : undefined);
  };
  return { delays, onTrailer };
}

/** The rejection of `promise`, which must fail. */
async function failureOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the call to fail, but it succeeded');
    },
    (err: unknown) => err,
  );
}

describe('the typed client follows RESOURCE_EXHAUSTED with RetryInfo (server pushback)', () => {
  let topology: TestTopology;
  const clients: ShardgateClient[] = [];

  beforeAll(async () => {
    topology = await createTestTopology(1);
  });
  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
  });

  /** A typed client of `gw` with the default pushback unless `retry` says otherwise. */
  function typedClient(gw: TestGateway, retry?: ShardgateClientOptions['retry']) {
    const client = createShardgateClient({ address: gw.gateway.address, retry });
    clients.push(client);
    return client;
  }

  describe('over the rate limit', () => {
    /** One token, refilled every 500 ms: an emptied bucket asks for a wait of up to 500 ms. */
    const RATE = 2;
    let gw: TestGateway;
    beforeAll(async () => {
      gw = await startTestGateway(topology, {
        limits: limitsWith({ clientRatePerSecond: RATE, clientBurst: 1 }),
      });
    });
    afterAll(async () => {
      await gw?.close();
    });

    /** A new client whose bucket is empty now (the harness client does not follow pushback). */
    async function exhaustedClient(prefix: string): Promise<string> {
      const clientId = freshClientId(prefix);
      await gw.client.tenants.createTenant({ clientId });
      for (let i = 0; i < 3; i++) {
        const err = await gw.client.state.getState({ clientId }).then(
          () => undefined,
          (e: unknown) => e,
        );
        if ((err as ClientError | undefined)?.code === Status.RESOURCE_EXHAUSTED) return clientId;
        if (err !== undefined) throw err;
      }
      throw new Error('the bucket never emptied');
    }

    it('a refused read succeeds after waiting at least the advertised delay', async () => {
      const clientId = await exhaustedClient('read');
      const sg = typedClient(gw);
      const log = attemptLog();
      const started = performance.now();
      const { state } = await sg.state.getState({ clientId }, { onTrailer: log.onTrailer });
      const elapsedMs = performance.now() - started;
      expect(state?.version).toBe(0);
      expect(state?.document).toEqual({});
      expect(log.delays).toHaveLength(2);
      expect(log.delays[1]).toBeUndefined();
      const delayMs = log.delays[0]!;
      expect(delayMs).toBeGreaterThan(0);
      expect(delayMs).toBeLessThanOrEqual(1000 / RATE);
      expect(elapsedMs).toBeGreaterThanOrEqual(delayMs);
    });

    it('a refused keyed create (AppendHandoff) succeeds after the delay and is created once', async () => {
      const clientId = await exhaustedClient('append');
      const sg = typedClient(gw);
      const log = attemptLog();
      const started = performance.now();
      const { handoff } = await sg.handoffs.appendHandoff(
        {
          clientId,
          handoff: {
            fromAgent: 'intake-agent',
            toAgent: 'dispatch-agent',
            version: 1,
            summary: { step: 'intake' },
          },
        },
        { onTrailer: log.onTrailer },
      );
      const elapsedMs = performance.now() - started;
      expect(log.delays).toHaveLength(2);
      expect(log.delays[0]).toBeGreaterThan(0);
      expect(log.delays[1]).toBeUndefined();
      expect(elapsedMs).toBeGreaterThanOrEqual(log.delays[0]!);
      expect(handoff?.summary).toEqual({ step: 'intake' });
      // The list is refused too at first (the append took the token); pushback waits it out.
      const { handoffs } = await sg.handoffs.listHandoffs({ clientId });
      expect(handoffs.map((h) => h.id)).toEqual([handoff!.id]);
    });

    it('a write that is never retried (PatchState) gets RESOURCE_EXHAUSTED at once', async () => {
      const clientId = await exhaustedClient('patch');
      const sg = typedClient(gw);
      const log = attemptLog();
      const started = performance.now();
      const err = await failureOf(
        sg.state.patchState({ clientId, patch: { n: 1 } }, { onTrailer: log.onTrailer }),
      );
      const elapsedMs = performance.now() - started;
      expect(err).toBeInstanceOf(RichClientError);
      expect((err as RichClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
      const delayMs = pushbackDelayMs(err)!;
      expect(log.delays).toEqual([delayMs]);
      expect(elapsedMs).toBeLessThan(delayMs);
      // It did not run: once the bucket refills, the state is untouched.
      const { state } = await sg.state.getState({ clientId });
      expect(state?.version).toBe(0);
    });

    it('a call whose deadline ends before the delay fails RESOURCE_EXHAUSTED at once, not DEADLINE_EXCEEDED', async () => {
      const clientId = await exhaustedClient('short');
      const sg = typedClient(gw);
      const log = attemptLog();
      const DEADLINE_MS = 200;
      const started = performance.now();
      const err = await failureOf(
        sg.state.getState({ clientId }, { deadline: DEADLINE_MS, onTrailer: log.onTrailer }),
      );
      const elapsedMs = performance.now() - started;
      expect((err as RichClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
      const delayMs = pushbackDelayMs(err)!;
      expect(delayMs).toBeGreaterThan(DEADLINE_MS);
      expect(log.delays).toEqual([delayMs]);
      expect(elapsedMs).toBeLessThan(DEADLINE_MS);
    });

    it('with retry.resourceExhausted false a refused read fails RESOURCE_EXHAUSTED with its RetryInfo', async () => {
      const clientId = await exhaustedClient('off');
      const sg = typedClient(gw, { resourceExhausted: false });
      const log = attemptLog();
      const err = await failureOf(sg.state.getState({ clientId }, { onTrailer: log.onTrailer }));
      expect(err).toBeInstanceOf(RichClientError);
      expect((err as RichClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(log.delays).toEqual([pushbackDelayMs(err)]);
      expect(log.delays[0]).toBeGreaterThan(0);
    });
  });

  describe('over the in-flight limit (every refusal asks for 100 ms)', () => {
    const IN_FLIGHT_RETRY_MS = 100;
    let gw: TestGateway;
    let locker: pg.Client | undefined;
    let blockedPut: Promise<unknown> | undefined;
    const clientId = freshClientId('busy');

    beforeAll(async () => {
      gw = await startTestGateway(topology, {
        limits: limitsWith({ clientMaxConcurrent: 1, clientMaxInFlight: 1 }),
      });
      await gw.client.tenants.createTenant({ clientId });
      const { tenant } = await gw.client.tenants.getTenant({ clientId });
      // A put held on the client's state row (locked behind the gateway's back) keeps the
      // client's only in-flight place taken until afterAll.
      locker = new pg.Client({ connectionString: adminUrlOf(topology.shards[0]!.url) });
      locker.on('error', () => undefined);
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query(`SELECT * FROM ${pg.escapeIdentifier(tenant!.schema)}.state FOR UPDATE`);
      blockedPut = gw.client.state
        .putState({ clientId, document: { by: 'blocked' } }, { deadline: 60_000 })
        .catch((err: unknown) => err);
      await eventually(async () => {
        const err = await failureOf(gw.client.state.getState({ clientId }));
        expect((err as ClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
      });
    });
    afterAll(async () => {
      await locker?.query('ROLLBACK').catch(() => undefined);
      await locker?.end();
      await blockedPut;
      await gw?.close();
    });

    it('retry.maxAttempts bounds the attempts: 3 refusals, then the last RESOURCE_EXHAUSTED', async () => {
      const sg = typedClient(gw, { maxAttempts: 3 });
      const log = attemptLog();
      const started = performance.now();
      const err = await failureOf(sg.state.getState({ clientId }, { onTrailer: log.onTrailer }));
      const elapsedMs = performance.now() - started;
      expect((err as RichClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(pushbackDelayMs(err)).toBe(IN_FLIGHT_RETRY_MS);
      expect(log.delays).toEqual([IN_FLIGHT_RETRY_MS, IN_FLIGHT_RETRY_MS, IN_FLIGHT_RETRY_MS]);
      expect(elapsedMs).toBeGreaterThanOrEqual(2 * IN_FLIGHT_RETRY_MS);
    });

    it('with unlimited attempts the deadline still bounds the call, which ends RESOURCE_EXHAUSTED before it', async () => {
      const sg = typedClient(gw, { maxAttempts: Infinity });
      const log = attemptLog();
      const DEADLINE_MS = 300;
      const started = performance.now();
      const err = await failureOf(
        sg.state.getState({ clientId }, { deadline: DEADLINE_MS, onTrailer: log.onTrailer }),
      );
      const elapsedMs = performance.now() - started;
      expect((err as RichClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(elapsedMs).toBeLessThan(DEADLINE_MS);
      // Attempts at about 0, 100 and 200 ms; at about 200 ms a further 100 ms wait and attempt
      // no longer fit. (Only round trips of nearly 100 ms would leave room for two attempts.)
      expect(log.delays.length).toBeGreaterThanOrEqual(2);
      expect(log.delays.length).toBeLessThanOrEqual(3);
      expect(log.delays.every((d) => d === IN_FLIGHT_RETRY_MS)).toBe(true);
    });

    it('aborting the call ends the wait at once, with no further attempt', async () => {
      const sg = typedClient(gw);
      const controller = new AbortController();
      const log = attemptLog();
      let abortedAt = Infinity;
      const onTrailer = (trailer: Metadata): void => {
        log.onTrailer(trailer);
        // The refusal is in: an instant later the client is waiting out its 100 ms.
        setTimeout(() => {
          abortedAt = performance.now();
          controller.abort();
        }, 20);
      };
      const err = await failureOf(
        sg.state.getState({ clientId }, { signal: controller.signal, onTrailer }),
      );
      expect(err).toMatchObject({ name: 'AbortError' });
      expect(performance.now() - abortedAt).toBeLessThan(50);
      expect(log.delays).toEqual([IN_FLIGHT_RETRY_MS]);
    });
  });
});
