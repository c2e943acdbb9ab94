/**
 * `npx tsx bench/limits.ts [--seconds <n>]`: the per-call cost of the limits middleware
 * (src/api/call-limits.ts), side by side with a pass-through middleware in the same run.
 *
 * 1. In-process, no network: ns per call of the middleware alone (a handler that returns at once),
 *    with 1 client, 10,000 clients in turn, and a new client id on every call (eviction at work),
 *    plus how many limiter keys are left behind.
 * 2. Loopback gRPC: calls/s of a nice-grpc server whose handler does no I/O, with and without the
 *    limits middleware, at concurrency 32 — the share of a real call the limits take.
 * Limits are set high enough that nothing is refused: this measures admission, not refusal.
 */
import { parseArgs } from 'node:util';
import {
  createChannel,
  createClient,
  createServer,
  type CallContext,
  type ServerMiddlewareCall,
} from 'nice-grpc';
import { enforceLimits } from '../src/api/call-limits.js';
import type { GatewayContext } from '../src/api/gateway-context.js';
import { anonymousIdentity, type AuthContext } from '../src/auth/identity.js';
import { configSchema } from '../src/core/config.js';
import {
  StateServiceDefinition,
  type StateServiceImplementation,
} from '../src/gen/shardgate/v1/state.js';
import { fmt, formatTable } from './stats.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' } } });
const SECONDS = Number(values.seconds);
const CONCURRENCY = 32;
const METHOD = {
  path: '/shardgate.v1.StateService/GetState',
  requestStream: false,
  responseStream: false,
  options: {},
};

const config = configSchema.parse({
  catalogUrl: 'postgres://unused@127.0.0.1:1/unused',
  limits: { clientRatePerSecond: 1e9, clientBurst: 1e9, clientMaxInFlight: 1e6 },
});
const ctx = { config } as unknown as GatewayContext;

type Middleware = ReturnType<typeof enforceLimits>;

/** The placeholder enforceLimits replaced: the cost floor of any middleware. */
const passThrough: Middleware = async function* <Request, Response>(
  call: ServerMiddlewareCall<Request, Response>,
  context: CallContext & AuthContext,
) {
  return yield* call.next(call.request, context);
};

/** ns per call of `middleware` around a handler that returns at once; best of several batches. */
async function nsPerCall(middleware: Middleware, clientIdOf: (i: number) => string) {
  const context = {
    signal: new AbortController().signal,
    identity: anonymousIdentity,
  } as unknown as CallContext & AuthContext;
  const response = { state: undefined };
  // eslint-disable-next-line require-yield
  const next = async function* () {
    return response;
  };
  const callOf = (i: number) =>
    ({
      method: METHOD,
      requestStream: false,
      responseStream: false,
      request: { clientId: clientIdOf(i) },
      next,
    }) as unknown as ServerMiddlewareCall<{ clientId: string }, typeof response>;
  const batch = 50_000;
  let best = Infinity;
  let n = 0;
  for (let round = 0; round < 8; round++) {
    const t0 = performance.now();
    for (let i = 0; i < batch; i++) await middleware(callOf(n++), context).next();
    if (round >= 2) best = Math.min(best, ((performance.now() - t0) * 1e6) / batch);
  }
  return best;
}

/** calls/s of GetState over loopback gRPC with `middleware` in the server's chain. */
async function callsPerSecond(middleware: Middleware): Promise<number> {
  const answer = () => Promise.resolve({ state: undefined });
  const impl = {
    getState: answer,
    putState: answer,
    patchState: answer,
  } as unknown as StateServiceImplementation;
  const server = createServer()
    .use(async function* <Request, Response>(
      call: ServerMiddlewareCall<Request, Response, AuthContext>,
      context: CallContext,
    ) {
      return yield* call.next(call.request, { ...context, identity: anonymousIdentity });
    })
    .use(middleware);
  server.add(StateServiceDefinition, impl);
  const port = await server.listen('127.0.0.1:0');
  const channel = createChannel(`127.0.0.1:${port}`);
  const client = createClient(StateServiceDefinition, channel);
  let calls = 0;
  const run = async (ms: number, count: boolean) => {
    const endAt = Date.now() + ms;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, w) => {
        for (let i = 0; Date.now() < endAt; i++) {
          await client.getState({ clientId: `client-${(w * 7919 + i) % 1000}` });
          if (count) calls++;
        }
      }),
    );
  };
  await run(500, false);
  const t0 = performance.now();
  await run(SECONDS * 1000, true);
  const rate = calls / ((performance.now() - t0) / 1000);
  channel.close();
  await server.shutdown();
  return rate;
}

async function main(): Promise<void> {
  const limits = enforceLimits(ctx);
  const manyIds = Array.from({ length: 10_000 }, (_, i) => `client-${i}`);
  const rows: string[][] = [];
  const micro: [string, Middleware, (i: number) => string][] = [
    ['pass-through (no limits)', passThrough, () => 'acme-hvac'],
    ['enforceLimits, 1 client', limits, () => 'acme-hvac'],
    ['enforceLimits, 10,000 clients in turn', limits, (i) => manyIds[i % 10_000]!],
    ['enforceLimits, a new client id every call', limits, (i) => `fresh-${i}`],
  ];
  for (const [name, middleware, idOf] of micro) {
    rows.push([name, fmt(await nsPerCall(middleware, idOf), 0)]);
  }
  console.log(`limits middleware, in-process — node ${process.version}\n`);
  console.log(formatTable(['middleware', 'ns/call (best)'], rows));

  // Alternate the two servers twice and keep the best of each, so neither gains from going later.
  const best = { without: 0, with: 0 };
  for (let round = 0; round < 2; round++) {
    best.without = Math.max(best.without, await callsPerSecond(passThrough));
    best.with = Math.max(best.with, await callsPerSecond(enforceLimits(ctx)));
  }
  console.log(`\nloopback gRPC GetState, handler without I/O, concurrency ${CONCURRENCY}:`);
  console.log(
    formatTable(
      ['server chain', 'calls/s (best of 2)'],
      [
        ['without limits', fmt(best.without, 0)],
        ['with limits', fmt(best.with, 0)],
        ['with ÷ without', fmt(best.with / best.without, 3)],
      ],
    ),
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
