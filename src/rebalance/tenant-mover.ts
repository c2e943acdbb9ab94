import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Catalog } from '../catalog/catalog.js';
import {
  AFTER_FLIP,
  type MoveJournal,
  type MovePhase,
  type MoveReason,
  type MoveRecord,
  type MoveUpdate,
} from '../catalog/move-journal.js';
import { ShardgateError, unknownClient } from '../core/errors.js';
import type { Failpoints } from '../core/failpoints.js';
import { schemaNameFor, type ClientId, type ShardName } from '../core/ids.js';
import { withTimeLimit } from '../core/time-limit.js';
import type { Database } from '../pg/database.js';
import { trySessionLock, type SessionLock } from '../pg/session-lock.js';
import { ensureClientSchema } from '../shards/client-schema.js';
import * as verify from '../shards/move-verification.js';
import * as repl from '../shards/replication.js';
import type { ShardPools } from '../shards/shard-pools.js';
import { checkMoveTarget } from './move-target.js';
import { SubscriptionGate } from './subscription-gate.js';

/** Tuning of the move protocol; defaults are set in the TenantMover constructor. */
export interface MoverOptions {
  /** How often copy progress is polled. */
  pollMs?: number;
  /** Longest the initial copy may take before the move fails. */
  copyTimeoutMs?: number;
  /** Longest the cutover may wait for the last changes before rolling back (writes are paused). */
  cutoverTimeoutMs?: number;
}

/** What the mover works with. */
export interface MoverDeps {
  catalog: Catalog;
  journal: MoveJournal;
  pools: ShardPools;
  catalogUrl: string;
  failpoints: Failpoints;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void };
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

const BEFORE_FLIP: readonly MovePhase[] = [
  'pending',
  'preparing',
  'copying',
  'catching_up',
  'cutover',
];

/**
 * Moves one client's schema to another shard online (docs/adr/0005-online-moves.md): copy with
 * logical replication while the client is served, then a short per-client write pause — fence
 * the source, wait for the last change, verify both copies, flip the placement in one catalog
 * transaction. Each step is journaled before it runs. A process that dies mid-move leaves a
 * running journal row whose lock is free; `recover` rolls it back (before the flip) or finishes
 * it (after). Emits `progress` with every journal change.
 */
export class TenantMover extends EventEmitter {
  readonly #deps: MoverDeps;
  readonly #pollMs: number;
  readonly #copyTimeoutMs: number;
  readonly #cutoverTimeoutMs: number;
  readonly #running = new Map<string, Promise<MoveRecord>>();
  /** Moves being journaled by `start`: recovery must not mistake them for orphans. */
  readonly #starting = new Set<string>();
  /** The lock held for each move this process runs (replaced when a lost one is taken again). */
  readonly #locks = new Map<string, SessionLock>();
  readonly #gate: SubscriptionGate;

  constructor(deps: MoverDeps, options: MoverOptions = {}) {
    super();
    this.setMaxListeners(0);
    this.#deps = deps;
    this.#pollMs = options.pollMs ?? 50;
    this.#copyTimeoutMs = options.copyTimeoutMs ?? 30 * 60_000;
    this.#cutoverTimeoutMs = options.cutoverTimeoutMs ?? 5_000;
    this.#gate = new SubscriptionGate(this.#pollMs);
  }

  /** Journals a move and runs it in the background; resolves with the journaled record. */
  async start(req: {
    clientId: ClientId;
    target: ShardName;
    reason: MoveReason;
  }): Promise<MoveRecord> {
    const tenant = await this.#deps.catalog.getTenant(req.clientId);
    if (!tenant) throw unknownClient(req.clientId);
    if (tenant.status === 'provisioning') {
      throw new ShardgateError(
        'failed-precondition',
        `client '${req.clientId}' is still being provisioned`,
      );
    }
    if (tenant.shard === req.target) {
      throw new ShardgateError(
        'failed-precondition',
        `client '${req.clientId}' already lives on '${req.target}'`,
      );
    }
    const checked = await checkMoveTarget(this.#deps, tenant.shard, req.target);
    await this.#deps.failpoints.hit('move.checked');
    // The lock is taken before the row exists, so no recovering process (here or in another
    // gateway) can see the new move without its lock held and roll it back as an orphan.
    const id = randomUUID();
    this.#starting.add(id);
    try {
      const lock = await trySessionLock(this.#deps.catalogUrl, this.#deps.journal.lockKey(id));
      if (!lock) throw new ShardgateError('aborted', 'could not lock the new move; retry');
      let move: MoveRecord;
      try {
        move = await this.#deps.journal.create({
          id,
          clientId: req.clientId,
          source: tenant.shard,
          target: req.target,
          reason: req.reason,
          checked,
        });
      } catch (err) {
        await lock.release();
        throw err;
      }
      void this.run(id, false, lock);
      return move;
    } finally {
      this.#starting.delete(id);
    }
  }

  /** Runs (or joins) a move; settles when it ends here, or at once if another process owns it. */
  run(moveId: string, recovering = false, lock?: SessionLock): Promise<MoveRecord> {
    const existing = this.#running.get(moveId);
    if (existing) return existing;
    const running = this.#runLocked(moveId, recovering, lock).finally(() =>
      this.#running.delete(moveId),
    );
    running.catch((err: unknown) =>
      this.#deps.log.warn({ err, moveId }, 'move stopped; recovery will resume it'),
    );
    this.#running.set(moveId, running);
    return running;
  }

  /** Takes over every running move that no live process holds (at start-up and periodically). */
  async recover(): Promise<void> {
    for (const move of await this.#deps.journal.listRunning()) {
      if (!this.#running.has(move.id) && !this.#starting.has(move.id)) void this.run(move.id, true);
    }
  }

  /** Waits for every move this process runs to settle (shutdown and tests). */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.#running.values()]);
  }

  async #runLocked(moveId: string, recovering: boolean, held?: SessionLock): Promise<MoveRecord> {
    const lock =
      held ?? (await trySessionLock(this.#deps.catalogUrl, this.#deps.journal.lockKey(moveId)));
    if (!lock) return this.#load(moveId);
    this.#locks.set(moveId, lock);
    try {
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
    } finally {
      const current = this.#locks.get(moveId);
      this.#locks.delete(moveId);
      await Promise.all([lock.release(), current?.release()]);
    }
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
   * someone else holds it.
   */
  async #keepLock(moveId: string): Promise<void> {
    const lock = this.#locks.get(moveId);
    if (!lock?.lost.aborted) return;
    const again = await trySessionLock(
      this.#deps.catalogUrl,
      this.#deps.journal.lockKey(moveId),
    ).catch(() => undefined);
    if (!again) throw new LockLost(moveId);
    this.#deps.log.warn({ moveId }, "the move's lock connection ended; took the lock again");
    this.#locks.set(moveId, again);
    await lock.release();
  }

  async #load(moveId: string): Promise<MoveRecord> {
    const move = await this.#deps.journal.get(moveId);
    if (!move) throw new ShardgateError('not-found', `move ${moveId} does not exist`);
    return move;
  }

  #emit(move: MoveRecord): MoveRecord {
    this.emit('progress', move);
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
