/**
 * Figures of `npm run bench:moves` from what was recorded: the streamed Move updates of every
 * move (phase times from their catalog timestamps) and every write of the load process
 * (client-observed latency, split by whether the client was moving).
 */
import { MovePhase, MoveState, type Move } from '../src/gen/shardgate/v1/admin.js';
import { epochMs, WRITE_OPS, type LoadSamples, type LoadTarget } from './move-protocol.js';
import { summarize, type Summary } from './stats.js';

/** Every update one move streamed, with when it arrived here. */
export class MoveTrace {
  readonly updates: { move: Move; receivedMs: number }[] = [];
  readonly startedMs = epochMs();
  endedMs: number | undefined;

  add(move: Move): void {
    this.updates.push({ move, receivedMs: epochMs() });
  }

  get last(): Move | undefined {
    return this.updates.at(-1)?.move;
  }

  /** Catalog time (ms) at which the move first reported `phase`. */
  phaseAt(phase: MovePhase): number | undefined {
    return this.updates.find((u) => u.move.phase === phase)?.move.updatedAt?.getTime();
  }

  /** Local time the cutover began and the flip was seen: the window in which writes wait. */
  cutoverWindow(): { fromMs: number; toMs: number } | undefined {
    const from = this.updates.find((u) => u.move.phase === MovePhase.MOVE_PHASE_CUTOVER);
    const to = this.updates.find((u) => u.move.phase >= MovePhase.MOVE_PHASE_FLIPPED);
    return from && to ? { fromMs: from.receivedMs, toMs: to.receivedMs } : undefined;
  }
}

/** One move, reduced to its phase durations (ms, from the journal's timestamps). */
export interface MoveTiming {
  clientId: string;
  from: string;
  to: string;
  succeeded: boolean;
  error?: string;
  pauseMs: number;
  rowsTotal: number;
  rowsCopied: number;
  /** Journaled → preparing (waiting for the move's lock and a pool slot). */
  queuedMs?: number;
  preparingMs?: number;
  /** Publication, slot and subscription created, initial copy, and the final exact count. */
  copyingMs?: number;
  catchingUpMs?: number;
  /** Writes paused → flip committed (the pause plus the flip's catalog transaction). */
  cutoverMs?: number;
  cleaningMs?: number;
  totalMs?: number;
  /** rowsCopied per second of the copying phase. */
  copyRowsPerSec?: number;
}

const diff = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined ? undefined : b - a;

export function timingOf(trace: MoveTrace): MoveTiming {
  const m = trace.last;
  if (!m) throw new Error('a move streamed no update');
  const at = (p: MovePhase): number | undefined => trace.phaseAt(p);
  const copyingMs = diff(at(MovePhase.MOVE_PHASE_COPYING), at(MovePhase.MOVE_PHASE_CATCHING_UP));
  const succeeded = m.state === MoveState.MOVE_STATE_SUCCEEDED;
  return {
    clientId: m.clientId,
    from: m.sourceShard,
    to: m.targetShard,
    succeeded,
    ...(m.error ? { error: m.error } : {}),
    pauseMs: m.writePauseMs,
    rowsTotal: m.rowsTotal,
    rowsCopied: m.rowsCopied,
    queuedMs: diff(m.createdAt?.getTime(), at(MovePhase.MOVE_PHASE_PREPARING)),
    preparingMs: diff(at(MovePhase.MOVE_PHASE_PREPARING), at(MovePhase.MOVE_PHASE_COPYING)),
    copyingMs,
    catchingUpMs: diff(at(MovePhase.MOVE_PHASE_CATCHING_UP), at(MovePhase.MOVE_PHASE_CUTOVER)),
    cutoverMs: diff(at(MovePhase.MOVE_PHASE_CUTOVER), at(MovePhase.MOVE_PHASE_FLIPPED)),
    cleaningMs: diff(at(MovePhase.MOVE_PHASE_CLEANING), m.finishedAt?.getTime()),
    totalMs: diff(m.createdAt?.getTime(), m.finishedAt?.getTime()),
    ...(copyingMs && copyingMs > 0 ? { copyRowsPerSec: (m.rowsCopied * 1000) / copyingMs } : {}),
  };
}

