import { setTimeout as sleep } from 'node:timers/promises';
import {
  AFTER_FLIP,
  type MoveJournal,
  type MovePhase,
  type MoveRecord,
  type MoveUpdate,
} from '../catalog/move-journal.js';
import { ShardgateError } from '../core/errors.js';
import { schemaNameFor } from '../core/ids.js';
import { withTimeLimit } from '../core/time-limit.js';
import type { Database } from '../pg/database.js';
import { trySessionLock, type SessionLock } from '../pg/session-lock.js';
import { ensureClientSchema } from '../shards/client-schema.js';
import * as verify from '../shards/move-verification.js';
import * as repl from '../shards/replication.js';
import type { SubscriptionGate } from './subscription-gate.js';
import type { MoverDeps } from './tenant-mover.js';

/** The move protocol's timings (MoverOptions with their defaults applied). */
export interface MoveTimings {
  pollMs: number;
  copyTimeoutMs: number;
  cutoverTimeoutMs: number;
}

class Cancelled extends Error {}

/**
 * The move's lock was lost (its catalog connection ended) and another process holds it now, or
 * ended the move meanwhile: this process stops without undoing anything; the owner goes on.
 */
class LockLost extends ShardgateError {
  constructor(moveId: string) {
    super('aborted', `move ${moveId} is run by another process now`);
  }
}

/** Tries at taking a lost move lock again while the catalog cannot be reached, and the pause. */
const LOCK_RETAKE_ATTEMPTS = 3;
const LOCK_RETAKE_DELAY_MS = 250;

const BEFORE_FLIP: readonly MovePhase[] = [
  'pending',
  'preparing',
  'copying',
  'catching_up',
  'cutover',
];

/**
 * One run of one move by the process holding its lock (docs/adr/0005-online-moves.md): copy with
 * logical replication while the client is served, then a short per-client write pause — fence
 * the source, wait for the last change, verify both copies, flip the placement in one catalog
 * transaction — then clean up; or roll back. Each step is journaled before it runs, and checks
 * first that the lock is still held (SessionLock.lost).
 */
export class MoveRun {
  readonly #deps: MoverDeps;
  readonly #pollMs: number;
  readonly #copyTimeoutMs: number;
  readonly #cutoverTimeoutMs: number;
  readonly #gate: SubscriptionGate;
  readonly #onProgress: (move: MoveRecord) => void;
  #lock: SessionLock;

  constructor(
    deps: MoverDeps,
    timings: MoveTimings,
    gate: SubscriptionGate,
    lock: SessionLock,
    onProgress: (move: MoveRecord) => void,
  ) {
    this.#deps = deps;
    this.#pollMs = timings.pollMs;
    this.#copyTimeoutMs = timings.copyTimeoutMs;
    this.#cutoverTimeoutMs = timings.cutoverTimeoutMs;
    this.#gate = gate;
    this.#lock = lock;
    this.#onProgress = onProgress;
  }

