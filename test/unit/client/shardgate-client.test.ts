import { setTimeout as sleep } from 'node:timers/promises';
import {
  type CallContext,
  ClientError,
  Metadata,
  type Server,
  ServerError,
  Status,
  createServer,
} from 'nice-grpc';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type ShardgateClient,
  type ShardgateClientOptions,
  createShardgateClient,
  isRetriedMethod,
} from '../../../src/client/index.js';
import {
  AdminServiceDefinition,
  type AdminServiceImplementation,
} from '../../../src/gen/shardgate/v1/admin.js';
import { AppointmentServiceDefinition } from '../../../src/gen/shardgate/v1/appointment.js';
import {
  HandoffServiceDefinition,
  type HandoffServiceImplementation,
} from '../../../src/gen/shardgate/v1/handoff.js';
import { SharedServiceDefinition } from '../../../src/gen/shardgate/v1/shared.js';
import {
  StateServiceDefinition,
  type StateServiceImplementation,
} from '../../../src/gen/shardgate/v1/state.js';
import { TenantServiceDefinition } from '../../../src/gen/shardgate/v1/tenant.js';

/** What the in-memory server does for one key (a client id, or `topology`). */
interface Script {
  unavailableFirst?: number;
  failWith?: Status;
  delayMs?: number;
}

/** What the server saw for one key. */
interface Seen {
  calls: number;
  metadata: Metadata[];
  cancelled: boolean;
}

const scripts = new Map<string, Script>();
/** The request_id of every AppendHandoff attempt the server saw. */
const requestIdsSeen: string[] = [];
const seen = new Map<string, Seen>();
let nextId = 0;

/** A fresh key per test, so no test depends on another's counts. */
function freshId(script: Script = {}): string {
  const id = `client-${++nextId}`;
  scripts.set(id, script);
  return id;
}

function seenFor(key: string): Seen {
  let entry = seen.get(key);
  if (entry === undefined) {
    entry = { calls: 0, metadata: [], cancelled: false };
    seen.set(key, entry);
  }
  return entry;
}

/** Runs a handler's scripted behaviour: refuse, fail, or wait, then let it answer. */
async function step(key: string, context: CallContext): Promise<void> {
  const entry = seenFor(key);
  entry.calls += 1;
  entry.metadata.push(context.metadata);
  const script = scripts.get(key) ?? {};
  if (entry.calls <= (script.unavailableFirst ?? 0)) {
    throw new ServerError(Status.UNAVAILABLE, `attempt ${entry.calls} refused`);
  }
  if (script.failWith !== undefined) throw new ServerError(script.failWith, 'scripted failure');
  if (script.delayMs !== undefined) await waitOrCancel(entry, script.delayMs, context.signal);
}

async function waitOrCancel(entry: Seen, delayMs: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(delayMs, undefined, { signal });
  } catch (error) {
    entry.cancelled = true;
    throw error;
  }
}

const unimplemented = async (): Promise<never> => {
  throw new ServerError(Status.UNIMPLEMENTED, 'not in this test server');
};

const admin: AdminServiceImplementation = {
  async getTopology(_request, context) {
    await step('topology', context);
    return { shards: [{ name: 'shard-1', weight: 100, tenantCount: 3 }], ringEpoch: 42 };
  },
  locate: unimplemented,
  addShard: unimplemented,
  drainShard: unimplemented,
  removeShard: unimplemented,
  setShardWeight: unimplemented,
  setShardDsn: unimplemented,
  planRebalance: unimplemented,
  // eslint-disable-next-line require-yield
  moveTenant: async function* () {
    return unimplemented();
  },
  // eslint-disable-next-line require-yield
  rebalance: async function* () {
    return unimplemented();
  },
  listMoves: unimplemented,
  getMove: unimplemented,
  cancelMove: unimplemented,
  createToken: unimplemented,
  listTokens: unimplemented,
  revokeToken: unimplemented,
  listAuditEvents: unimplemented,
};

const state: StateServiceImplementation = {
  async getState({ clientId }, context) {
    await step(clientId, context);
    return { state: { document: { owner: clientId }, version: 7 } };
  },
  async putState({ clientId, document }, context) {
    await step(clientId, context);
    return { state: { document, version: 1 } };
  },
  async patchState({ clientId, patch }, context) {
    await step(clientId, context);
    return { state: { document: patch, version: 1 } };
  },
};

