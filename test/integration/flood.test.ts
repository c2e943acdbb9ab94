import { spawn } from 'node:child_process';
import { setPriority } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createChannel, createClient, type ClientError } from 'nice-grpc';
import { HealthDefinition } from 'nice-grpc-server-health';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/core/config.js';
import type { FloodReport, FloodSpec } from '../support/flood-client.js';
import { waitUntil } from '../support/handoff-watch.js';
import {
  adminUrlOf,
  createTestTopology,
  eventually,
  freshClientId,
  startTestGateway,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

// Low enough that even a starved flooder (it runs at nice 19) goes well past it, and above B's
// trickle (1000 / TRICKLE_EVERY_MS calls/s), which must never be refused.
const RATE = 40;
const BURST = 10;
const MAX_IN_FLIGHT = 16;
const POOL_MAX = 10;
/** The trickle: one call of client B every TRICKLE_EVERY_MS, TRICKLE_CALLS of them. */
const TRICKLE_EVERY_MS = 40;
const TRICKLE_CALLS = 120;
/** A's concurrent calls: four times its clientMaxInFlight, each sent again as soon as it ends. */
const FLOOD_CONCURRENCY = 4 * MAX_IN_FLIGHT;
/**
 * B's p99 under the flood may be this many times its baseline p99, or up to ABSOLUTE_P99_MS. A
 * starved B waits for a connection until A's stuck calls end (their 1 s deadline) or fails; half
 * of that still tells starvation from the noise of a loaded machine (this 2-core machine, running
 * other test suites at the same time, has shown a p99 of 314 ms over a 15 ms baseline).
 */
const P99_FACTOR = 5;
const ABSOLUTE_P99_MS = 500;

const floodClient = fileURLToPath(new URL('../support/flood-client.ts', import.meta.url));
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** Starts the flooding process; resolves `ready` once its first call settled. */
function startFlood(spec: FloodSpec): { ready: Promise<void>; report: Promise<FloodReport> } {
  const child = spawn(process.execPath, ['--import', 'tsx', floodClient, JSON.stringify(spec)], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // In production the flooder runs on its own machine; here it shares the CPU with the gateway, so
  // it runs at the lowest priority to take (mostly) idle CPU rather than the gateway's.
  setPriority(child.pid!, 19);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const lines = createInterface({ input: child.stdout });
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const report = new Promise<FloodReport>((resolve, reject) => {
    let last = '';
    lines.on('line', (line) => {
      if (line === 'ready') onReady();
      else last = line;
    });
    child.once('exit', (code) => {
      if (code === 0) resolve(JSON.parse(last) as FloodReport);
      else reject(new Error(`flood client exited with ${code}: ${stderr}`));
    });
  });
  return { ready: Promise.race([ready, report.then(() => undefined)]), report };
}

interface TrickleResult {
  latenciesMs: number[];
  failures: { code: number; details: string }[];
}

/** Client B's steady trickle: an open loop (calls start on schedule, whatever earlier ones do). */
async function trickle(gw: TestGateway, clientId: string): Promise<TrickleResult> {
  const latenciesMs: number[] = [];
  const failures: TrickleResult['failures'] = [];
  const calls: Promise<void>[] = [];
  for (let i = 0; i < TRICKLE_CALLS; i++) {
    const started = performance.now();
    const call =
      i % 2 === 0
        ? gw.client.state.getState({ clientId })
        : gw.client.state.putState({ clientId, document: { i } });
    calls.push(
      call.then(
        () => void latenciesMs.push(performance.now() - started),
        (err: ClientError) => void failures.push({ code: err.code, details: err.details }),
      ),
    );
    await new Promise((r) => setTimeout(r, TRICKLE_EVERY_MS));
  }
  await Promise.all(calls);
  return { latenciesMs, failures };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const summary = (r: TrickleResult) =>
  `p50 ${percentile(r.latenciesMs, 50).toFixed(1)} ms, p95 ${percentile(r.latenciesMs, 95).toFixed(1)} ms, ` +
  `p99 ${percentile(r.latenciesMs, 99).toFixed(1)} ms, ` +
  `max ${Math.max(...r.latenciesMs).toFixed(1)} ms`;

describe('a flooding client does not starve the others', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  const a = freshClientId('flood-a');
  const b = freshClientId('flood-b');

  beforeAll(async () => {
    // One shard: A and B share its pool of POOL_MAX connections.
    topology = await createTestTopology(1);
    gw = await startTestGateway(topology, {
      pool: configSchema.shape.pool.parse({ max: POOL_MAX }),
      limits: configSchema.shape.limits.parse({
        clientRatePerSecond: RATE,
        clientBurst: BURST,
        clientMaxInFlight: MAX_IN_FLIGHT,
        maxDeadlineMs: 2_000,
      }),
    });
    await gw.client.tenants.createTenant({ clientId: a });
    await gw.client.tenants.createTenant({ clientId: b });
    // Warm up B's path (placement cache, pooled connections).
    await trickle(gw, b);
  });
  afterAll(async () => {
    await gw?.close();
  });

  /**
   * B's trickle under a flood must see no refusal and a p99 within the bound of its baseline, which
   * is measured just before the flood so both see about the same load from the rest of the machine.
   */
  function expectUnaffected(baseline: TrickleResult, underFlood: TrickleResult, label: string) {
    expect(baseline.failures).toEqual([]);
    const base99 = percentile(baseline.latenciesMs, 99);
    const flood99 = percentile(underFlood.latenciesMs, 99);
    console.log(`B alone: ${summary(baseline)}; B during ${label}: ${summary(underFlood)}`);
    expect(underFlood.failures).toEqual([]);
    expect(underFlood.latenciesMs).toHaveLength(TRICKLE_CALLS);
    expect(flood99).toBeLessThanOrEqual(Math.max(ABSOLUTE_P99_MS, P99_FACTOR * base99));
  }

  async function expectHealthy(): Promise<void> {
    const channel = createChannel(gw.gateway.address);
    try {
      const health = createClient(HealthDefinition, channel);
      expect((await health.check({ service: '' })).status).toBe(1);
    } finally {
      channel.close();
    }
    const shard = gw.gateway.context.pools.get(topology.shards[0]!.name as never);
    await waitUntil(() => shard.stats().waiting === 0, 'no call waiting for a connection');
    // A itself is served again once its bucket refills.
    await eventually(() => gw.client.state.getState({ clientId: a }), 5_000, 100);
  }

  it('A flooding cheap reads past its rate: A is refused the excess, B sees no refusal and little added latency', async () => {
    const alone = await trickle(gw, b);
    const flood = startFlood({
      address: gw.gateway.address,
      clientId: a,
      op: 'get',
      concurrency: FLOOD_CONCURRENCY,
      durationMs: (TRICKLE_CALLS * TRICKLE_EVERY_MS * 3) / 2 + 1_000,
      deadlineMs: 5_000,
    });
    await flood.ready;
    const underFlood = await trickle(gw, b);
    const report = await flood.report;
    console.log(`A's rate flood: ${JSON.stringify(report)}`);

    expectUnaffected(alone, underFlood, 'the rate flood');
    expect(Object.keys(report.byStatus).sort()).toEqual(['OK', 'RESOURCE_EXHAUSTED']);
    expect(report.refusedBy.rate).toBeGreaterThan(0);
    expect(report.refusedBy.other).toBe(0);
    // The bucket's promise on this replica: no more than the burst plus the rate × the flood's
    // length (half a second of slack for calls in flight at either end).
    expect(report.byStatus.OK).toBeLessThanOrEqual(
      BURST + Math.ceil((RATE * (report.elapsedMs + 500)) / 1000),
    );
    await expectHealthy();
  }, 60_000);

  it('A flooding writes stuck behind a lock: A holds at most its share of the pool, B still runs', async () => {
    // A's bucket may still be nearly empty from the previous flood: wait until it admits a call.
    const { tenant } = await eventually(() => gw.client.tenants.getTenant({ clientId: a }));
    const alone = await trickle(gw, b);
    const locker = new pg.Client({ connectionString: adminUrlOf(topology.shards[0]!.url) });
    locker.on('error', () => undefined);
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`SELECT * FROM ${pg.escapeIdentifier(tenant!.schema)}.state FOR UPDATE`);
      const flood = startFlood({
        address: gw.gateway.address,
        clientId: a,
        op: 'put',
        concurrency: FLOOD_CONCURRENCY,
        durationMs: (TRICKLE_CALLS * TRICKLE_EVERY_MS * 3) / 2 + 1_000,
        deadlineMs: 1_000,
      });
      await flood.ready;
      const underFlood = await trickle(gw, b);
      const report = await flood.report;
      console.log(`A's stuck-write flood: ${JSON.stringify(report)}`);

      expectUnaffected(alone, underFlood, 'the stuck-write flood');
      // Every write of A waited on the lock until its deadline, or was refused.
      expect(Object.keys(report.byStatus).sort()).toEqual([
        'DEADLINE_EXCEEDED',
        'RESOURCE_EXHAUSTED',
      ]);
      expect(report.refusedBy.inFlight).toBeGreaterThan(0);
      expect(report.refusedBy.other).toBe(0);
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
    }
    await expectHealthy();
  }, 60_000);
});
