import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Catalog } from '../catalog/catalog.js';
import type { MoveJournal, MoveReason, MoveRecord } from '../catalog/move-journal.js';
import { ShardgateError, unknownClient } from '../core/errors.js';
import type { Failpoints } from '../core/failpoints.js';
import type { ClientId, ShardName } from '../core/ids.js';
import { trySessionLock, type SessionLock } from '../pg/session-lock.js';
import type { ShardPools } from '../shards/shard-pools.js';
import { loadMove, MoveRun, type MoveTimings } from './move-run.js';
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

/**
 * Starts, runs and recovers online client moves (docs/adr/0005-online-moves.md); one run of a
 * move is a MoveRun under the move's session lock. A process that dies mid-move leaves a running
 * journal row whose lock is free; `recover` (any process, periodically) rolls it back before the
 * flip or finishes it after. Emits `progress` with every journal change made here.
 */
export class TenantMover extends EventEmitter {
  readonly #deps: MoverDeps;
  readonly #timings: MoveTimings;
  readonly #running = new Map<string, Promise<MoveRecord>>();
  /** Moves being journaled by `start`: recovery must not mistake them for orphans. */
  readonly #starting = new Set<string>();
  readonly #gate: SubscriptionGate;

  constructor(deps: MoverDeps, options: MoverOptions = {}) {
    super();
    this.setMaxListeners(0);
    this.#deps = deps;
    this.#timings = {
      pollMs: options.pollMs ?? 50,
      copyTimeoutMs: options.copyTimeoutMs ?? 30 * 60_000,
      cutoverTimeoutMs: options.cutoverTimeoutMs ?? 5_000,
    };
    this.#gate = new SubscriptionGate(this.#timings.pollMs);
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
    if (!lock) return loadMove(this.#deps.journal, moveId);
    const run = new MoveRun(this.#deps, this.#timings, this.#gate, lock, (move) =>
      this.emit('progress', move),
    );
    try {
      return await run.run(moveId, recovering);
    } finally {
      await run.release();
    }
  }
}
