/**
 * Per-key call limits of one gateway process: a token bucket (rate and burst), a cap on unary calls
 * running at once (more wait in the key's own queue, so one key cannot hold every pooled
 * connection), a cap on unary calls in flight (running or waiting; more are refused) and a cap on
 * open streams. Keys are client ids or callers; the state of a key lives in this process only, so
 * every limit is per gateway replica.
 *
 * Cost per call is O(1) whatever the number of keys: one Map lookup and re-insertion (the Map's
 * order is least-recently-used first) and a look at no more than SWEEP_PER_CALL of the oldest keys,
 * which are dropped once idle and refilled — such a key is indistinguishable from a new one, so
 * forgetting it changes no outcome. While calls keep coming, memory follows the keys used within
 * about one refill time (burst ÷ rate) plus those with calls or streams open; it never exceeds
 * `maxKeys` (a caller inventing ids faster than they go idle meets that bound).
 */

/** Which limit refused a call. */
export const limitKinds = ['rate', 'in-flight', 'streams'] as const;
/** A limit from limitKinds. */
export type LimitKind = (typeof limitKinds)[number];

/** Suggested wait after a refusal for too many calls in flight (no token math applies there). */
export const IN_FLIGHT_RETRY_MS = 100;
/** Suggested wait after a refusal for too many open streams: one must end first. */
export const STREAMS_RETRY_MS = 1_000;
/** Default hard bound on tracked keys (about 200 bytes each with its id: 20 MB at most). */
export const DEFAULT_MAX_KEYS = 100_000;
/** Oldest keys examined per admission; 2 removes keys faster than one call can add them. */
const SWEEP_PER_CALL = 2;
/** Tokens short of 1 that still admit a call (float error of refill arithmetic). */
const TOKEN_TOLERANCE = 1e-9;

/** The limits of every key. */
export interface RateLimiterOptions {
  /** Tokens added to a key's bucket per second: its sustained calls per second. */
  readonly ratePerSecond: number;
  /** Bucket size: calls a key may make back to back after being idle. */
  readonly burst: number;
  /** Unary calls of one key running at once; more wait, first come first served. */
  readonly maxConcurrent: number;
  /** Unary calls of one key running or waiting; more are refused. */
  readonly maxInFlight: number;
  /** Server streams of one key open at once; more are refused. */
  readonly maxStreams: number;
  /** Past this many keys the least recently used one is forgotten, even if busy. */
  readonly maxKeys?: number;
  /** A monotonic clock in milliseconds; tests inject their own. */
  readonly now?: () => number;
}

/** A call refused by a limit, with how long the caller should wait before retrying. */
export interface Refusal {
  readonly admitted: false;
  readonly limit: LimitKind;
  /** Whole milliseconds, at least 1. */
  readonly retryAfterMs: number;
}

interface Waiter {
  grant(): void;
}

/** The state of one key. Permits keep a reference, so a forgotten key's permits still settle. */
class KeyState {
  tokens: number;
  refilledAt: number;
  inFlight = 0;
  running = 0;
  streams = 0;
  waiters: Waiter[] | undefined = undefined;

  constructor(tokens: number, now: number) {
    this.tokens = tokens;
    this.refilledAt = now;
  }
}

/** An admitted call: wait for a turn (unary calls), then release exactly once when it ends. */
export class Permit {
  readonly admitted = true;
  readonly #state: KeyState;
  readonly #stream: boolean;
  readonly #maxConcurrent: number;
  #running = false;
  #released = false;

  /** @internal Made by RateLimiter.admit only. */
  constructor(state: KeyState, stream: boolean, maxConcurrent: number) {
    this.#state = state;
    this.#stream = stream;
    this.#maxConcurrent = maxConcurrent;
  }

  /**
   * Takes a running slot of the key: undefined when one is free now (no promise is made on the
   * hot path), else a promise that settles when an earlier call releases its slot, or rejects with
   * `signal.reason` if the signal fires first. Streams need no slot.
   */
  waitTurn(signal: AbortSignal): Promise<void> | undefined {
    const s = this.#state;
    if (this.#stream || this.#running) return undefined;
    if (s.running < this.#maxConcurrent) {
      s.running++;
      this.#running = true;
      return undefined;
    }
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => {
          signal.removeEventListener('abort', onAbort);
          this.#running = true;
          resolve();
        },
      };
      const onAbort = (): void => {
        const queue = s.waiters!;
        queue.splice(queue.indexOf(waiter), 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      (s.waiters ??= []).push(waiter);
    });
  }

