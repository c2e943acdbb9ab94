import { ShardgateError, shardUnavailable } from '../core/errors.js';
import { PgListener } from '../pg/listener.js';
import { handoffs, type HandoffRecord } from './handoffs.js';
import { quoteSchema } from './client-schema.js';
import type { ShardPools } from './shard-pools.js';

const CHANNEL = 'shardgate_handoffs';

/** Receives the handoffs of one client schema as they are committed. */
export interface HandoffSubscriber {
  onHandoff(handoff: HandoffRecord): void;
  /** The feed for the shard broke; no more handoffs will come through this subscription. */
  onError(err: Error): void;
}

interface ShardFeed {
  listener: PgListener;
  bySchema: Map<string, Set<HandoffSubscriber>>;
  /** Fetches run one after another so subscribers see handoffs in commit order. */
  chain: Promise<void>;
  /** Set when retired or failed; it is then out of the map and takes no subscriber. */
  closed: boolean;
}

/** A shard's feed while it opens and once open; `feed` is set as soon as it is. */
interface FeedEntry {
  opening: Promise<ShardFeed>;
  feed?: ShardFeed;
}

/**
 * Pushes new handoffs to watchers. Each client schema's insert trigger NOTIFYs `schema:id` on its
 * shard, so a handoff written through any gateway process reaches every process watching it. One
 * LISTEN connection per shard with watchers, whatever the number of watched clients; a
 * notification costs one fetch, shared by all watchers of that client.
 */
export class HandoffFeed {
  readonly #pools: ShardPools;
  readonly #feeds = new Map<string, FeedEntry>();

  constructor(pools: ShardPools) {
    this.#pools = pools;
  }

  /** Subscribes to a schema (the raw schema name) on a shard; returns the unsubscribe function. */
  async subscribe(
    shard: string,
    schema: string,
    subscriber: HandoffSubscriber,
  ): Promise<() => void> {
    let feed = await this.#feedFor(shard);
    // Its last subscriber may have left (or the shard failed) while we waited: open a new one.
    while (feed.closed) feed = await this.#feedFor(shard);
    let set = feed.bySchema.get(schema);
    if (!set) feed.bySchema.set(schema, (set = new Set()));
    set.add(subscriber);
    return () => {
      set.delete(subscriber);
      if (set.size === 0 && feed.bySchema.get(schema) === set) feed.bySchema.delete(schema);
      if (feed.bySchema.size === 0) this.#retire(shard, feed);
    };
  }

  /**
   * Ends the watches of shards whose connection changed (SetShardDsn, RemoveShard) with
   * UNAVAILABLE, so their callers watch again over the shard's new connection.
   */
  async reconnect(shards: readonly string[]): Promise<void> {
    for (const shard of shards) {
      const entry = this.#feeds.get(shard);
      if (!entry) continue;
      const feed = await entry.opening.catch(() => undefined);
      if (feed && !feed.closed) {
        this.#fail(
          shard,
          feed,
          new ShardgateError(
            'unavailable',
            `the connection of shard '${shard}' changed; watch again`,
          ),
        );
      }
    }
  }

  /** Ends every watch with UNAVAILABLE (so callers reconnect elsewhere) and closes the feeds. */
  async close(): Promise<void> {
    const entries = [...this.#feeds.entries()];
    this.#feeds.clear();
    const closing = new ShardgateError('unavailable', 'this gateway is shutting down; watch again');
    for (const [shard, entry] of entries) {
      const feed = await entry.opening.catch(() => undefined);
      if (feed) this.#fail(shard, feed, closing);
    }
  }

  /** One feed per shard; concurrent first subscribers share the same opening. */
  #feedFor(shard: string): Promise<ShardFeed> {
    const existing = this.#feeds.get(shard);
    if (existing) return existing.opening;
    const entry: FeedEntry = {
      opening: this.#open(shard).then((feed) => (entry.feed = feed)),
    };
    this.#feeds.set(shard, entry);
    entry.opening.catch(() => {
      if (this.#feeds.get(shard) === entry) this.#feeds.delete(shard);
    });
    return entry.opening;
  }

  async #open(shard: string): Promise<ShardFeed> {
    const listener = new PgListener({ url: this.#pools.urlOf(shard), channel: CHANNEL });
    await listener.start();
    if (!listener.connected) {
      await listener.close();
      throw shardUnavailable(shard);
    }
    const feed: ShardFeed = {
      listener,
      bySchema: new Map(),
      chain: Promise.resolve(),
      closed: false,
    };
    listener.on('notification', (payload: string) => this.#onNotification(shard, feed, payload));
    listener.on('disconnected', (err: Error) =>
      this.#fail(shard, feed, shardUnavailable(shard, err)),
    );
    return feed;
  }

  /**
   * Closes a feed nobody watches any more. Synchronous on purpose: a subscriber that joins in the
   * same tick must find either this feed still open or no feed, never one about to close.
   */
  #retire(shard: string, feed: ShardFeed): void {
    if (feed.closed || feed.bySchema.size > 0) return;
    this.#close(shard, feed);
  }

  #close(shard: string, feed: ShardFeed): void {
    feed.closed = true;
    if (this.#feeds.get(shard)?.feed === feed) this.#feeds.delete(shard);
    void feed.listener.close();
  }

  #onNotification(shard: string, feed: ShardFeed, payload: string): void {
    const sep = payload.lastIndexOf(':');
    const schema = payload.slice(0, sep);
    const id = payload.slice(sep + 1);
    if (!feed.bySchema.has(schema)) return;
    feed.chain = feed.chain.then(async () => {
      const subscribers = feed.bySchema.get(schema);
      if (!subscribers) return;
      try {
        const row = await handoffs.get(this.#pools.get(shard), quoteSchema(schema), id);
        if (row) for (const s of subscribers) s.onHandoff(row);
      } catch (err) {
        for (const s of subscribers) s.onError(err as Error);
      }
    });
  }

  /** Ends every subscription on the shard: a watcher must know it may have missed handoffs. */
  #fail(shard: string, feed: ShardFeed, err: Error): void {
    this.#close(shard, feed);
    const all = [...feed.bySchema.values()].flatMap((set) => [...set]);
    feed.bySchema.clear();
    for (const s of all) s.onError(err);
  }
}