  /**
   * Runs the move from its journaled state: forward (or, when `recovering` a move whose process
   * stopped, back) before the flip; to the end after it.
   */
  async run(moveId: string, recovering: boolean): Promise<MoveRecord> {
    let move = await this.#load(moveId);
    if (move.state !== 'running') return move;
    if (BEFORE_FLIP.includes(move.phase)) {
      move = recovering
        ? await this.#rollBack(
            move,
            'failed',
            // A rollback that left the target's cleanup to recovery recorded why it failed.
            move.error ?? 'the process running the move stopped; rolled back',
          )
        : await this.#forward(move);
    }
    if (move.state === 'running' && AFTER_FLIP.includes(move.phase))
      move = await this.#cleanUp(move);
    return move;
  }

  /** Releases the move's lock (the one taken again, if it was lost). */
  async release(): Promise<void> {
    await this.#lock.release();
  }

  async #forward(move: MoveRecord): Promise<MoveRecord> {
    try {
      move = await this.#prepare(move);
      move = await this.#copy(move);
      move = await this.#catchUp(move);
      return await this.#cutover(move);
    } catch (err) {
      if (err instanceof LockLost) throw err;
      // An error after the flip committed (or with its outcome unknown) is not a reason to roll
      // back: the journal says which side of the flip the move is on.
      const current = await this.#load(move.id);
      if (AFTER_FLIP.includes(current.phase)) {
        this.#deps.log.warn({ err, moveId: move.id }, 'error after the flip; finishing the move');
        return current;
      }
      const cancelled = err instanceof Cancelled;
      this.#deps.log.warn(
        { err, moveId: move.id },
        cancelled ? 'move cancelled' : 'move failed; rolling back',
      );
      return this.#rollBack(
        move,
        cancelled ? 'cancelled' : 'failed',
        cancelled ? null : callerSafeMessage(err, move.phase),
      );
    }
  }

  async #prepare(move: MoveRecord): Promise<MoveRecord> {
    move = await this.#step(move, { phase: 'preparing' });
    const { source, target, schema } = this.#ends(move);
    await ensureClientSchema(source, schema);
    const size = await repl.schemaSize(source, schema);
    if (await repl.schemaExists(target, schema)) await repl.dropSchema(target, schema);
    await ensureClientSchema(target, schema);
    await repl.truncateSchema(target, schema);
    // Exact, because a client nobody has analyzed yet has no row estimate (and the copy is O(n) anyway).
    return this.#step(move, { rowsTotal: await totalRows(source, schema), bytesTotal: size.bytes });
  }

  async #copy(move: MoveRecord): Promise<MoveRecord> {
    move = await this.#step(move, { phase: 'copying' });
    const { source, target, schema, name } = this.#ends(move);
    await repl.createPublication(source, name, schema);
    move = await this.#subscribe(move, source, target, name);
    const deadline = Date.now() + this.#copyTimeoutMs;
    for (let polls = 1; ; polls++) {
      const sync = await repl.syncProgress(target, name);
      if (sync.tables > 0 && sync.ready === sync.tables) break;
      if (Date.now() > deadline) throw moveFailed('the initial copy did not finish in time');
      if (polls % 10 === 0)
        move = await this.#step(move, { rowsCopied: await totalRows(target, schema) });
      await new Promise((r) => setTimeout(r, this.#pollMs));
    }
    // The copy leaves the target without statistics; plans and the next move's sizes need them.
    await repl.analyzeSchema(target, schema);
    return this.#step(move, { rowsCopied: await totalRows(target, schema) });
  }

  /**
   * Lets replication drain the changes made during the copy and starts recording the keys of rows
   * written from now on; then compares, still without pausing anyone, every row not written since.
   * The cutover only has the recorded rows left to compare, so its pause does not grow with size.
   */
  async #catchUp(move: MoveRecord): Promise<MoveRecord> {
    move = await this.#step(move, { phase: 'catching_up' });
    const { source, target, name, schema } = this.#ends(move);
    await verify.installChangeTracking(source, schema, move.id);
    await this.#waitApplied(
      target,
      name,
      await repl.writeMarker(source, schema),
      this.#copyTimeoutMs,
    );
    const differing = await verify.verifyUnchangedRows(source, target, schema, move.id);
    if (differing.length > 0) {
      throw moveFailed(`verification failed: table(s) ${differing.join(', ')} differ`);
    }
    return move;
  }

  async #cutover(move: MoveRecord): Promise<MoveRecord> {
    move = await this.#step(move, { phase: 'cutover' });
    const { source, target, schema, name } = this.#ends(move);
    const pausedAt = performance.now();
    await this.#deps.catalog.setWritesPaused(move.clientId, true);
    await this.#deps.failpoints.hit('move.cutover.paused');
    // The client's writes are paused until the flip: a shard that stops answering must not
    // stretch the pause to its statement timeout, so the pause's statements share one deadline.
    await withTimeLimit(undefined, this.#cutoverTimeoutMs, async (signal) => {
      try {
        await repl.installFence(source, schema);
        await this.#waitApplied(
          target,
          name,
          await repl.writeMarker(source, schema),
          this.#cutoverTimeoutMs,
          signal,
        );
        await this.#deps.failpoints.hit('move.cutover.caught-up');
        const differing = await verify.verifyChangedRows(source, target, schema, move.id, signal);
        if (differing.length > 0) {
          throw moveFailed(`verification failed: table(s) ${differing.join(', ')} differ`);
        }
      } catch (err) {
        if (!signal.aborted) throw err;
        throw moveFailed(`the cutover did not finish within ${this.#cutoverTimeoutMs} ms`);
      }
    });
    await this.#deps.failpoints.hit('move.cutover.verified');
    const pauseMs = Math.round(performance.now() - pausedAt);
    if (!(await this.#deps.journal.flip(move, pauseMs))) {
      if ((await this.#load(move.id)).cancelRequested) throw new Cancelled();
      throw moveFailed('the client is no longer on the source shard; nothing was flipped');
    }
    this.#deps.log.info({ moveId: move.id, clientId: move.clientId, pauseMs }, 'move flipped');
    await this.#deps.failpoints.hit('move.flipped');
    return this.#emit(await this.#load(move.id));
  }

  async #cleanUp(move: MoveRecord): Promise<MoveRecord> {
    move = await this.#step(move, { phase: 'cleaning' });
    const { source, target, schema, name } = this.#ends(move);
    await repl.dropSubscription(target, name);
    await repl.dropPublication(source, name);
    await repl.dropSlot(source, name);
    await verify.removeChangeTracking(source, schema, move.id);
    await repl.dropSchema(source, schema);
    return this.#step(move, { phase: 'done', state: 'succeeded' });
  }

  /**
   * Undoes a move that has not flipped; every step tolerates what is already gone. The source is
   * put right first (change tracking and fence off, writes resumed, publication and slot gone), so
   * a target that stopped answering can neither keep the client paused nor make the source keep
   * WAL for it. When the target's leftovers (its subscription, the partial copy) cannot be
   * removed, the move stays running with its error recorded, and recovery retries until they are.
   */
  async #rollBack(
    move: MoveRecord,
    state: 'failed' | 'cancelled',
    error: string | null,
  ): Promise<MoveRecord> {
    const claimed = await this.#deps.journal.beginRollback(move.id);
    // Flipped meanwhile (a flip whose outcome the caller did not see): finish it instead.
    if (!claimed) return this.#load(move.id);
    const { source, target, schema, name } = this.#ends(move);
    const onSource =
      (await this.#deps.catalog.getTenant(move.clientId))?.shard === move.sourceShard;
    if (onSource) {
      await verify.removeChangeTracking(source, schema, move.id);
      await repl.removeFence(source, schema);
      await this.#deps.catalog.setWritesPaused(move.clientId, false);
    }
    let targetFailure: unknown;
    try {
      await repl.dropSubscription(target, name);
    } catch (err) {
      targetFailure = err;
    }
    await repl.dropPublication(source, name);
    // A subscription that could not be dropped may still hold the slot; nothing needs it now.
    await repl.dropSlot(source, name, { evenIfActive: targetFailure !== undefined });
    if (onSource && targetFailure === undefined) {
      await repl.dropSchema(target, schema).catch((err: unknown) => (targetFailure = err));
    }
    if (targetFailure !== undefined) {
      if (error !== null) await this.#deps.journal.update(move.id, { error });
      throw targetFailure;
    }
    return this.#step(move, { state, ...(error === null ? {} : { error }) });
  }

  /** Subscribes the target once its server has replication workers for this move. */
  async #subscribe(
    move: MoveRecord,
    source: Database,
    target: Database,
    name: string,
  ): Promise<MoveRecord> {
    const sourceUrl = this.#deps.pools.urlOf(move.sourceShard);
    await this.#gate.admit({
      server: new URL(this.#deps.pools.urlOf(move.targetShard)).host,
      target,
      deadline: Date.now() + this.#copyTimeoutMs,
      onWait: async () => void (move = await this.#step(move, {})),
      create: () => repl.createSubscription(target, name, source, sourceUrl),
    });
    return move;
  }

  async #waitApplied(
    target: Database,
    name: string,
    lsn: string,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await repl.appliedPast(target, name, lsn, signal))) {
      if (Date.now() > deadline) throw moveFailed('the target did not catch up in time');
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /**
   * Journals a change (before the work it names), checks for cancellation, reports progress. Each
   * step first makes sure this process still holds the move's lock (LockLost otherwise).
   */
  async #step(move: MoveRecord, update: MoveUpdate): Promise<MoveRecord> {
    await this.#keepLock(move.id);
    const next = await this.#deps.journal.update(move.id, update);
    // Ended by the process that held the lock while this one had lost it.
    if (next.state !== 'running' && update.state === undefined) throw new LockLost(move.id);
    if (update.phase) await this.#deps.failpoints.hit(`move.${update.phase}`);
    this.#emit(next);
    if (next.state === 'running' && next.cancelRequested && BEFORE_FLIP.includes(next.phase)) {
      throw new Cancelled();
    }
    return next;
  }

  /**
   * When the move's lock connection has ended, takes the lock again: nobody else took it, so the
   * move goes on (the journal then shows anything another process did meanwhile). LockLost when
   * someone else holds it, or when the catalog cannot be reached LOCK_RETAKE_ATTEMPTS times (a
   * restart or failover of the catalog is what ends lock connections, so it is tried a few times).
   */
  async #keepLock(moveId: string): Promise<void> {
    const lock = this.#lock;
    if (!lock.lost.aborted) return;
    let again: SessionLock | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        again = await trySessionLock(this.#deps.catalogUrl, this.#deps.journal.lockKey(moveId));
        break;
      } catch (err) {
        if (attempt >= LOCK_RETAKE_ATTEMPTS) throw new LockLost(moveId);
        this.#deps.log.warn({ err, moveId, attempt }, "could not take the move's lock again yet");
        await sleep(LOCK_RETAKE_DELAY_MS * attempt);
      }
    }
    if (!again) throw new LockLost(moveId);
    this.#deps.log.warn({ moveId }, "the move's lock connection ended; took the lock again");
    this.#lock = again;
    await lock.release();
  }

  #load(moveId: string): Promise<MoveRecord> {
    return loadMove(this.#deps.journal, moveId);
  }

  #emit(move: MoveRecord): MoveRecord {
    this.#onProgress(move);
    return move;
  }

  #ends(move: MoveRecord): { source: Database; target: Database; schema: string; name: string } {
    return {
      source: this.#deps.pools.get(move.sourceShard),
      target: this.#deps.pools.get(move.targetShard),
      schema: schemaNameFor(move.clientId),
      name: repl.replicationName(move.id),
    };
  }
}

/** The journaled move; NOT_FOUND when there is none. */
export async function loadMove(journal: MoveJournal, moveId: string): Promise<MoveRecord> {
  const move = await journal.get(moveId);
  if (!move) throw new ShardgateError('not-found', `move ${moveId} does not exist`);
  return move;
}

async function totalRows(db: Database, schema: string): Promise<number> {
  return [...(await repl.rowCounts(db, schema)).values()].reduce((a, b) => a + b, 0);
}

/** A move step that failed for a reason the operator can read (shown in Move.error). */
function moveFailed(message: string): ShardgateError {
  return new ShardgateError('aborted', message);
}

/** Move.error reaches API callers: our own failures keep their text, anything else is logged only. */
function callerSafeMessage(err: unknown, phase: string): string {
  return err instanceof ShardgateError
    ? err.message
    : `internal error while ${phase.replace('_', ' ')}; the gateway logged the details`;
}
