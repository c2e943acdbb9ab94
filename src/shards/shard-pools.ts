import { shardUnavailable } from '../core/errors.js';
import type { PoolConfig } from '../core/config.js';
import { Database } from '../pg/database.js';

/** A shard's connection target. */
export interface ShardTarget {
  readonly name: string;
  readonly url: string;
}

/**
 * One pool per shard, never per client: every client on a shard shares its pool. `sync` follows
 * topology changes; a shard whose URL changed gets a fresh pool.
 */
export class ShardPools {
  readonly #config: PoolConfig;
  readonly #onError: (shard: string, err: Error) => void;
  readonly #dbs = new Map<string, { url: string; db: Database }>();
  /** Pools `sync` took out of service whose statements are still finishing. */
  readonly #closing = new Set<Promise<void>>();

  constructor(config: PoolConfig, onError: (shard: string, err: Error) => void) {
    this.#config = config;
    this.#onError = onError;
  }

  /** The shard's database; UNAVAILABLE for a shard this gateway does not know. */
  get(name: string): Database {
    const entry = this.#dbs.get(name);
    if (!entry) throw shardUnavailable(name);
    return entry.db;
  }

  has(name: string): boolean {
    return this.#dbs.has(name);
  }

  /**
   * Opens pools for new shards and closes those of shards that are gone or changed; returns the
   * names of the closed ones. It does not wait for a closed pool's statements to end: a shard
   * moved to a new URL because its old host went silent must not hold up the topology.
   */
  sync(targets: readonly ShardTarget[]): string[] {
    const wanted = new Map(targets.map((t) => [t.name, t.url]));
    const closed: string[] = [];
    for (const [name, entry] of this.#dbs) {
      if (wanted.get(name) !== entry.url) {
        this.#dbs.delete(name);
        closed.push(name);
        const closing = entry.db
          .close()
          .catch((err: unknown) =>
            this.#onError(name, err instanceof Error ? err : new Error(String(err))),
          );
        this.#closing.add(closing);
        void closing.finally(() => this.#closing.delete(closing));
      }
    }
    for (const [name, url] of wanted) {
      if (this.#dbs.has(name)) continue;
      const db = new Database({
        ...this.#config,
        readBatchStatements: this.#config.readBatchStatements ?? Math.ceil(this.#config.max / 4),
        url,
        label: `shard '${name}'`,
        onError: (err) => this.#onError(name, err),
      });
      this.#dbs.set(name, { url, db });
    }
    return closed;
  }

  /** The URL a shard's pool connects to (for LISTEN connections). */
  urlOf(name: string): string {
    const entry = this.#dbs.get(name);
    if (!entry) throw shardUnavailable(name);
    return entry.url;
  }

  /** Closes every pool, and waits for those `sync` closed to finish too. */
  async close(): Promise<void> {
    const all = [...this.#dbs.values()].map((e) => e.db.close());
    this.#dbs.clear();
    await Promise.allSettled([...all, ...this.#closing]);
  }
}
