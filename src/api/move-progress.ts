import { setTimeout as sleep } from 'node:timers/promises';
import type { MoveRecord } from '../catalog/move-journal.js';
import type { GatewayContext } from './gateway-context.js';

/** How often a move this process no longer runs is read from the journal. */
const MOVE_POLL_MS = 500;

/**
 * The changes of one move until it ends. While this process runs the move they are its progress
 * events; once the run here has stopped with the move still running (this process lost the move's
 * lock and another took it over, or a step failed and recovery will resume it), they are read
 * from the journal every MOVE_POLL_MS, so a stream never waits on events that will not come.
 * `updates` must be subscribed to the mover's `progress` before the move started.
 */
export async function* followMove(
  ctx: Pick<GatewayContext, 'mover' | 'journal'>,
  first: MoveRecord,
  updates: AsyncIterableIterator<unknown[]>,
  signal: AbortSignal,
): AsyncGenerator<MoveRecord, void, undefined> {
  const stoppedHere = {};
  void ctx.mover
    .run(first.id)
    .catch(() => undefined)
    .finally(() => ctx.mover.emit('progress', stoppedHere));
  let last = first;
  for await (const [next] of updates) {
    if (next === stoppedHere) break;
    const m = next as MoveRecord;
    if (m.id !== first.id) continue;
    last = m;
    yield m;
    if (m.state !== 'running') return;
  }
  while (last.state === 'running') {
    await sleep(MOVE_POLL_MS, undefined, { signal });
    const m = await ctx.journal.get(first.id, signal);
    if (!m) return;
    if (m.updatedAt.getTime() !== last.updatedAt.getTime() || m.state !== last.state) yield m;
    last = m;
  }
}

/**
 * Runs a move here (or joins its run) and resolves with its final record. When the run here
 * stops with the move still running (another process has it now), the journal is read every
 * MOVE_POLL_MS until the move ends; `endedElsewhere` then says this process emitted no final
 * progress event for it.
 */
export async function runToEnd(
  ctx: Pick<GatewayContext, 'mover' | 'journal'>,
  moveId: string,
  signal: AbortSignal,
): Promise<{ move: MoveRecord | undefined; endedElsewhere: boolean }> {
  const here = await ctx.mover.run(moveId).catch(() => undefined);
  if (here && here.state !== 'running') return { move: here, endedElsewhere: false };
  let move = await ctx.journal.get(moveId, signal);
  while (move?.state === 'running') {
    await sleep(MOVE_POLL_MS, undefined, { signal });
    move = await ctx.journal.get(moveId, signal);
  }
  return { move, endedElsewhere: true };
}
