/**
 * The processes of `npm run bench:moves` and the calls every part makes: an embedded catalog and
 * four shard servers (the gateway is told of three; the fourth is added by AddShard), the gateway
 * as a child process, the write-load process, and an admin client for moves and rebalances.
 */
import type { ChildProcess } from 'node:child_process';
import { createShardgateClient, type ShardgateClient } from '../src/client/index.js';
import type { EmbeddedServer } from '../src/embedded/embedded-server.js';
import { MoveState } from '../src/gen/shardgate/v1/admin.js';
import { MoveTrace } from './move-analysis.js';
import { epochMs, type FromLoad, type LoadSamples, type LoadTarget } from './move-protocol.js';
import {
  type Cleanup,
  forkScript,
  type GatewayProcess,
  nextMessage,
  spawnGateway,
  stopChild,
} from './processes.js';
import { withPg } from './move-seed.js';
import { startBenchCluster } from './setup.js';

/** Connections per shard pool: the gateway's default. */
export const POOL_MAX = 10;

/** A running rig. */
export interface MoveRig {
  gateway: GatewayProcess;
  /** The three shards the gateway starts with. */
  shards: { name: string; url: string }[];
  /** A fourth shard server, running but not registered until AddShard. */
  spare: { name: string; url: string };
  admin: ShardgateClient;
  load: ChildProcess;
}

export const progress = (line: string): void =>
  void process.stderr.write(`[bench:moves] ${new Date().toISOString().slice(11, 19)} ${line}\n`);

export async function startRig(cleanup: Cleanup, replWorkers?: number): Promise<MoveRig> {
  progress('starting embedded PostgreSQL (catalog + 4 shard servers)…');
  const { cluster } = await startBenchCluster(4, cleanup, replWorkers !== undefined);
  if (replWorkers !== undefined) {
    progress(`max_logical_replication_workers = ${replWorkers} on the shard servers (restart)…`);
    await Promise.all(
      cluster.servers.slice(1).map((s) => raiseWorkers(s, s.urlFor('postgres'), replWorkers)),
    );
  }
  const shards = cluster.shards.slice(0, 3);
  const spare = cluster.shards[3]!;
  progress('starting the gateway (node --import tsx src/main.ts) with 3 shards…');
  const gateway = await spawnGateway({ ...cluster, shards, poolMax: POOL_MAX }, cleanup);
  const admin = createShardgateClient({ address: gateway.address, defaultDeadlineMs: 120_000 });
  cleanup.add('close the admin client', async () => admin.close());
  const load = forkScript('write-load.ts');
  cleanup.add('stop the load process', () => stopChild(load, 3_000));
  progress(`gateway on ${gateway.address}`);
  return { gateway, shards, spare, admin, load };
}

/**
 * Gives a shard server more logical replication workers: each move into it needs an apply worker
 * plus up to max_sync_workers_per_subscription (2) table-sync workers. Both settings need a
 * restart; neither is on the embedded server's command line, so ALTER SYSTEM takes effect.
 */
async function raiseWorkers(server: EmbeddedServer, url: string, workers: number): Promise<void> {
  await withPg(url, async (c) => {
    await c.query(`ALTER SYSTEM SET max_logical_replication_workers = ${workers}`);
    await c.query(`ALTER SYSTEM SET max_worker_processes = ${workers + 8}`);
  });
  await server.restart();
}

/** Sends one message to the load process and waits for its answer; its errors are thrown here. */
async function askLoad(rig: MoveRig, message: unknown): Promise<FromLoad> {
  const reply = nextMessage(
    rig.load,
    (m): m is FromLoad => typeof m === 'object' && m !== null && 'type' in m,
  );
  rig.load.send(message as object);
  const answer = await reply;
  if (answer.type === 'error') throw new Error(`load process: ${answer.message}`);
  return answer;
}

/** Starts writing to `targets` until stopLoad. */
export async function startLoad(rig: MoveRig, targets: LoadTarget[]): Promise<void> {
  await askLoad(rig, { type: 'start', gatewayAddress: rig.gateway.address, targets });
}

