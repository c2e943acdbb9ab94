import { setTimeout as sleep } from 'node:timers/promises';
import { ClientError, Status } from 'nice-grpc';
import type { Handoff } from '../gen/shardgate/v1/handoff.js';
import type { ShardgateClient } from './shardgate-client.js';

/** Which handoffs to follow: a client's, optionally only those addressed to one agent. */
export interface FollowHandoffsRequest {
  clientId: string;
  /** Only handoffs to this agent; empty or absent for all. */
  toAgent?: string;
}

export interface FollowHandoffsOptions {
  /**
   * Resume point, e.g. the `createdAt` of the last handoff the caller handled: handoffs created
   * since then are delivered first. The catch-up starts `catchUpWindowMs` earlier, so handoffs
   * committed late are not lost, and a handoff handled just before `since` can come again: drop
   * repeats by id. Absent: only handoffs from now on.
   */
  since?: Date;
  /** Ends the iteration (it returns; nothing is thrown). */
  signal?: AbortSignal;
  /**
   * How far before its resume point a catch-up reads. A handoff's `created_at` is its
   * transaction's start, so one committed late can be older than the newest one seen; this covers
   * transactions up to that long, and a client clock that far off the server's. Default 5 minutes.
   */
  catchUpWindowMs?: number;
  /** First wait before re-subscribing after UNAVAILABLE; doubles up to `reconnectMaxDelayMs`. */
  reconnectBaseDelayMs?: number;
  reconnectMaxDelayMs?: number;
  /**
   * Called each time the watch is subscribed (first, and after each reconnect), before its
   * catch-up: from then on every committed handoff will be delivered (e.g. a readiness signal).
   */
  onSubscribed?: () => void;
  /** Called with the UNAVAILABLE error before each re-subscription (for logs). */
  onReconnect?: (cause: unknown) => void;
}

export const DEFAULT_CATCH_UP_WINDOW_MS = 5 * 60_000;
const DEFAULT_RECONNECT_BASE_DELAY_MS = 100;
const DEFAULT_RECONNECT_MAX_DELAY_MS = 5_000;
/** Rows per ListHandoffs page of a catch-up: the most the server takes. */
export const CATCH_UP_PAGE_SIZE = 1000;

/**
 * Every handoff of a client (or to one agent), each once, for as long as the caller iterates:
 * WatchHandoffs, re-subscribed whenever it ends UNAVAILABLE (the client moved to another shard,
 * the shard or the gateway went away), with a catch-up after each subscription so nothing
 * committed in between is lost.
 *
 * It subscribes first and waits for the server's word that it has (the response header), then
 * lists what was created since its resume point with ListHandoffs, oldest first, passing each
 * page on as it arrives, then passes on the live stream. A handoff can come both ways; within one
 * iteration each id comes once. Handoffs come oldest first within a catch-up, then as they are
 * committed. Any error other than UNAVAILABLE (an unknown client, a revoked token) is thrown.
 */
export async function* followHandoffs(
  client: ShardgateClient,
  request: FollowHandoffsRequest,
  options: FollowHandoffsOptions = {},
): AsyncGenerator<Handoff, void, undefined> {
  const windowMs = options.catchUpWindowMs ?? DEFAULT_CATCH_UP_WINDOW_MS;
  const baseDelayMs = options.reconnectBaseDelayMs ?? DEFAULT_RECONNECT_BASE_DELAY_MS;
  const maxDelayMs = options.reconnectMaxDelayMs ?? DEFAULT_RECONNECT_MAX_DELAY_MS;
  if (![windowMs, baseDelayMs, maxDelayMs].every((n) => Number.isFinite(n) && n >= 0)) {
    throw new RangeError('catchUpWindowMs and the reconnect delays must be finite and ≥ 0');
  }
  const { signal } = options;
  const delivered = new Delivered(windowMs);
  let resumeAtMs = options.since?.getTime();
  let failures = 0;
  while (!signal?.aborted) {
    const subscribedAtMs = Date.now();
    const watch = new WatchSession(client, request, signal);
    try {
      if (await watch.subscribed()) {
        failures = 0;
        options.onSubscribed?.();
        if (resumeAtMs !== undefined) {
          for await (const h of catchUp(client, request, resumeAtMs - windowMs, signal)) {
            if (delivered.add(h)) yield h;
            // Oldest first, so a catch-up cut short resumes after what it delivered: those ids
            // are still remembered, and older ones are never read again.
            resumeAtMs = Math.max(resumeAtMs, delivered.newestMs ?? 0);
          }
        }
        // Later catch-ups start here at the latest, even if nothing arrives.
        resumeAtMs = Math.max(resumeAtMs ?? subscribedAtMs, delivered.newestMs ?? 0);
        for (let h = await watch.next(); h; h = await watch.next()) {
          if (delivered.add(h)) yield h;
          resumeAtMs = Math.max(resumeAtMs, delivered.newestMs ?? 0);
        }
      }
      if (signal?.aborted) return;
      if (!isUnavailable(watch.failure)) throw watch.failure;
      options.onReconnect?.(watch.failure);
    } catch (err) {
      if (signal?.aborted) return;
      if (!isUnavailable(err)) throw err;
      options.onReconnect?.(err);
    } finally {
      watch.close();
    }
    const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(failures++, 30));
    // An abort ends the wait early; the loop then returns.
    await sleep(ceiling / 2 + (Math.random() * ceiling) / 2, undefined, { signal }).catch(
      () => undefined,
    );
  }
}

