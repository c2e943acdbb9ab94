import { on } from 'node:events';
import type { MoveRecord, MoveState as DomainMoveState } from '../catalog/move-journal.js';
import { ShardgateError, invalidArgument, isShardgateError, notFound } from '../core/errors.js';
import { parseClientId, parseShardName } from '../core/ids.js';
import {
  MovePhase,
  MoveReason,
  MoveState,
  type AdminServiceImplementation,
  type Move,
} from '../gen/shardgate/v1/admin.js';
import { planRebalance, type PlannedMove } from '../rebalance/planner.js';
import type { GatewayContext } from './gateway-context.js';
import { followMove, runToEnd } from './move-progress.js';
import { cursorDate, cursorString, decodePageToken, pageOf } from './page-token.js';
import * as v from './validate.js';

const PHASES: Record<MoveRecord['phase'], MovePhase> = {
  pending: MovePhase.MOVE_PHASE_PENDING,
  preparing: MovePhase.MOVE_PHASE_PREPARING,
  copying: MovePhase.MOVE_PHASE_COPYING,
  catching_up: MovePhase.MOVE_PHASE_CATCHING_UP,
  cutover: MovePhase.MOVE_PHASE_CUTOVER,
  flipped: MovePhase.MOVE_PHASE_FLIPPED,
  cleaning: MovePhase.MOVE_PHASE_CLEANING,
  done: MovePhase.MOVE_PHASE_DONE,
};
const STATES: Record<DomainMoveState, MoveState> = {
  running: MoveState.MOVE_STATE_RUNNING,
  succeeded: MoveState.MOVE_STATE_SUCCEEDED,
  failed: MoveState.MOVE_STATE_FAILED,
  cancelled: MoveState.MOVE_STATE_CANCELLED,
};
const REASONS: Record<MoveRecord['reason'], MoveReason> = {
  ring: MoveReason.MOVE_REASON_RING,
  drain: MoveReason.MOVE_REASON_DRAIN,
  manual: MoveReason.MOVE_REASON_MANUAL,
};

type MoveHandlers = Pick<
  AdminServiceImplementation,
  'planRebalance' | 'moveTenant' | 'rebalance' | 'listMoves' | 'getMove' | 'cancelMove'
>;

/** The move half of AdminService: plans, single moves, rebalances and the journal. */
export function createMoveHandlers(ctx: GatewayContext): MoveHandlers {
  const plan = async (limit: number): Promise<PlannedMove[]> =>
    planRebalance({
      catalog: ctx.catalog,
      pools: ctx.pools,
      topology: await ctx.catalog.loadTopology(),
      ring: ctx.router.ring,
      limit,
    });

  return {
    async planRebalance(req) {
      if (req.limit < 0) throw invalidArgument('limit must not be negative');
      const moves = await plan(req.limit);
      return {
        moves: moves.map((m) => ({
          clientId: m.clientId,
          fromShard: m.from,
          toShard: m.to,
          reason: REASONS[m.reason],
          sizeBytes: m.sizeBytes,
          rowEstimate: m.rowEstimate,
        })),
        ringEpoch: ctx.router.ring.epoch,
        totalBytes: moves.reduce((sum, m) => sum + m.sizeBytes, 0),
      };
    },

    async *moveTenant(req, { signal }) {
      const clientId = parseClientId(req.clientId);
      const target = parseShardName(req.toShard, 'to_shard');
      const updates = on(ctx.mover, 'progress', { signal });
      const move = await ctx.mover.start({ clientId, target, reason: 'manual' });
      yield { move: moveToProto(move) };
      try {
        for await (const m of followMove(ctx, move, updates, signal)) {
          yield { move: moveToProto(m) };
        }
      } catch (err) {
        if (!signal.aborted) throw err;
      }
    },

    async *rebalance(req, { signal }) {
      if (req.maxConcurrentMoves < 0 || req.maxConcurrentMoves > 16) {
        throw invalidArgument('max_concurrent_moves must be 0 to 16');
      }
      if (req.limit < 0) throw invalidArgument('limit must not be negative');
      const planned = await plan(req.limit);
      const total = planned.length;
      const updates = on(ctx.mover, 'progress', { signal });
      const mine = new Set<string>();
      const ended = new Set<string>();
      const end = { endOfRebalance: true };
      // A planned move that cannot even start (the client is already moving, say) is reported as
      // failed in this stream, so `finished` always reaches `total`.
      const unstarted = new Map<object, Move>();
      let finished = 0;
      const done = runPool(planned, req.maxConcurrentMoves || 2, async (p) => {
        let move: MoveRecord;
        try {
          move = await ctx.mover.start({ clientId: p.clientId, target: p.to, reason: p.reason });
        } catch (err) {
          if (!isShardgateError(err)) ctx.log.error({ err }, 'a planned move could not start');
          const token = {};
          unstarted.set(token, unstartedMove(p, err));
          ctx.mover.emit('progress', token);
          return undefined;
        }
        mine.add(move.id);
        const { move: final, endedElsewhere } = await runToEnd(ctx, move.id, signal);
        // Its end was not a progress event here: report it, so `finished` reaches `total`.
        if (final && endedElsewhere) ctx.mover.emit('progress', final);
        return final;
      }).finally(() => ctx.mover.emit('progress', end));
      if (total === 0) return;
      try {
        for await (const [next] of updates) {
          if (next === end) break;
          const failedToStart = unstarted.get(next as object);
          if (failedToStart) {
            yield { move: failedToStart, finished: ++finished, total };
            continue;
          }
          const m = next as MoveRecord;
          if (!mine.has(m.id) || ended.has(m.id)) continue;
          if (m.state !== 'running') {
            ended.add(m.id); // its end may be reported twice: here and from the journal
            finished++;
          }
          yield { move: moveToProto(m), finished, total };
        }
      } catch (err) {
        if (!signal.aborted) throw err;
      }
      await done;
    },

    async listMoves(req, { signal }) {
      const limit = v.pageSize(req.pageSize);
      const clientId = req.clientId === '' ? undefined : parseClientId(req.clientId);
      const state =
        req.state === MoveState.MOVE_STATE_UNSPECIFIED ? undefined : stateFromProto(req.state);
      const filters = ['ListMoves', clientId, state];
      const cursor = decodePageToken(req.pageToken, filters);
      const before = cursor && {
        createdAt: cursorDate(cursor[0]),
        id: v.uuid(cursorString(cursor[1]), 'page_token'),
      };
      const rows = await ctx.journal.list({ clientId, state, before, limit: limit + 1 }, signal);
      const { items, nextPageToken } = pageOf(rows, limit, filters, (m) => [
        m.createdAt.getTime(),
        m.id,
      ]);
      return { moves: items.map(moveToProto), nextPageToken };
    },

    async getMove(req, { signal }) {
      const move = await ctx.journal.get(v.uuid(req.id), signal);
      if (!move) throw notFound(`move ${req.id} does not exist`);
      return { move: moveToProto(move) };
    },

    async cancelMove(req, { signal }) {
      const id = v.uuid(req.id);
      const move = await ctx.journal.get(id, signal);
      if (!move) throw notFound(`move ${id} does not exist`);
      if (move.state !== 'running') {
        throw new ShardgateError('failed-precondition', `move ${id} already ended (${move.state})`);
      }
      if (['flipped', 'cleaning', 'done'].includes(move.phase)) {
        throw new ShardgateError(
          'failed-precondition',
          `move ${id} has flipped; it can no longer be cancelled`,
        );
      }
      return { move: moveToProto((await ctx.journal.requestCancel(id, signal)) ?? move) };
    },
  };
}