/** Stops the load and returns every call it made. */
export async function stopLoad(rig: MoveRig): Promise<LoadSamples> {
  const answer = await askLoad(rig, { type: 'stop' });
  if (answer.type !== 'samples') throw new Error('the load process answered stop without samples');
  return answer.samples;
}

/** Moves one client with MoveTenant and follows its stream to the end. */
export async function moveTenant(
  rig: MoveRig,
  clientId: string,
  toShard: string,
): Promise<MoveTrace> {
  const trace = new MoveTrace();
  for await (const { move } of rig.admin.admin.moveTenant({ clientId, toShard })) {
    if (move) trace.add(move);
  }
  trace.endedMs = epochMs();
  return trace;
}

/** One Rebalance call, followed to the end of its stream. */
export interface RebalanceRun {
  maxConcurrentMoves: number;
  totalPlanned: number;
  startedMs: number;
  endedMs: number;
  traces: MoveTrace[];
  /** No move finished for `stallMs`: the stream was left and every running move cancelled. */
  stalled: boolean;
}

/**
 * Runs Rebalance and follows its stream. A guard watches for progress: when no move has finished
 * for `stallMs`, it leaves the stream and cancels running moves until none is left, so a stuck
 * rebalance costs minutes, not the mover's 30-minute copy timeout.
 */
export async function rebalance(
  rig: MoveRig,
  maxConcurrentMoves: number,
  stallMs: number,
): Promise<RebalanceRun> {
  const traces = new Map<string, MoveTrace>();
  const startedMs = epochMs();
  const abort = new AbortController();
  let totalPlanned = 0;
  let lastReport = startedMs;
  let lastFinishedMs = startedMs;
  const guard = setInterval(() => {
    if (epochMs() - lastFinishedMs > stallMs) abort.abort();
  }, 1_000);
  try {
    const stream = rig.admin.admin.rebalance(
      { maxConcurrentMoves, limit: 0 },
      { signal: abort.signal },
    );
    for await (const r of stream) {
      totalPlanned = r.total;
      if (!r.move) continue;
      let trace = traces.get(r.move.id);
      if (!trace) traces.set(r.move.id, (trace = new MoveTrace()));
      trace.add(r.move);
      if (r.move.state !== MoveState.MOVE_STATE_RUNNING) trace.endedMs = lastFinishedMs = epochMs();
      if (epochMs() - lastReport > 10_000) {
        lastReport = epochMs();
        progress(`  rebalance: ${r.finished}/${r.total} moves finished`);
      }
    }
  } catch (err) {
    if (!abort.signal.aborted) throw err;
    progress(
      `  rebalance STALLED: no move finished for ${stallMs / 1000} s; cancelling running moves…`,
    );
    await cancelRunningMoves(rig);
  } finally {
    clearInterval(guard);
  }
  const endedMs = epochMs();
  return {
    maxConcurrentMoves,
    totalPlanned,
    startedMs,
    endedMs,
    traces: [...traces.values()],
    stalled: abort.signal.aborted,
  };
}

/** Cancels running moves until none has been running for a few seconds (the pool starts more). */
async function cancelRunningMoves(rig: MoveRig): Promise<void> {
  for (let quiet = 0; quiet < 3;) {
    const { moves } = await rig.admin.admin.listMoves({
      state: MoveState.MOVE_STATE_RUNNING,
      pageSize: 1000,
    });
    quiet = moves.length === 0 ? quiet + 1 : 0;
    await Promise.all(
      moves.map((m) => rig.admin.admin.cancelMove({ id: m.id }).catch(() => undefined)),
    );
    await sleep(1_000);
  }
}

/** Tenants per shard, from GetTopology. */
export async function tenantsPerShard(rig: MoveRig): Promise<Record<string, number>> {
  const { shards } = await rig.admin.admin.getTopology({});
  return Object.fromEntries(shards.map((s) => [s.name, s.tenantCount]));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
