import type { TokenRecord } from '../catalog/token-store.js';
import { isShardgateError, ShardgateError } from '../core/errors.js';
import { anonymousIdentity, bootstrapIdentity, type Identity } from './identity.js';
import { parseScope } from './scope.js';
import { digestsEqual, hashSecret, MAX_SECRET_LENGTH, tokenIdOf } from './token-secret.js';

/** How a TokenVerifier reaches the catalog and how much it may remember. */
export interface TokenVerifierOptions {
  /** Reads one token row by id (a primary-key lookup in the catalog). */
  loadToken: (id: string) => Promise<TokenRecord | undefined>;
  /** False while the catalog change feed is down: then every call re-reads its token. */
  cacheTrusted: () => boolean;
  /** `auth.adminToken`: accepted as actor `bootstrap` with the admin scope. */
  bootstrapSecret?: string | undefined;
  /** Clock for expiry checks (ms since the epoch); tests pass their own. */
  now?: () => number;
  /** Upper bound on remembered tokens (verified, revoked or expired); oldest dropped first. */
  maxEntries?: number;
  /** Upper bound on remembered ids with no catalog row; oldest dropped first. */
  maxUnknownEntries?: number;
  /** Catalog lookups in flight at once; a miss beyond this fails UNAVAILABLE instead of queueing. */
  maxConcurrentLookups?: number;
}

/** A token row reduced to what each call checks; built once per cache fill. */
interface CachedToken {
  readonly secretSha256: Buffer;
  /** Undefined when the stored scope no longer parses (the row was edited by hand). */
  readonly identity: Identity | undefined;
  readonly expiresAtMs: number | undefined;
  readonly revoked: boolean;
}

/** Same message for an unknown id and a wrong secret: a caller cannot probe which ids exist. */
const invalidToken = (): ShardgateError =>
  new ShardgateError(
    'unauthenticated',
    'the bearer token is not valid; send `authorization: Bearer <secret>` with a secret from `shardctl tokens create`',
  );

/**
 * Verifies bearer secrets against the catalog's token table without a catalog read per call: a
 * verified (or revoked, or expired) token's row is remembered by id while the change feed is up,
 * and dropped when the feed reports the row changed (`forget`) or may have missed a change
 * (`clear`). Expiry is checked on every call. Ids without a row are remembered too, in a bounded
 * set, so replaying a guessed id does not reach the catalog again and cannot grow memory.
 */
export class TokenVerifier {
  readonly #options: Required<Omit<TokenVerifierOptions, 'bootstrapSecret'>>;
  readonly #bootstrapSha256: Buffer | undefined;
  readonly #tokens = new Map<string, CachedToken>();
  readonly #unknown = new Set<string>();
  readonly #inFlight = new Map<string, Promise<CachedToken | undefined>>();
  /** Bumped by every forget/clear: a load that raced one must not be cached. */
  #generation = 0;
  /** Long calls (server streams) to end when their token is revoked, by token id. */
  readonly #watchers = new Map<string, Set<(reason: string) => void>>();