  /** Gives back the call's place (and its running slot to the next waiter); idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    const s = this.#state;
    if (this.#stream) {
      s.streams--;
      return;
    }
    s.inFlight--;
    if (!this.#running) return;
    const next = s.waiters?.shift();
    if (next) next.grant();
    else s.running--;
  }
}

/** Per-key rate, concurrency and stream limits in this process; see the module comment. */
export class RateLimiter {
  readonly #keys = new Map<string, KeyState>();
  readonly #ratePerMs: number;
  readonly #burst: number;
  readonly #maxConcurrent: number;
  readonly #maxInFlight: number;
  readonly #maxStreams: number;
  readonly #maxKeys: number;
  readonly #now: () => number;

  constructor(options: RateLimiterOptions) {
    this.#ratePerMs = options.ratePerSecond / 1000;
    this.#burst = options.burst;
    this.#maxConcurrent = options.maxConcurrent;
    this.#maxInFlight = options.maxInFlight;
    this.#maxStreams = options.maxStreams;
    this.#maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * Admits one call of `key` or says which limit refuses it. A refused call takes no token, so a
   * caller that waits `retryAfterMs` is admitted (unless it spent the token elsewhere meanwhile).
   */
  admit(key: string, kind: 'unary' | 'stream'): Permit | Refusal {
    const now = this.#now();
    // Sweep before touching `key`: a state it drops is full and idle, the same as a new one.
    this.#sweep(now);
    const s = this.#touch(key, now);
    if (kind === 'unary' ? s.inFlight >= this.#maxInFlight : s.streams >= this.#maxStreams) {
      return refusal(kind === 'unary' ? 'in-flight' : 'streams');
    }
    const tokens = this.#tokensAt(s, now);
    s.refilledAt = now;
    // Float error must neither add a millisecond to the wait nor make that wait fall short: the
    // call is admitted from 1 - TOKEN_TOLERANCE, the wait aims half the tolerance above that.
    if (tokens < 1 - TOKEN_TOLERANCE) {
      s.tokens = tokens;
      return refusal('rate', Math.ceil((1 - TOKEN_TOLERANCE / 2 - tokens) / this.#ratePerMs));
    }
    s.tokens = tokens - 1;
    if (kind === 'unary') s.inFlight++;
    else s.streams++;
    return new Permit(s, kind === 'stream', this.#maxConcurrent);
  }

  /** How many keys are tracked now (for tests and metrics). */
  get size(): number {
    return this.#keys.size;
  }

  #tokensAt(s: KeyState, now: number): number {
    return Math.min(this.#burst, s.tokens + (now - s.refilledAt) * this.#ratePerMs);
  }

  /** The key's state, moved to the most-recently-used end; a new key starts with a full bucket. */
  #touch(key: string, now: number): KeyState {
    const keys = this.#keys;
    let s = keys.get(key);
    if (s) {
      keys.delete(key);
    } else {
      s = new KeyState(this.#burst, now);
      // Over the bound (a caller inventing ids faster than they go idle): forget the oldest key.
      // A busy one forgotten this way keeps working through its permits; only its new calls
      // start from fresh limits.
      if (keys.size >= this.#maxKeys) keys.delete(keys.keys().next().value!);
    }
    keys.set(key, s);
    return s;
  }

  /** Drops the oldest keys once idle and refilled; moves busy ones to the back for a later look. */
  #sweep(now: number): void {
    const keys = this.#keys;
    for (let i = 0; i < SWEEP_PER_CALL && keys.size > 0; i++) {
      const oldest = keys.entries().next().value!;
      const [key, s] = oldest;
      if (s.inFlight > 0 || s.streams > 0) {
        keys.delete(key);
        keys.set(key, s);
      } else if (this.#tokensAt(s, now) >= this.#burst) {
        keys.delete(key);
      } else {
        // The oldest idle key is not refilled yet, so no younger idle one is either.
        return;
      }
    }
  }
}

function refusal(limit: LimitKind, retryAfterMs?: number): Refusal {
  const wait = retryAfterMs ?? (limit === 'in-flight' ? IN_FLIGHT_RETRY_MS : STREAMS_RETRY_MS);
  return { admitted: false, limit, retryAfterMs: Math.max(1, wait) };
}
