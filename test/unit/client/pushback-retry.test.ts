import { ClientError, type Server, ServerError, Status, createServer } from 'nice-grpc';
import {
  QuotaFailure,
  RetryInfo,
  RichClientError,
  RichServerError,
  errorDetailsServerMiddleware,
} from 'nice-grpc-error-details';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type ShardgateClient,
  type ShardgateClientOptions,
  createShardgateClient,
} from '../../../src/client/index.js';
import { pushbackDelayMs, pushbackWaitMs } from '../../../src/client/pushback-retry.js';
import {
  HandoffServiceDefinition,
  type HandoffServiceImplementation,
} from '../../../src/gen/shardgate/v1/handoff.js';
import {
  StateServiceDefinition,
  type StateServiceImplementation,
} from '../../../src/gen/shardgate/v1/state.js';

const PATH = '/shardgate.v1.StateService/GetState';

/** RESOURCE_EXHAUSTED as the client sees it after errorDetailsClientMiddleware. */
function refusal(
  retryDelay?: { seconds: number; nanos: number },
  code = Status.RESOURCE_EXHAUSTED,
) {
  const extra = retryDelay ? [RetryInfo.fromPartial({ retryDelay })] : [];
  return new RichClientError(PATH, code, 'over the limit', extra);
}

describe('pushbackDelayMs', () => {
  it('reads RetryInfo.retry_delay in milliseconds, rounded up', () => {
    expect(pushbackDelayMs(refusal({ seconds: 1, nanos: 500_000_000 }))).toBe(1_500);
    expect(pushbackDelayMs(refusal({ seconds: 0, nanos: 1 }))).toBe(1);
    expect(pushbackDelayMs(refusal({ seconds: 0, nanos: 0 }))).toBe(0);
  });

  it('is undefined without RetryInfo, for other codes, and for errors without details', () => {
    expect(pushbackDelayMs(refusal())).toBeUndefined();
    const quotaOnly = new RichClientError(PATH, Status.RESOURCE_EXHAUSTED, 'x', [
      QuotaFailure.fromPartial({ violations: [] }),
    ]);
    expect(pushbackDelayMs(quotaOnly)).toBeUndefined();
    expect(pushbackDelayMs(refusal({ seconds: 1, nanos: 0 }, Status.UNAVAILABLE))).toBeUndefined();
    expect(pushbackDelayMs(new ClientError(PATH, Status.RESOURCE_EXHAUSTED, 'x'))).toBeUndefined();
    expect(pushbackDelayMs(new Error('x'))).toBeUndefined();
    expect(pushbackDelayMs(refusal({ seconds: -1, nanos: 0 }))).toBeUndefined();
  });
});

describe('pushbackWaitMs', () => {
  it('waits the delay plus at most 10 % upward jitter when no deadline presses', () => {
    expect(pushbackWaitMs(100, Infinity, 0)).toBe(100);
    expect(pushbackWaitMs(100, Infinity, 0.999)).toBe(109);
    expect(pushbackWaitMs(0, 50, 0.5)).toBe(0);
  });

  it('never waits past the time left, jitter included', () => {
    expect(pushbackWaitMs(100, 100, 0)).toBeUndefined();
    expect(pushbackWaitMs(100, 99, 0)).toBeUndefined();
    expect(pushbackWaitMs(100, -5, 0)).toBeUndefined();
    expect(pushbackWaitMs(100, 104, 0.999)).toBe(103);
    expect(pushbackWaitMs(100, 101, 0.999)).toBe(100);
  });

  it('follows no delay longer than a timer can wait', () => {
    expect(pushbackWaitMs(2 ** 31, Infinity, 0)).toBeUndefined();
  });
});

/** One scripted answer: UNAVAILABLE, RESOURCE_EXHAUSTED (with RetryInfo of `ms`, or none), or OK. */
type Step = 'unavailable' | { pushbackMs: number | undefined } | 'ok';

const scripts = new Map<string, Step[]>();
/** When the server saw each call, per client id (ms, performance.now()). */
const calls = new Map<string, number[]>();
const requestIds = new Map<string, string[]>();
let nextId = 0;

function scripted(...steps: Step[]): string {
  const id = `client-${++nextId}`;
  scripts.set(id, steps);
  calls.set(id, []);
  requestIds.set(id, []);
  return id;
}

/** Runs the next step of `clientId`'s script (the last one repeats). */
function step(clientId: string): void {
  const seen = calls.get(clientId)!;
  seen.push(performance.now());
  const steps = scripts.get(clientId)!;
  const next = steps[Math.min(seen.length, steps.length) - 1]!;
  if (next === 'ok') return;
  if (next === 'unavailable') throw new ServerError(Status.UNAVAILABLE, 'shard down');
  const { pushbackMs } = next;
  const extra =
    pushbackMs === undefined
      ? []
      : [
          RetryInfo.fromPartial({
            retryDelay: {
              seconds: Math.floor(pushbackMs / 1000),
              nanos: (pushbackMs % 1000) * 1e6,
            },
          }),
        ];
  throw new RichServerError(Status.RESOURCE_EXHAUSTED, 'over the limit', extra);
}

const state: StateServiceImplementation = {
  async getState({ clientId }) {
    step(clientId);
    return { state: { document: { owner: clientId }, version: 3 } };
  },
  async putState({ clientId, document }) {
    step(clientId);
    return { state: { document, version: 1 } };
  },
  async patchState({ clientId, patch }) {
    step(clientId);
    return { state: { document: patch, version: 1 } };
  },
};

const unimplemented = async (): Promise<never> => {
  throw new ServerError(Status.UNIMPLEMENTED, 'not in this test server');
};

