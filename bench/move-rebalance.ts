/**
 * Part 3 of `npm run bench:moves`: 1,000 clients (a few rows each) on 3 shards, a 4th shard added
 * with AddShard, then Rebalance — timed end to end, with the pause of every move. For each further
 * max_concurrent_moves the 4th shard is drained back (itself a timed rebalance), removed and added
 * again, so every round moves the same clients 3 → 4.
 */
import {
  latencyGroup,
  summarizeMoves,
  timingOf,
  Windows,
  type LatencyGroup,
} from './move-analysis.js';
import type { MoveBenchOptions } from './move-options.js';
import { epochMs, type LoadTarget } from './move-protocol.js';
import {
  progress,
  rebalance,
  sleep,
  startLoad,
  stopLoad,
  tenantsPerShard,
  type MoveRig,
  type RebalanceRun,
} from './move-rig.js';
import { createClients, seedFewRowsEach } from './move-seed.js';

/** Steady load before the first rebalance and after the last, for the outside-figures. */
const BASELINE_MS = 3_000;

/** One timed Rebalance. */
export interface RebalanceFigures {
  label: string;
  maxConcurrentMoves: number;
  planned: number;
  totalSeconds: number;
  movesPerSec: number;
  /** No move finished for --stall seconds; the rest were cancelled. */
  stalled: boolean;
  /** PlanRebalance right after: what is still misplaced (expected 0). */
  leftOver: number;
  tenantsPerShard: Record<string, number>;
  summary: ReturnType<typeof summarizeMoves>;
}

export interface RebalanceResult {
  clients: number;
  createSeconds: number;
  plannedAfterAdd: { moves: number; totalBytes: number; byRoute: Record<string, number> };
  runs: RebalanceFigures[];
  /** Why the rounds stopped early, if they did. */
  aborted?: string;
  /** Writes of the load during the rebalances and outside them. */
  latency: { during: LatencyGroup; outside: LatencyGroup };
}

async function plan(rig: MoveRig) {
  const p = await rig.admin.admin.planRebalance({ limit: 0 });
  const byRoute: Record<string, number> = {};
  for (const m of p.moves)
    byRoute[`${m.fromShard}→${m.toShard}`] = (byRoute[`${m.fromShard}→${m.toShard}`] ?? 0) + 1;
  return { moves: p.moves.length, totalBytes: p.totalBytes, byRoute };
}

async function timed(
  rig: MoveRig,
  o: MoveBenchOptions,
  label: string,
  concurrency: number,
  windows: Windows,
): Promise<RebalanceFigures> {
  const planned = (await plan(rig)).moves;
  progress(`${label}: Rebalance of ${planned} moves, max_concurrent_moves ${concurrency}…`);
  const run: RebalanceRun = await rebalance(rig, concurrency, o.stallMs);
  windows.add(run.startedMs, run.endedMs);
  const totalSeconds = (run.endedMs - run.startedMs) / 1000;
  const summary = summarizeMoves(run.traces.map(timingOf));
  progress(
    `  ${summary.succeeded}/${run.totalPlanned} succeeded in ${totalSeconds.toFixed(1)} s; ` +
      `pause p50 ${summary.pauseMs.p50} ms, p99 ${summary.pauseMs.p99} ms`,
  );
  return {
    label,
    maxConcurrentMoves: concurrency,
    planned: run.totalPlanned,
    totalSeconds,
    movesPerSec: summary.succeeded / totalSeconds,
    stalled: run.stalled,
    leftOver: (await plan(rig)).moves,
    tenantsPerShard: await tenantsPerShard(rig),
    summary,
  };
}

export async function measureRebalance(
  rig: MoveRig,
  o: MoveBenchOptions,
): Promise<RebalanceResult> {
  const ids = Array.from(
    { length: o.rebalanceClients },
    (_, i) => `rb-${String(i + 1).padStart(4, '0')}`,
  );
  progress(`creating ${ids.length} tenants through CreateTenant…`);
  const createStart = epochMs();
  const created = await createClients(rig.gateway.address, ids, 4, (n) =>
    progress(`  ${n} created`),
  );
  const createSeconds = (epochMs() - createStart) / 1000;
  for (const shard of rig.shards) await seedFewRowsEach(shard.url, 'client_rb_', 3, 2);
  progress(
    `created in ${createSeconds.toFixed(1)} s; per shard: ${JSON.stringify(await tenantsPerShard(rig))}`,
  );

  // Light steady writes to some of the clients while they are rebalanced.
  const loadTargets: LoadTarget[] = created
    .filter((_, i) => i % Math.max(1, Math.floor(created.length / 12)) === 0)
    .map((c) => ({ clientId: c.clientId, ratePerSec: 10, concurrency: 1 }));
  await startLoad(rig, loadTargets);
  const windows = new Windows();
  const runs: RebalanceFigures[] = [];
  let plannedAfterAdd: RebalanceResult['plannedAfterAdd'] | undefined;
  let aborted: string | undefined;
  let samples;
  try {
    await sleep(BASELINE_MS);
    for (const [i, concurrency] of o.concurrencies.entries()) {
      if (i > 0) {
        await rig.admin.admin.drainShard({ name: rig.spare.name });
        const drain = await timed(
          rig,
          o,
          `drain ${rig.spare.name} (4 → 3 shards)`,
          concurrency,
          windows,
        );
        runs.push(drain);
        if (drain.stalled || drain.leftOver > 0) {
          aborted = `draining ${rig.spare.name} left ${drain.leftOver} clients there; later rounds skipped`;
          break;
        }
        await rig.admin.admin.removeShard({ name: rig.spare.name });
      }
      await rig.admin.admin.addShard({ name: rig.spare.name, dsn: rig.spare.url, weight: 0 });
      const p = await plan(rig);
      plannedAfterAdd ??= p;
      const tenants = Object.values(await tenantsPerShard(rig)).reduce((a, b) => a + b, 0);
      progress(
        `AddShard ${rig.spare.name}: PlanRebalance moves ${p.moves} of ${tenants} clients ${JSON.stringify(p.byRoute)}`,
      );
      const run = await timed(rig, o, '3 → 4 shards', concurrency, windows);
      runs.push(run);
      if (run.stalled) {
        aborted = 'a rebalance stalled; later rounds skipped';
        break;
      }
    }
    await sleep(BASELINE_MS);
  } catch (err) {
    aborted = `round failed: ${err instanceof Error ? err.message : String(err)}`;
    progress(aborted);
  } finally {
    samples = await stopLoad(rig);
  }
  return {
    clients: ids.length,
    createSeconds,
    plannedAfterAdd: plannedAfterAdd ?? { moves: 0, totalBytes: 0, byRoute: {} },
    runs,
    ...(aborted ? { aborted } : {}),
    latency: {
      during: latencyGroup('load clients, during a rebalance', samples, loadTargets, (c) =>
        windows.contains(c.startMs),
      ),
      outside: latencyGroup(
        'load clients, outside rebalances',
        samples,
        loadTargets,
        (c) => !windows.contains(c.startMs),
      ),
    },
  };
}