  constructor(options: TokenVerifierOptions) {
    this.#options = {
      now: Date.now,
      maxEntries: 10_000,
      maxUnknownEntries: 10_000,
      maxConcurrentLookups: 64,
      ...options,
    };
    this.#bootstrapSha256 = options.bootstrapSecret
      ? hashSecret(options.bootstrapSecret)
      : undefined;
  }

  /**
   * The identity a bearer secret stands for. UNAUTHENTICATED for an unknown, wrong, revoked or
   * expired secret (never echoing it); UNAVAILABLE when the catalog cannot be read.
   */
  async verify(secret: string): Promise<Identity> {
    if (secret.length > MAX_SECRET_LENGTH) throw invalidToken();
    const digest = hashSecret(secret);
    if (this.#bootstrapSha256 && digestsEqual(digest, this.#bootstrapSha256)) {
      return bootstrapIdentity;
    }
    const id = tokenIdOf(secret);
    if (id === undefined) throw invalidToken();
    const token = await this.#lookup(id);
    if (!token || !digestsEqual(digest, token.secretSha256)) throw invalidToken();
    if (token.revoked) {
      throw new ShardgateError(
        'unauthenticated',
        `token ${id} has been revoked; ask an admin for a new one`,
      );
    }
    if (token.expiresAtMs !== undefined && token.expiresAtMs <= this.#options.now()) {
      throw new ShardgateError(
        'unauthenticated',
        `token ${id} has expired; ask an admin for a new one`,
      );
    }
    if (!token.identity) {
      throw new ShardgateError(
        'unauthenticated',
        `token ${id} has a scope this gateway does not understand; ask an admin for a new one`,
      );
    }
    return token.identity;
  }

  /** Drops one token (its row changed: revoked, deleted or edited). */
  forget(tokenId: string): void {
    this.#generation++;
    this.#tokens.delete(tokenId);
    this.#unknown.delete(tokenId);
    this.#inFlight.delete(tokenId);
    this.#recheck(tokenId);
  }

  /** Drops everything (the change feed reconnected and may have missed events). */
  clear(): void {
    this.#generation++;
    this.#tokens.clear();
    this.#unknown.clear();
    this.#inFlight.clear();
    for (const tokenId of this.#watchers.keys()) this.#recheck(tokenId);
  }

  /**
   * Calls `onInvalid` once when the token behind `identity` stops being valid while a long call
   * (a server stream) runs: at its expiry, or when its row changes and reads back revoked, gone or
   * expired. A call verified once must not outlive its token. Returns the unsubscribe function.
   * Identities without a token row (anonymous, bootstrap) never change.
   */
  watch(identity: Identity, onInvalid: (reason: string) => void): () => void {
    const tokenId = identity.actor;
    if (identity === anonymousIdentity || identity === bootstrapIdentity) return () => undefined;
    let done = false;
    const fire = (reason: string): void => {
      if (done) return;
      done = true;
      stop();
      onInvalid(reason);
    };
    const expiresIn =
      identity.expiresAtMs === undefined ? undefined : identity.expiresAtMs - this.#options.now();
    const timer =
      expiresIn === undefined
        ? undefined
        : setTimeout(() => fire(`token ${tokenId} has expired`), Math.max(0, expiresIn));
    timer?.unref();
    const watchers = this.#watchers.get(tokenId) ?? new Set();
    this.#watchers.set(tokenId, watchers);
    watchers.add(fire);
    const stop = (): void => {
      done = true;
      if (timer) clearTimeout(timer);
      watchers.delete(fire);
      if (watchers.size === 0 && this.#watchers.get(tokenId) === watchers) {
        this.#watchers.delete(tokenId);
      }
    };
    return stop;
  }

  /** Re-reads a watched token's row and ends the calls it no longer allows. */
  #recheck(tokenId: string): void {
    const watchers = this.#watchers.get(tokenId);
    if (!watchers || watchers.size === 0) return;
    this.#options.loadToken(tokenId).then(
      (row) => {
        const reason = !row
          ? `token ${tokenId} no longer exists`
          : row.revokedAt !== null
            ? `token ${tokenId} has been revoked`
            : row.expiresAt !== null && row.expiresAt.getTime() <= this.#options.now()
              ? `token ${tokenId} has expired`
              : undefined;
        if (reason) for (const fire of [...watchers]) fire(reason);
      },
      // The catalog cannot be read: the next change or resync checks again.
      () => undefined,
    );
  }

  /** Remembered tokens and unknown ids, for tests and metrics. */
  get size(): { tokens: number; unknown: number } {
    return { tokens: this.#tokens.size, unknown: this.#unknown.size };
  }

  async #lookup(id: string): Promise<CachedToken | undefined> {
    if (this.#options.cacheTrusted()) {
      const hit = this.#tokens.get(id);
      if (hit) return hit;
      if (this.#unknown.has(id)) return undefined;
    }
    // Concurrent calls with the same token share one catalog read.
    const pending = this.#inFlight.get(id);
    if (pending) return pending;
    if (this.#inFlight.size >= this.#options.maxConcurrentLookups) {
      throw new ShardgateError(
        'unavailable',
        'too many bearer tokens are being verified at once; retry shortly',
      );
    }
    const load = this.#load(id);
    this.#inFlight.set(id, load);
    try {
      return await load;
    } finally {
      if (this.#inFlight.get(id) === load) this.#inFlight.delete(id);
    }
  }

  async #load(id: string): Promise<CachedToken | undefined> {
    const generation = this.#generation;
    let row: TokenRecord | undefined;
    try {
      row = await this.#options.loadToken(id);
    } catch (err) {
      if (isShardgateError(err)) throw err;
      throw new ShardgateError('unavailable', 'could not verify the bearer token; retry', {
        cause: err,
      });
    }
    const token = row && toCached(row);
    // A forget/clear that raced with the read may describe a newer row: do not cache then.
    if (generation === this.#generation && this.#options.cacheTrusted()) {
      if (token) remember(this.#tokens, id, token, this.#options.maxEntries);
      else remember(this.#unknown, id, undefined, this.#options.maxUnknownEntries);
    }
    return token;
  }
}

function toCached(row: TokenRecord): CachedToken {
  let identity: Identity | undefined;
  try {
    identity = Object.freeze({
      actor: row.id,
      actorName: row.displayName,
      scope: parseScope(row.scope),
      expiresAtMs: row.expiresAt?.getTime(),
    });
  } catch {
    identity = undefined;
  }
  return {
    secretSha256: row.secretSha256,
    identity,
    expiresAtMs: row.expiresAt?.getTime(),
    revoked: row.revokedAt !== null,
  };
}

/** Adds to an insertion-ordered Map or Set, dropping the oldest entry when full. */
function remember<V>(
  store: Map<string, V> | Set<string>,
  key: string,
  value: V,
  maxEntries: number,
): void {
  if (store.size >= maxEntries) {
    const oldest = store.keys().next();
    if (!oldest.done) store.delete(oldest.value);
  }
  if (store instanceof Map) store.set(key, value);
  else store.add(key);
}