const handoffs: HandoffServiceImplementation = {
  async appendHandoff({ clientId, handoff, requestId }) {
    requestIds.get(clientId)!.push(requestId);
    step(clientId);
    return { handoff: { ...handoff!, id: `h-${requestId}` } };
  },
  // eslint-disable-next-line require-yield
  watchHandoffs: async function* () {
    return unimplemented();
  },
  batchAppendHandoffs: unimplemented,
  listHandoffs: unimplemented,
  getLatestHandoff: unimplemented,
};

let server: Server;
let address: string;
const clients: ShardgateClient[] = [];

beforeAll(async () => {
  server = createServer().use(errorDetailsServerMiddleware);
  server.add(StateServiceDefinition, state);
  server.add(HandoffServiceDefinition, handoffs);
  address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
});

afterEach(() => {
  for (const client of clients.splice(0)) client.close();
});

afterAll(() => {
  server.forceShutdown();
});

function connect(retry: ShardgateClientOptions['retry'] = {}): ShardgateClient {
  const client = createShardgateClient({
    address,
    retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5, ...retry },
  });
  clients.push(client);
  return client;
}

/** The error of a call that must fail. */
async function errorOf(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => {
      throw new Error('expected the call to fail, but it succeeded');
    },
    (e: unknown) => e,
  );
}

describe('createShardgateClient server pushback', () => {
  it('retries a read after the delay of RetryInfo', async () => {
    const clientId = scripted({ pushbackMs: 60 }, 'ok');
    const response = await connect().state.getState({ clientId });
    expect(response.state?.version).toBe(3);
    const [first, second] = calls.get(clientId)!;
    expect(calls.get(clientId)).toHaveLength(2);
    expect(second! - first!).toBeGreaterThanOrEqual(60);
  });

  it('shares one maxAttempts budget with UNAVAILABLE retries', async () => {
    const steps: Step[] = ['unavailable', { pushbackMs: 10 }, 'unavailable', 'ok'];
    const short = scripted(...steps);
    const error = await errorOf(connect({ maxAttempts: 3 }).state.getState({ clientId: short }));
    expect((error as ClientError).code).toBe(Status.UNAVAILABLE);
    expect(calls.get(short)).toHaveLength(3);

    const enough = scripted(...steps);
    const response = await connect({ maxAttempts: 4 }).state.getState({ clientId: enough });
    expect(response.state?.version).toBe(3);
    expect(calls.get(enough)).toHaveLength(4);
  });

  it('gives up after maxAttempts refusals with the last RESOURCE_EXHAUSTED', async () => {
    const clientId = scripted({ pushbackMs: 5 });
    const error = await errorOf(connect({ maxAttempts: 3 }).state.getState({ clientId }));
    expect(error).toBeInstanceOf(RichClientError);
    expect((error as RichClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(pushbackDelayMs(error)).toBe(5);
    expect(calls.get(clientId)).toHaveLength(3);
  });

  it('does not retry RESOURCE_EXHAUSTED without RetryInfo', async () => {
    const clientId = scripted({ pushbackMs: undefined }, 'ok');
    const error = await errorOf(connect().state.getState({ clientId }));
    expect((error as ClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(calls.get(clientId)).toHaveLength(1);
  });

  it.each(['putState', 'patchState'] as const)('never retries the write %s', async (method) => {
    const clientId = scripted({ pushbackMs: 5 }, 'ok');
    const call = connect().state[method]({ clientId, document: { a: 1 }, patch: { a: 1 } });
    expect(((await errorOf(call)) as ClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(calls.get(clientId)).toHaveLength(1);
  });

  it('retries a keyed create with the same request_id', async () => {
    const clientId = scripted({ pushbackMs: 5 }, 'unavailable', 'ok');
    const handoff = { fromAgent: 'intake-agent', toAgent: 'dispatch-agent', version: 1 };
    const response = await connect().handoffs.appendHandoff({ clientId, handoff });
    const sent = requestIds.get(clientId)!;
    expect(sent).toHaveLength(3);
    expect(new Set(sent).size).toBe(1);
    expect(response.handoff?.id).toBe(`h-${sent[0]}`);
  });

  it('keeps an absolute Date deadline across attempts and never sleeps past it', async () => {
    // Margins for a loaded machine: an attempt may take most of a second there.
    const clientId = scripted({ pushbackMs: 1_600 });
    const started = performance.now();
    const call = connect({ maxAttempts: Infinity }).state.getState(
      { clientId },
      { deadline: new Date(Date.now() + 3_000) },
    );
    expect(((await errorOf(call)) as ClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(performance.now() - started).toBeLessThan(3_000);
    // The second attempt starts after 1.6 s; a third would start 1.6 s after that: past
    // the deadline, so the second refusal is thrown at once.
    expect(calls.get(clientId)).toHaveLength(2);
  });

  it('ends the wait at once when the caller aborts', async () => {
    const clientId = scripted({ pushbackMs: 5_000 }, 'ok');
    const controller = new AbortController();
    let abortedAt = Infinity;
    // The refusal's trailer has arrived: shortly after, the client is waiting out the 5 s.
    const onTrailer = () =>
      setTimeout(() => {
        abortedAt = performance.now();
        controller.abort();
      }, 20);
    const call = connect().state.getState(
      { clientId },
      { signal: controller.signal, deadline: undefined, onTrailer },
    );
    expect(await errorOf(call)).toMatchObject({ name: 'AbortError' });
    expect(performance.now() - abortedAt).toBeLessThan(1_000);
    expect(calls.get(clientId)).toHaveLength(1);
  });
});
