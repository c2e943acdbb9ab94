/**
 * `npm run bench:moves`: what an online client move costs, through the gateway's gRPC API.
 *  1. the write pause at cutover (server-side write_pause_ms, p50/p99 over N moves) of a 10-row
 *     and a 100,000-row client moved back and forth under steady write load, and the
 *     client-observed write latency and errors during the moves vs. outside them;
 *  2. the copy rate (rows/s of the copying phase) of the big client;
 *  3. the time to rebalance 1,000 clients from 3 shards onto 4 (AddShard, PlanRebalance,
 *     Rebalance at several max_concurrent_moves).
 * Prints figures and writes bench/results/moves-<timestamp>.json; timings are never asserted.
 * `--quick` runs in about two minutes; see move-options.ts for the rest.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import type { LatencyGroup } from './move-analysis.js';
import { parseMoveOptions, type MoveBenchOptions } from './move-options.js';
import { measurePauses, type PauseResult } from './move-pause.js';
import { measureRebalance, type RebalanceResult } from './move-rebalance.js';
import { POOL_MAX, progress, startRig, type MoveRig } from './move-rig.js';
import { Cleanup, repoRoot, runBench } from './processes.js';
import { fmt, formatTable, type Summary } from './stats.js';

const ms = (v: number | undefined): string => fmt(v, 0);

function phaseRow(label: string, p: Record<string, number>): string[] {
  return [
    label,
    ...['queued', 'preparing', 'copying', 'catchingUp', 'cutover', 'cleaning', 'total'].map((k) =>
      ms(p[k]),
    ),
  ];
}
const PHASE_HEADER = [
  'median phase ms',
  'queued',
  'prepare',
  'copy',
  'catch up',
  'cutover',
  'clean',
  'total',
];

function latencyRow(g: LatencyGroup): string[] {
  const l: Summary = g.latencyMs;
  return [g.label, String(g.calls), String(g.errors), fmt(l.p50, 1), fmt(l.p99, 1), fmt(l.max, 1)];
}

function printPauses(r: PauseResult): void {
  console.log(
    '\n1–2. Cutover pause and copy rate (MoveTenant, back and forth between two shards, under write load)\n',
  );
  console.log(
    formatTable(
      [
        'client',
        'moves ok',
        'pause p50',
        'pause p99',
        'pause max',
        'copy rows/s (median)',
        'rows moved (first→last)',
        'rows check',
      ],
      r.series.map((s) => [
        s.label,
        `${s.summary.succeeded}/${s.summary.moves}`,
        ms(s.summary.pauseMs.p50),
        ms(s.summary.pauseMs.p99),
        ms(s.summary.pauseMs.max),
        fmt(s.summary.copyRowsPerSec.p50, 0),
        `${s.timings.find((t) => t.succeeded)?.rowsCopied ?? 0}→${s.timings.filter((t) => t.succeeded).at(-1)?.rowsCopied ?? 0}`,
        `${s.rowsCheck.found}/${s.rowsCheck.expected}${s.rowsCheck.found === s.rowsCheck.expected ? ' ok' : ' DIFF'}`,
      ]),
    ),
  );
  const n = r.series[0]?.summary.succeeded ?? 0;
  console.log(
    `(pause: write_pause_ms of the Move, ms${n < 100 ? `; p99 of ${n} values is their max` : ''}; ` +
      'rows moved grow with the load’s inserts; rows check: rows on the final shard / seeded + acknowledged inserts)',
  );
  const [small, big] = r.series;
  if (small && big) {
    const fixedMs = small.summary.medianPhaseMs.copying;
    const netMs = big.summary.medianPhaseMs.copying - fixedMs;
    const rows = big.timings.find((t) => t.succeeded)?.rowsCopied ?? 0;
    console.log(
      `copy rate of ${big.label}: ${fmt(big.summary.copyRowsPerSec.p50, 0)} rows/s over the whole copying phase; ` +
        `${fmt((rows * 1000) / netMs, 0)} rows/s net of its fixed cost (the ${small.label} client's copying phase, ${ms(fixedMs)} ms)\n`,
    );
  }
  console.log(
    formatTable(
      PHASE_HEADER,
      r.series.map((s) => phaseRow(s.label, s.summary.medianPhaseMs)),
    ),
  );
  console.log(
    '\nClient-observed write latency, ms (CreateAppointment / AppendHandoff / PatchState, never retried)\n',
  );
  const groups = [
    r.outside.measured,
    r.outside.others,
    ...r.series.flatMap((s) => Object.values(s.latency)),
  ];
  console.log(
    formatTable(['writes', 'calls', 'errors', 'p50', 'p99', 'max'], groups.map(latencyRow)),
  );
  const errors = groups.flatMap((g) => g.errorSamples.map((e) => `${g.label}: ${e}`));
  if (errors.length > 0) console.log(`\nwrite errors:\n  ${errors.slice(0, 12).join('\n  ')}`);
  for (const s of r.series) {
    for (const e of s.summary.errors) console.log(`move error (${s.label}): ${e}`);
  }
}

function printRebalance(r: RebalanceResult): void {
  console.log(
    `\n3. Rebalance of ${r.clients} clients (+ the clients above) from 3 shards onto 4\n`,
  );
  console.log(`CreateTenant × ${r.clients}: ${r.createSeconds.toFixed(1)} s`);
  console.log(
    `PlanRebalance after AddShard: ${r.plannedAfterAdd.moves} moves (${(r.plannedAfterAdd.totalBytes / 1e6).toFixed(1)} MB) ${JSON.stringify(r.plannedAfterAdd.byRoute)}\n`,
  );
  console.log(
    formatTable(
      [
        'rebalance',
        'max conc',
        'moves',
        'ok',
        'failed',
        'total s',
        'moves/s',
        'pause p50',
        'pause p99',
        'pause max',
        'left over',
      ],
      r.runs.map((x) => [
        `${x.label}${x.stalled ? ' STALLED' : ''}`,
        String(x.maxConcurrentMoves),
        String(x.planned),
        String(x.summary.succeeded),
        String(x.summary.failed),
        fmt(x.totalSeconds, 1),
        fmt(x.movesPerSec, 2),
        ms(x.summary.pauseMs.p50),
        ms(x.summary.pauseMs.p99),
        ms(x.summary.pauseMs.max),
        String(x.leftOver),
      ]),
    ),
  );
  console.log('');
  console.log(
    formatTable(
      PHASE_HEADER,
      r.runs.map((x) => phaseRow(`${x.label} @${x.maxConcurrentMoves}`, x.summary.medianPhaseMs)),
    ),
  );
  console.log('');
  console.log(
    formatTable(
      ['writes', 'calls', 'errors', 'p50', 'p99', 'max'],
      [r.latency.during, r.latency.outside].map(latencyRow),
    ),
  );
  for (const x of r.runs)
    for (const e of x.summary.errors) console.log(`move error (${x.label}): ${e}`);
  if (r.aborted) console.log(`rebalance rounds stopped early: ${r.aborted}`);
}

async function writeResults(json: Record<string, unknown>, startedAt: Date): Promise<string> {
  const dir = `${repoRoot}bench/results`;
  const file = `${dir}/moves-${startedAt.toISOString().replaceAll(':', '-')}.json`;
  await mkdir(dir, { recursive: true });
  await writeFile(file, `${JSON.stringify(json, null, 2)}\n`);
  return file.slice(repoRoot.length);
}

async function main(cleanup: Cleanup): Promise<void> {
  const options: MoveBenchOptions = parseMoveOptions();
  const startedAt = new Date();
  const rig: MoveRig = await startRig(cleanup, options.replWorkers);
  const pauses = options.skipPause ? undefined : await measurePauses(rig, options);
  const rebalance = options.skipRebalance ? undefined : await measureRebalance(rig, options);
  const elapsedS = (Date.now() - startedAt.getTime()) / 1000;

  console.log(
    `\nshardgate bench:moves — ${startedAt.toISOString()}, ${cpus().length} CPUs, node ${process.version}, ${elapsedS.toFixed(0)} s`,
  );
  console.log(
    `embedded PostgreSQL: catalog + 3 shards (+1 added), pool max ${POOL_MAX}; one gateway process; load from a separate process`,
  );
  if (pauses) printPauses(pauses);
  if (rebalance) printRebalance(rebalance);
  const problems = rig.gateway.problems;
  if (problems.length > 0)
    console.log(
      `\ngateway warnings/errors (${problems.length}):\n  ${problems.slice(0, 20).join('\n  ')}`,
    );
  const machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    node: process.version,
    platform: process.platform,
  };
  const file = await writeResults(
    {
      startedAt,
      elapsedS,
      options,
      machine,
      poolMax: POOL_MAX,
      pauses,
      rebalance,
      gatewayProblems: problems,
    },
    startedAt,
  );
  console.log(`\nresults written to ${file}`);
}

runBench(main, progress);
