import { unknownClient } from '../core/errors.js';
import type { ClientId, ShardName } from '../core/ids.js';
import { ShardRing, type RingMember } from './shard-ring.js';

export type PlacementStatus = 'provisioning' | 'active' | 'churned';

/** Where one client's data lives, as the directory says; everything a data call needs. */
export interface Placement {
  readonly clientId: ClientId;
  readonly shard: ShardName;
  readonly schema: string;
  /** The schema as a quoted SQL identifier, computed once per cache fill, not per call. */
  readonly schemaIdent: string;
  readonly status: PlacementStatus;
  /** A move's cutover is under way: writes wait (bounded) for the flip. */
  readonly writesPaused: boolean;
}

/** Options for a Router; the loader is the only way it reaches the directory. */
export interface RouterOptions {
  loadPlacement: (clientId: ClientId, signal?: AbortSignal) => Promise<Placement | undefined>;
  /** False while the change feed is down: then nothing is served from the cache. */
  cacheTrusted: () => boolean;
  /** Upper bound on cached placements; the oldest is dropped first. */
  maxEntries?: number;
}

/**
 * Resolves client ids to placements. The directory is the truth; this keeps an in-memory copy
 * that the catalog's change feed invalidates, so a hit costs one Map lookup whatever the number
 * of clients, and a changed placement is seen without a restart.
 */
export class Router {
  readonly #options: Required<RouterOptions>;
  readonly #cache = new Map<string, Placement>();
  /** Callers waiting for a client's directory entry to change (only during a move's cutover). */
  readonly #waiters = new Map<string, Set<() => void>>();
  #generation = 0;
  #ring = new ShardRing([], 1, 0);

  constructor(options: RouterOptions) {
    this.#options = { maxEntries: 100_000, ...options };
  }

  /** The placement if cached and trusted; the hot path's synchronous check. */
  cached(clientId: string): Placement | undefined {
    return this.#options.cacheTrusted() ? this.#cache.get(clientId) : undefined;
  }

  /** The client's placement; NOT_FOUND when the directory has no entry. */
  async resolve(clientId: ClientId, signal?: AbortSignal): Promise<Placement> {
    const hit = this.cached(clientId);
    if (hit) return hit;
    const generation = this.#generation;
    const placement = await this.#options.loadPlacement(clientId, signal);
    if (!placement) throw unknownClient(clientId);
    // An invalidation that raced with the load may describe a newer state: do not cache then.
    if (generation === this.#generation && this.#options.cacheTrusted()) this.#remember(placement);
    return placement;
  }

  /** Forget one client (its directory entry changed). */
  invalidate(clientId: string): void {
    this.#generation++;
    this.#cache.delete(clientId);
    const waiters = this.#waiters.get(clientId);
    if (waiters) for (const wake of waiters) wake();
  }

  /** Forget everything (the change feed reconnected and may have missed events). */
  clear(): void {
    this.#generation++;
    this.#cache.clear();
    for (const waiters of this.#waiters.values()) for (const wake of waiters) wake();
  }

  /** Resolves when the client's entry changes, after `timeoutMs`, or when `signal` fires. */
  async waitForChange(clientId: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    let set = this.#waiters.get(clientId);
    if (!set) this.#waiters.set(clientId, (set = new Set()));
    const waiters = set;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        waiters.delete(done);
        if (waiters.size === 0 && this.#waiters.get(clientId) === waiters)
          this.#waiters.delete(clientId);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', done, { once: true });
      waiters.add(done);
    });
  }

  /** Replaces the ring after a topology change. */
  setRing(members: readonly RingMember[], vnodes: number, epoch: number): void {
    this.#ring = new ShardRing(members, vnodes, epoch);
  }

  get ring(): ShardRing {
    return this.#ring;
  }

  #remember(p: Placement): void {
    if (this.#cache.size >= this.#options.maxEntries) {
      const oldest = this.#cache.keys().next();
      if (!oldest.done) this.#cache.delete(oldest.value);
    }
    this.#cache.set(p.clientId, p);
  }
}