/** A planned move that could not start, as the Rebalance stream reports it (it has no journal row). */
function unstartedMove(p: PlannedMove, err: unknown): Move {
  const now = new Date();
  return {
    id: '',
    clientId: p.clientId,
    sourceShard: p.from,
    targetShard: p.to,
    phase: MovePhase.MOVE_PHASE_PENDING,
    state: MoveState.MOVE_STATE_FAILED,
    reason: REASONS[p.reason],
    rowsCopied: 0,
    rowsTotal: 0,
    bytesTotal: p.sizeBytes,
    writePauseMs: 0,
    etaSeconds: 0,
    error: isShardgateError(err)
      ? `did not start: ${err.message}`
      : 'did not start: internal error',
    createdAt: now,
    updatedAt: now,
    finishedAt: now,
  };
}

function stateFromProto(state: MoveState): DomainMoveState {
  const found = (Object.entries(STATES) as [DomainMoveState, MoveState][]).find(
    ([, s]) => s === state,
  );
  if (!found) throw invalidArgument('state is not a known MoveState');
  return found[0];
}

/** The journal row as the API shows it, with an ETA from the copy rate so far. */
export function moveToProto(m: MoveRecord): Move {
  const elapsedS = (Date.now() - m.createdAt.getTime()) / 1000;
  const eta =
    m.state === 'running' && m.rowsCopied > 0 && m.rowsTotal > m.rowsCopied
      ? (elapsedS * (m.rowsTotal - m.rowsCopied)) / m.rowsCopied
      : 0;
  return {
    id: m.id,
    clientId: m.clientId,
    sourceShard: m.sourceShard,
    targetShard: m.targetShard,
    phase: PHASES[m.phase],
    state: STATES[m.state],
    reason: REASONS[m.reason],
    rowsCopied: m.rowsCopied,
    rowsTotal: m.rowsTotal,
    bytesTotal: m.bytesTotal,
    writePauseMs: m.writePauseMs ?? 0,
    etaSeconds: Math.round(eta * 10) / 10,
    error: m.error ?? '',
    createdAt: m.createdAt,
    updatedAt: m.updatedAt,
    finishedAt: m.finishedAt ?? undefined,
  };
}

/** Runs `work` over `items`, at most `limit` at a time; never rejects (each move reports itself). */
async function runPool<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++]!;
      await work(item).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