const handoffs: HandoffServiceImplementation = {
  async *watchHandoffs({ clientId }, context) {
    const entry = seenFor(clientId);
    await step(clientId, context);
    for (const id of ['h-1', 'h-2']) {
      await waitOrCancel(entry, 300, context.signal);
      yield { handoff: { id, fromAgent: 'intake-agent', toAgent: 'dispatch-agent' } };
    }
    await waitOrCancel(entry, 60_000, context.signal);
  },
  async appendHandoff({ clientId, handoff, requestId }, context) {
    requestIdsSeen.push(requestId);
    await step(clientId, context);
    return { handoff: { ...handoff!, id: `h-${requestId}` } };
  },
  batchAppendHandoffs: unimplemented,
  listHandoffs: unimplemented,
  getLatestHandoff: unimplemented,
};

let server: Server;
let address: string;
const clients: ShardgateClient[] = [];

beforeAll(async () => {
  server = createServer();
  server.add(AdminServiceDefinition, admin);
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

function connect(options: Partial<ShardgateClientOptions> = {}): ShardgateClient {
  const client = createShardgateClient({
    address,
    retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 },
    ...options,
  });
  clients.push(client);
  return client;
}

/** The status of a call that must fail. */
async function statusOf(call: Promise<unknown>): Promise<Status> {
  const error: unknown = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof ClientError)) throw new Error(`expected a ClientError, got ${error}`);
  return error.code;
}

describe('createShardgateClient retry', () => {
  it('retries GetState on UNAVAILABLE and returns the answer of the third call', async () => {
    const clientId = freshId({ unavailableFirst: 2 });
    const response = await connect().state.getState({ clientId });
    expect(response.state).toEqual({ document: { owner: clientId }, version: 7 });
    expect(seenFor(clientId).calls).toBe(3);
  });

  it('retries GetTopology on UNAVAILABLE', async () => {
    scripts.set('topology', { unavailableFirst: 1 });
    seen.delete('topology');
    const response = await connect().admin.getTopology({});
    expect(response).toEqual({
      shards: [{ name: 'shard-1', weight: 100, address: '', state: 0, tenantCount: 3 }],
      ringEpoch: 42,
      ringVnodes: 0,
    });
    expect(seenFor('topology').calls).toBe(2);
  });

  it('gives up a read after maxAttempts calls in all', async () => {
    const clientId = freshId({ unavailableFirst: 10 });
    expect(await statusOf(connect().state.getState({ clientId }))).toBe(Status.UNAVAILABLE);
    expect(seenFor(clientId).calls).toBe(3);
  });

  it('does not retry a read when maxAttempts is 1', async () => {
    const clientId = freshId({ unavailableFirst: 1 });
    const client = connect({ retry: { maxAttempts: 1 } });
    expect(await statusOf(client.state.getState({ clientId }))).toBe(Status.UNAVAILABLE);
    expect(seenFor(clientId).calls).toBe(1);
  });

  it.each([Status.INTERNAL, Status.UNKNOWN, Status.ABORTED])(
    'does not retry a read that fails with status %i',
    async (code) => {
      const clientId = freshId({ failWith: code });
      expect(await statusOf(connect().state.getState({ clientId }))).toBe(code);
      expect(seenFor(clientId).calls).toBe(1);
    },
  );

  it.each(['putState', 'patchState'] as const)('never retries the write %s', async (method) => {
    const clientId = freshId({ unavailableFirst: 1 });
    const call = connect().state[method]({ clientId, document: { a: 1 }, patch: { a: 1 } });
    expect(await statusOf(call)).toBe(Status.UNAVAILABLE);
    expect(seenFor(clientId).calls).toBe(1);
  });

  it('does not retry WatchHandoffs', async () => {
    const clientId = freshId({ unavailableFirst: 1 });
    const stream = connect().handoffs.watchHandoffs({ clientId });
    const drain = async () => {
      for await (const _ of stream) throw new Error('expected no message');
    };
    expect(await statusOf(drain())).toBe(Status.UNAVAILABLE);
    expect(seenFor(clientId).calls).toBe(1);
  });

  it('retries a keyed create on UNAVAILABLE with one request_id for every attempt, made when the caller gave none', async () => {
    const clientId = freshId({ unavailableFirst: 2 });
    requestIdsSeen.length = 0;
    const handoff = { fromAgent: 'intake-agent', toAgent: 'dispatch-agent', version: 1 };
    const response = await connect().handoffs.appendHandoff({ clientId, handoff });
    expect(seenFor(clientId).calls).toBe(3);
    expect(requestIdsSeen).toHaveLength(3);
    expect(requestIdsSeen[0]).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(new Set(requestIdsSeen).size).toBe(1);
    expect(response.handoff?.id).toBe(`h-${requestIdsSeen[0]}`);

    // A second call gets a key of its own; a caller's own key is sent as it is.
    const other = freshId();
    await connect().handoffs.appendHandoff({ clientId: other, handoff });
    const own = '6f1c2a4e-8b1d-4c3e-9f2a-0d1e2f3a4b5c';
    await connect().handoffs.appendHandoff({ clientId: other, handoff, requestId: own });
    expect(requestIdsSeen.slice(3, 4)[0]).not.toBe(requestIdsSeen[0]);
    expect(requestIdsSeen[4]).toBe(own);
  });

  it('retries exactly the unary Get*, List*, Locate and BatchGet* methods and the keyed creates of the contract', () => {
    const definitions = [
      TenantServiceDefinition,
      AppointmentServiceDefinition,
      HandoffServiceDefinition,
      StateServiceDefinition,
      SharedServiceDefinition,
      AdminServiceDefinition,
    ];
    const retried = definitions
      .flatMap((d) => Object.values(d.methods))
      .filter((m) => !m.requestStream && !m.responseStream && isRetriedMethod(m.name))
      .map((m) => m.name);
    expect(retried).toEqual([
      'GetTenant',
      'ListTenants',
      'CreateAppointment',
      'GetAppointment',
      'ListAppointments',
      'BatchCreateAppointments',
      'BatchGetAppointments',
      'AppendHandoff',
      'ListHandoffs',
      'GetLatestHandoff',
      'BatchAppendHandoffs',
      'GetState',
      'GetBenchmark',
      'ListBenchmarks',
      'AddKnowledgeEntry',
      'ListKnowledgeEntries',
      'GetTopology',
      'Locate',
      'ListMoves',
      'GetMove',
      'ListTokens',
      'ListAuditEvents',
    ]);
  });
});

