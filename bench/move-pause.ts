/**
 * Parts 1 and 2 of `npm run bench:moves`: a 10-row and a 100,000-row client, each moved back and
 * forth between two shards with MoveTenant while the load process keeps writing to them and to
 * other clients. Yields the server-side pause of every move, the client-observed write latency
 * during the moves and outside them, and the copy rate of the big client.
 */
import {
  insertsFor,
  latencyGroup,
  summarizeMoves,
  timingOf,
  Windows,
  type LatencyGroup,
  type MoveTiming,
} from './move-analysis.js';
import type { MoveBenchOptions } from './move-options.js';
import type { LoadTarget } from './move-protocol.js';
import { moveTenant, progress, sleep, startLoad, stopLoad, type MoveRig } from './move-rig.js';
import { createClients, exactRows, seedClientRows, type SeededClient } from './move-seed.js';

/** Quiet time of steady load before the first move and after the last. */
const BASELINE_MS = 3_000;
/** Gap between two moves, so every move starts from steady load. */
const GAP_MS = 750;

/** The figures of one measured client. */
export interface PauseSeries {
  label: string;
  clientId: string;
  rowsSeeded: number;
  shards: [string, string];
  timings: MoveTiming[];
  summary: ReturnType<typeof summarizeMoves>;
  /** Writes by this client while it moved; those overlapping a cutover; other clients meanwhile. */
  latency: { moving: LatencyGroup; atCutover: LatencyGroup; others: LatencyGroup };
  /** Rows on the final shard vs. seeded + successful inserts: a lost or doubled write shows here. */
  rowsCheck: { expected: number; found: number };
}

export interface PauseResult {
  series: PauseSeries[];
  /** Every client's writes while nothing moved. */
  outside: { measured: LatencyGroup; others: LatencyGroup };
  loadTargets: LoadTarget[];
  totalWrites: number;
  totalErrors: number;
}

interface Series {
  label: string;
  client: SeededClient;
  rows: number;
  other: string;
  windows: Windows;
  cutovers: Windows;
  timings: MoveTiming[];
}

function otherShard(rig: MoveRig, shard: string, offset: number): string {
  const names = rig.shards.map((s) => s.name);
  return names[(names.indexOf(shard) + offset) % names.length]!;
}

async function seed(
  rig: MoveRig,
  o: MoveBenchOptions,
): Promise<{ series: Series[]; others: SeededClient[] }> {
  const otherIds = Array.from({ length: o.otherClients }, (_, i) => `move-other-${i + 1}`);
  const [small, big, ...others] = await createClients(rig.gateway.address, [
    'move-small',
    'move-big',
    ...otherIds,
  ]);
  const urlOf = (shard: string): string => rig.shards.find((s) => s.name === shard)!.url;
  progress(`seeding ${o.bigRows} rows into ${big!.schema} with direct SQL…`);
  await seedClientRows(urlOf(big!.shard), big!.schema, o.bigRows);
  await seedClientRows(urlOf(small!.shard), small!.schema, o.smallRows);
  for (const c of others) await seedClientRows(urlOf(c.shard), c.schema, 20);
  const make = (label: string, client: SeededClient, rows: number, offset: number): Series => ({
    label,
    client,
    rows,
    other: otherShard(rig, client.shard, offset),
    windows: new Windows(),
    cutovers: new Windows(),
    timings: [],
  });
  return {
    series: [
      make(`${o.smallRows} rows`, small!, o.smallRows, 1),
      make(`${o.bigRows} rows`, big!, o.bigRows, 2),
    ],
    others,
  };
}

