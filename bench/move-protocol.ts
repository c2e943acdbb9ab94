/**
 * What `npm run bench:moves` (moves.ts) and its write-load process (write-load.ts) tell each
 * other over the fork() IPC channel. The orchestrator owns the databases, the gateway and the
 * moves; the load process only writes through the gateway and records every call.
 */

/** The writes the load cycles through, one per call, in this order. */
export const WRITE_OPS = ['CreateAppointment', 'AppendHandoff', 'PatchState'] as const;
/** One of WRITE_OPS. */
export type WriteOp = (typeof WRITE_OPS)[number];

/** One client the load writes to, and how hard. */
export interface LoadTarget {
  clientId: string;
  /** Calls per second aimed at (paced, not closed-loop: a paused call delays only its worker). */
  ratePerSec: number;
  /** Calls in flight at most; each worker paces at ratePerSec / concurrency. */
  concurrency: number;
}

/**
 * Every call of a load session, column-wise (JSON over IPC). Times are epoch milliseconds with
 * sub-millisecond precision (performance.timeOrigin + performance.now()), comparable across the
 * processes of one machine.
 */
export interface LoadSamples {
  /** Index into the session's targets. */
  target: number[];
  /** Index into WRITE_OPS. */
  op: number[];
  startMs: number[];
  latencyMs: number[];
  /** Index into `errors`, or −1 for a call that succeeded. */
  error: number[];
  /** Distinct error texts (`code: details`). */
  errors: string[];
}

/** Orchestrator → load process. */
export type ToLoad =
  { type: 'start'; gatewayAddress: string; targets: LoadTarget[] } | { type: 'stop' };

/** Load process → orchestrator. */
export type FromLoad =
  | { type: 'started' }
  | { type: 'samples'; samples: LoadSamples }
  | { type: 'error'; message: string };

/** Epoch milliseconds with sub-millisecond precision. */
export const epochMs = (): number => performance.timeOrigin + performance.now();