describe('createShardgateClient deadline', () => {
  it('fails a slow unary call with DEADLINE_EXCEEDED after defaultDeadlineMs and cancels it on the server', async () => {
    const clientId = freshId({ delayMs: 5_000 });
    const started = Date.now();
    const code = await statusOf(connect({ defaultDeadlineMs: 100 }).state.getState({ clientId }));
    expect(code).toBe(Status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(2_000);
    await expect.poll(() => seenFor(clientId).cancelled).toBe(true);
    expect(seenFor(clientId).calls).toBe(1);
  });

  it('lets a per-call deadline override the default', async () => {
    const clientId = freshId({ delayMs: 300 });
    const client = connect({ defaultDeadlineMs: 100 });
    const response = await client.state.getState({ clientId }, { deadline: 5_000 });
    expect(response.state?.version).toBe(7);
  });

  it('spans retries: a read still refused at the deadline fails with DEADLINE_EXCEEDED', async () => {
    const clientId = freshId({ unavailableFirst: Number.MAX_SAFE_INTEGER });
    const client = connect({
      defaultDeadlineMs: 200,
      retry: { maxAttempts: Infinity, baseDelayMs: 10, maxDelayMs: 20 },
    });
    expect(await statusOf(client.state.getState({ clientId }))).toBe(Status.DEADLINE_EXCEEDED);
    expect(seenFor(clientId).calls).toBeGreaterThan(1);
  });

  it('puts no default deadline on WatchHandoffs', async () => {
    const clientId = freshId();
    const client = connect({ defaultDeadlineMs: 100 });
    const received: string[] = [];
    for await (const { handoff } of client.handoffs.watchHandoffs({ clientId })) {
      received.push(handoff?.id ?? '');
      if (received.length === 2) break;
    }
    expect(received).toEqual(['h-1', 'h-2']);
    await expect.poll(() => seenFor(clientId).cancelled).toBe(true);
  });
});

describe('createShardgateClient metadata', () => {
  it('sends the client metadata on every call, under the call’s own', async () => {
    const clientId = freshId({ unavailableFirst: 1 });
    const client = connect({ metadata: { 'x-shardgate-caller': 'demo', 'x-trace': 'default' } });
    await client.state.getState({ clientId }, { metadata: Metadata({ 'x-trace': 'call-1' }) });
    await client.state.getState({ clientId });
    const sent = seenFor(clientId).metadata.map((m) => [
      m.get('x-shardgate-caller'),
      m.get('x-trace'),
    ]);
    expect(sent).toEqual([
      ['demo', 'call-1'],
      ['demo', 'call-1'],
      ['demo', 'default'],
    ]);
  });
});

describe('createShardgateClient options', () => {
  it.each([
    { defaultDeadlineMs: 0 },
    { defaultDeadlineMs: 2 ** 31 },
    { retry: { maxAttempts: 0 } },
    { retry: { maxAttempts: 1.5 } },
    { retry: { baseDelayMs: -1 } },
  ])('rejects %j', (options) => {
    expect(() => createShardgateClient({ address: '127.0.0.1:1', ...options })).toThrow(RangeError);
  });
});