async function runSeries(rig: MoveRig, s: Series, moves: number): Promise<void> {
  progress(
    `moving ${s.client.clientId} (${s.label}) ${moves}× between ${s.client.shard} and ${s.other}…`,
  );
  let current = s.client.shard;
  for (let k = 0; k < moves; k++) {
    // Away from wherever it lives now, so a failed move (which leaves it in place) is retried.
    const to = current === s.client.shard ? s.other : s.client.shard;
    const trace = await moveTenant(rig, s.client.clientId, to);
    s.windows.add(trace.startedMs, trace.endedMs!);
    const cut = trace.cutoverWindow();
    if (cut) s.cutovers.add(cut.fromMs, cut.toMs);
    const t = timingOf(trace);
    s.timings.push(t);
    if (t.succeeded) current = to;
    progress(
      `  ${k + 1}/${moves} → ${to}: ${t.succeeded ? 'ok' : `FAILED (${t.error})`}, pause ${t.pauseMs} ms, ` +
        `copy ${t.copyingMs ?? '?'} ms, total ${t.totalMs ?? '?'} ms`,
    );
    await sleep(GAP_MS);
  }
}

export async function measurePauses(rig: MoveRig, o: MoveBenchOptions): Promise<PauseResult> {
  const { series, others } = await seed(rig, o);
  const perWorker = 30; // writes/s per worker: a few workers per client keep writes interleaved
  const loadTargets: LoadTarget[] = [
    ...series.map((s) => ({
      clientId: s.client.clientId,
      ratePerSec: o.movingRatePerSec,
      concurrency: Math.max(1, Math.round(o.movingRatePerSec / perWorker)),
    })),
    ...others.map((c) => ({ clientId: c.clientId, ratePerSec: o.otherRatePerSec, concurrency: 1 })),
  ];
  const rate = loadTargets.reduce((sum, t) => sum + t.ratePerSec, 0);
  progress(
    `write load: ${rate} writes/s over ${loadTargets.length} clients; ${BASELINE_MS / 1000} s baseline…`,
  );
  await startLoad(rig, loadTargets);
  let samples;
  try {
    await sleep(BASELINE_MS);
    for (const s of series) await runSeries(rig, s, o.movesPerClient);
    await sleep(BASELINE_MS);
  } finally {
    samples = await stopLoad(rig);
  }
  const measured = new Set(series.map((s) => s.client.clientId));
  const anyMove = (from: number, to: number): boolean =>
    series.some((s) => s.windows.overlaps(from, to));
  const result: PauseResult = {
    series: [],
    outside: {
      measured: latencyGroup(
        'measured clients, no move running',
        samples,
        loadTargets,
        (c) => measured.has(c.clientId) && !anyMove(c.startMs, c.endMs),
      ),
      others: latencyGroup(
        'other clients, no move running',
        samples,
        loadTargets,
        (c) => !measured.has(c.clientId) && !anyMove(c.startMs, c.endMs),
      ),
    },
    loadTargets,
    totalWrites: samples.startMs.length,
    totalErrors: samples.error.filter((e) => e >= 0).length,
  };
  for (const s of series) {
    const id = s.client.clientId;
    const final = s.timings.filter((t) => t.succeeded).at(-1)?.to ?? s.client.shard;
    const url = rig.shards.find((x) => x.name === final)!.url;
    result.series.push({
      label: s.label,
      clientId: id,
      rowsSeeded: s.rows,
      shards: [s.client.shard, s.other],
      timings: s.timings,
      summary: summarizeMoves(s.timings),
      latency: {
        moving: latencyGroup(
          `${s.label}: its writes while it moves`,
          samples,
          loadTargets,
          (c) => c.clientId === id && s.windows.contains(c.startMs),
        ),
        atCutover: latencyGroup(
          `${s.label}: its writes overlapping a cutover`,
          samples,
          loadTargets,
          (c) => c.clientId === id && s.cutovers.overlaps(c.startMs, c.endMs),
        ),
        others: latencyGroup(
          `${s.label}: other clients' writes meanwhile`,
          samples,
          loadTargets,
          (c) => c.clientId !== id && s.windows.contains(c.startMs),
        ),
      },
      rowsCheck: {
        expected: s.rows + insertsFor(samples, loadTargets, id),
        found: await exactRows(url, s.client.schema),
      },
    });
  }
  return result;
}
