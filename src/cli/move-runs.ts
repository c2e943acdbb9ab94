import { MoveState, moveStateToJSON, type Move } from '../gen/shardgate/v1/admin.js';
import { CliFailure, EXIT_CODES } from './cli-failure.js';
import type { CliContext } from './cli-context.js';
import { toJson } from './json.js';
import { createProgressReporter, describeMoveEnd } from './progress.js';

/**
 * Follows MoveTenant to the end: JSON lines or progress, then exit 1 (by throwing) unless the
 * move succeeded.
 */
export async function runMove(ctx: CliContext, clientId: string, toShard: string): Promise<void> {
  const reporter = ctx.json ? undefined : createProgressReporter(process.stdout);
  let last: Move | undefined;
  const watchHint = (): string =>
    last ? `watch it with: shardctl move-status ${last.id}` : 'see: shardctl moves';
  try {
    await untilInterrupted(
      async (signal) => {
        const stream = ctx.admin.moveTenant({ clientId, toShard }, ctx.streamOptions(signal));
        for await (const r of stream) {
          if (!r.move) continue;
          last = r.move;
          if (ctx.json) ctx.printLine(toJson.moveResponse(r));
          else reporter!.update(r.move);
        }
      },
      () => `the move goes on; ${watchHint()}`,
    );
  } finally {
    reporter?.stop();
  }
  if (!last || last.state === MoveState.MOVE_STATE_RUNNING) {
    const message = `the progress stream ended before the move did; ${watchHint()}`;
    throw new CliFailure('UNKNOWN', message, EXIT_CODES.failed);
  }
  if (last.state !== MoveState.MOVE_STATE_SUCCEEDED) {
    throw new CliFailure(moveStateToJSON(last.state), describeMoveEnd(last), EXIT_CODES.failed);
  }
}

/** Follows Rebalance to the end; exit 1 (by throwing) if any of its moves did not succeed. */
export async function runRebalance(
  ctx: CliContext,
  request: { maxConcurrentMoves: number; limit: number },
): Promise<void> {
  const reporter = ctx.json ? undefined : createProgressReporter(process.stdout);
  const ended = new Map<string, Move>();
  let total = 0;
  try {
    await untilInterrupted(
      async (signal) => {
        for await (const r of ctx.admin.rebalance(request, ctx.streamOptions(signal))) {
          total = r.total;
          if (r.move && r.move.state !== MoveState.MOVE_STATE_RUNNING) ended.set(r.move.id, r.move);
          if (ctx.json) ctx.printLine(toJson.rebalance(r));
          else if (r.move) reporter!.update(r.move, { finished: r.finished, total: r.total });
        }
      },
      () => 'the rebalance goes on; watch it with: shardctl moves --state running',
    );
  } finally {
    reporter?.stop();
  }
  reportRebalanceEnd(ctx, [...ended.values()], total);
}

function reportRebalanceEnd(ctx: CliContext, ended: readonly Move[], total: number): void {
  const unsuccessful = ended.filter((m) => m.state !== MoveState.MOVE_STATE_SUCCEEDED);
  if (unsuccessful.length > 0) {
    const failed = unsuccessful.some((m) => m.state === MoveState.MOVE_STATE_FAILED);
    const which = unsuccessful.map((m) => `${m.clientId} (${m.error || moveStateToJSON(m.state)})`);
    throw new CliFailure(
      failed ? 'MOVE_STATE_FAILED' : 'MOVE_STATE_CANCELLED',
      `${unsuccessful.length} of ${total} moves did not succeed: ${which.join(', ')}`,
      EXIT_CODES.failed,
    );
  }
  if (ctx.json) return;
  const summary =
    total === 0 ? 'nothing to move' : `rebalance done: ${ended.length} of ${total} moves succeeded`;
  process.stdout.write(`${summary}\n`);
}

/**
 * Runs a streaming call that Ctrl-C detaches from: the gateway goes on with the work (moves
 * survive their caller), so an interrupt says how to keep watching and exits 130.
 */
async function untilInterrupted(
  run: (signal: AbortSignal) => Promise<void>,
  whatGoesOn: () => string,
): Promise<void> {
  const controller = new AbortController();
  const onInterrupt = (): void => controller.abort();
  process.once('SIGINT', onInterrupt);
  try {
    await run(controller.signal);
  } catch (err) {
    if (controller.signal.aborted) {
      throw new CliFailure('CANCELLED', `detached: ${whatGoesOn()}`, EXIT_CODES.interrupted);
    }
    throw err;
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}