/** Medians of the phase durations of many moves, and the summary of their pauses. */
export function summarizeMoves(timings: readonly MoveTiming[]) {
  const ok = timings.filter((t) => t.succeeded);
  const median = (pick: (t: MoveTiming) => number | undefined): number =>
    summarize(ok.flatMap((t) => (pick(t) === undefined ? [] : [pick(t)!]))).p50;
  return {
    moves: timings.length,
    succeeded: ok.length,
    failed: timings.length - ok.length,
    errors: [...new Set(timings.flatMap((t) => (t.error ? [t.error] : [])))].slice(0, 10),
    pauseMs: summarize(ok.map((t) => t.pauseMs)),
    medianPhaseMs: {
      queued: median((t) => t.queuedMs),
      preparing: median((t) => t.preparingMs),
      copying: median((t) => t.copyingMs),
      catchingUp: median((t) => t.catchingUpMs),
      cutover: median((t) => t.cutoverMs),
      cleaning: median((t) => t.cleaningMs),
      total: median((t) => t.totalMs),
    },
    copyRowsPerSec: summarize(ok.flatMap((t) => (t.copyRowsPerSec ? [t.copyRowsPerSec] : []))),
  };
}

/** Client-observed write latency of one group of calls. */
export interface LatencyGroup {
  label: string;
  calls: number;
  errors: number;
  errorSamples: string[];
  latencyMs: Summary;
}

/** Which calls belong to a group: by client, start time and span. */
type Pick = (s: { clientId: string; startMs: number; endMs: number }) => boolean;

/** Summarises the calls that `pick` selects. */
export function latencyGroup(
  label: string,
  samples: LoadSamples,
  targets: readonly LoadTarget[],
  pick: Pick,
): LatencyGroup {
  const latencies: number[] = [];
  const errorCounts = new Map<number, number>();
  let calls = 0;
  for (let i = 0; i < samples.startMs.length; i++) {
    const startMs = samples.startMs[i]!;
    const call = { clientId: targets[samples.target[i]!]!.clientId, startMs };
    if (!pick({ ...call, endMs: startMs + samples.latencyMs[i]! })) continue;
    calls++;
    const e = samples.error[i]!;
    if (e >= 0) errorCounts.set(e, (errorCounts.get(e) ?? 0) + 1);
    else latencies.push(samples.latencyMs[i]!);
  }
  const errorSamples = [...errorCounts].map(([e, n]) => `${n}× ${samples.errors[e]}`);
  const errors = [...errorCounts.values()].reduce((a, b) => a + b, 0);
  return { label, calls, errors, errorSamples, latencyMs: summarize(latencies) };
}

/** Time windows, and whether an instant or a span falls in one. */
export class Windows {
  readonly #spans: { fromMs: number; toMs: number }[] = [];

  add(fromMs: number, toMs: number): void {
    this.#spans.push({ fromMs, toMs });
  }

  contains(ms: number): boolean {
    return this.#spans.some((w) => ms >= w.fromMs && ms <= w.toMs);
  }

  overlaps(fromMs: number, toMs: number): boolean {
    return this.#spans.some((w) => fromMs <= w.toMs && toMs >= w.fromMs);
  }
}

/** Successful inserts (CreateAppointment, AppendHandoff) the load made for one client. */
export function insertsFor(samples: LoadSamples, targets: readonly LoadTarget[], clientId: string) {
  const patch = WRITE_OPS.indexOf('PatchState');
  let n = 0;
  for (let i = 0; i < samples.startMs.length; i++) {
    if (samples.error[i] !== -1 || samples.op[i] === patch) continue;
    if (targets[samples.target[i]!]!.clientId === clientId) n++;
  }
  return n;
}