/** What ended a session, or a stream that ended without an error (the server never does that). */
function isUnavailable(err: unknown): boolean {
  return err === undefined || (err instanceof ClientError && err.code === Status.UNAVAILABLE);
}

/**
 * Handoffs created at or after `fromMs`, oldest first, page by page as ListHandoffs returns them:
 * a resume point far back holds one page at a time, and its first handoffs come at once.
 */
async function* catchUp(
  client: ShardgateClient,
  request: FollowHandoffsRequest,
  fromMs: number,
  signal: AbortSignal | undefined,
): AsyncGenerator<Handoff, void, undefined> {
  let pageToken = '';
  do {
    const page = await client.handoffs.listHandoffs(
      {
        clientId: request.clientId,
        toAgent: request.toAgent ?? '',
        createdAfter: new Date(fromMs),
        orderBy: 'created_at',
        pageSize: CATCH_UP_PAGE_SIZE,
        pageToken,
      },
      { signal },
    );
    yield* page.handoffs;
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
}

/**
 * Ids delivered recently enough to come again: a catch-up re-reads the window before its resume
 * point, so older ids are forgotten.
 */
class Delivered {
  readonly #windowMs: number;
  readonly #ids = new Map<string, number>();
  #sweepAt = 1024;
  newestMs: number | undefined;

  constructor(windowMs: number) {
    this.#windowMs = windowMs;
  }

  /** False for a handoff already delivered. */
  add(h: Handoff): boolean {
    if (this.#ids.has(h.id)) return false;
    const createdMs = h.createdAt?.getTime() ?? Date.now();
    this.#ids.set(h.id, createdMs);
    this.newestMs = Math.max(this.newestMs ?? createdMs, createdMs);
    if (this.#ids.size >= this.#sweepAt) {
      const forgetBefore = this.newestMs - 2 * this.#windowMs;
      for (const [id, ms] of this.#ids) if (ms < forgetBefore) this.#ids.delete(id);
      this.#sweepAt = Math.max(1024, 2 * this.#ids.size);
    }
    return true;
  }
}

/** One WatchHandoffs call, drained in the background into a queue. */
class WatchSession {
  readonly #controller = new AbortController();
  readonly #outer: AbortSignal | undefined;
  readonly #onOuterAbort = (): void => this.#controller.abort();
  readonly #queue: Handoff[] = [];
  readonly #header: Promise<boolean>;
  #ended = false;
  #wake: (() => void) | undefined;
  /** What the stream ended with; undefined while it runs or after a clean end. */
  failure: unknown;

  constructor(client: ShardgateClient, request: FollowHandoffsRequest, outer?: AbortSignal) {
    this.#outer = outer;
    if (outer?.aborted) this.#controller.abort();
    else outer?.addEventListener('abort', this.#onOuterAbort, { once: true });
    let subscribed!: (ok: boolean) => void;
    this.#header = new Promise((resolve) => (subscribed = resolve));
    const stream = client.handoffs.watchHandoffs(
      { clientId: request.clientId, toAgent: request.toAgent ?? '' },
      { signal: this.#controller.signal, onHeader: () => subscribed(true) },
    );
    void (async () => {
      try {
        for await (const { handoff } of stream) {
          if (handoff) this.#queue.push(handoff);
          this.#wake?.();
        }
      } catch (err) {
        this.failure = err;
      } finally {
        this.#ended = true;
        subscribed(false);
        this.#wake?.();
      }
    })();
  }

  /** True once the server has subscribed; false if the stream ended first (see `failure`). */
  subscribed(): Promise<boolean> {
    return this.#header;
  }

  /** The next handoff, or undefined once the stream has ended and its queue is empty. */
  async next(): Promise<Handoff | undefined> {
    while (this.#queue.length === 0 && !this.#ended) {
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
    return this.#queue.shift();
  }

  close(): void {
    this.#controller.abort();
    this.#outer?.removeEventListener('abort', this.#onOuterAbort);
  }
}
