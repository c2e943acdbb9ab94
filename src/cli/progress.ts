import cliProgress from 'cli-progress';
import { MoveState, type Move } from '../gen/shardgate/v1/admin.js';
import { formatEta, formatRows, label } from './render.js';

/** Finished and planned moves of a rebalance. */
export interface RebalanceCounts {
  readonly finished: number;
  readonly total: number;
}

/** Shows the progress of moves to a person; `--json` output does not go through here. */
export interface ProgressReporter {
  /** One message of a MoveTenant or Rebalance stream. */
  update(move: Move, counts?: RebalanceCounts): void;
  /** Removes the bars, leaving the cursor on a fresh line. Safe to call twice. */
  stop(): void;
}

/** Bars on a terminal; one plain line per change otherwise (logs, pipes, CI). */
export function createProgressReporter(out: NodeJS.WriteStream): ProgressReporter {
  return out.isTTY ? new BarReporter(out) : new LineReporter(out);
}

/** The line printed when a move ends, in both modes. */
export function describeMoveEnd(m: Move): string {
  const ref = `move ${m.id}`;
  switch (m.state) {
    case MoveState.MOVE_STATE_SUCCEEDED:
      return `${m.clientId}: succeeded, now on ${m.targetShard} (${m.rowsCopied} rows, writes paused ${m.writePauseMs} ms, ${ref})`;
    case MoveState.MOVE_STATE_CANCELLED:
      return `${m.clientId}: cancelled, stays on ${m.sourceShard} (${ref})`;
    default:
      return `${m.clientId}: ${label.state(m)}${m.error ? `: ${m.error}` : ''}; stays on ${m.sourceShard} (${ref})`;
  }
}

const isRunning = (m: Move): boolean => m.state === MoveState.MOVE_STATE_RUNNING;

const prefixOf = (counts?: RebalanceCounts): string =>
  counts ? `[${counts.finished}/${counts.total}] ` : '';

class LineReporter implements ProgressReporter {
  readonly #out: NodeJS.WriteStream;
  readonly #last = new Map<string, string>();

  constructor(out: NodeJS.WriteStream) {
    this.#out = out;
  }

  update(m: Move, counts?: RebalanceCounts): void {
    const key = `${m.phase}:${m.state}:${m.rowsCopied}`;
    if (this.#last.get(m.id) === key) return;
    this.#last.set(m.id, key);
    const text = isRunning(m)
      ? `${m.clientId} ${m.sourceShard} → ${m.targetShard}: ${label.phase(m)}, ${formatRows(m)} rows, eta ${formatEta(m.etaSeconds)}`
      : describeMoveEnd(m);
    this.#out.write(`${prefixOf(counts)}${text}\n`);
  }

  stop(): void {}
}

const MOVE_FORMAT = '{client} {route} {phase} |{bar}| {rows} rows | ETA {etaText}';
const OVERALL_FORMAT = 'rebalance |{bar}| {value}/{total} moves finished';

class BarReporter implements ProgressReporter {
  readonly #bars: cliProgress.MultiBar;
  readonly #moves = new Map<string, cliProgress.SingleBar>();
  #overall: cliProgress.SingleBar | undefined;
  #stopped = false;

  constructor(out: NodeJS.WriteStream) {
    this.#bars = new cliProgress.MultiBar(
      { stream: out, hideCursor: true, clearOnComplete: false, barsize: 30, format: MOVE_FORMAT },
      cliProgress.Presets.shades_classic,
    );
  }

  update(m: Move, counts?: RebalanceCounts): void {
    if (this.#stopped) return;
    if (counts) this.#updateOverall(counts);
    const bar = this.#moves.get(m.id);
    if (!isRunning(m)) {
      // log() only buffers; remove() or update() redraws, which prints the line above the bars.
      this.#bars.log(`${describeMoveEnd(m)}\n`);
      if (bar) this.#bars.remove(bar);
      else this.#bars.update();
      this.#moves.delete(m.id);
      return;
    }
    const total = Math.max(m.rowsTotal, m.rowsCopied, 1);
    const payload = {
      client: m.clientId,
      route: `${m.sourceShard} → ${m.targetShard}`,
      phase: label.phase(m).padEnd(11),
      rows: formatRows(m),
      etaText: formatEta(m.etaSeconds),
    };
    if (bar) {
      bar.setTotal(total);
      bar.update(m.rowsCopied, payload);
    } else {
      this.#moves.set(m.id, this.#bars.create(total, m.rowsCopied, payload));
    }
  }

  #updateOverall(counts: RebalanceCounts): void {
    if (this.#overall) {
      this.#overall.setTotal(counts.total);
      this.#overall.update(counts.finished);
    } else {
      const options = { format: OVERALL_FORMAT };
      this.#overall = this.#bars.create(counts.total, counts.finished, {}, options);
    }
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#bars.stop();
  }
}
