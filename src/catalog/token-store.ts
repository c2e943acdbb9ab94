import type { Database } from '../pg/database.js';

/** A bearer token's catalog row. The secret itself is never stored, only its SHA-256. */
export interface TokenRecord {
  readonly id: string;
  readonly secretSha256: Buffer;
  readonly displayName: string;
  /** `admin`, `service` or `client:<client_id>` (parsed by src/auth). */
  readonly scope: string;
  /** The creating token's id, or `bootstrap` / `anonymous`. */
  readonly createdBy: string;
  readonly createdAt: Date;
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
}

/** Filters and keyset position for listing tokens newest first. */
export interface ListTokensQuery {
  readonly showRevoked: boolean;
  /** The last token of the previous page. */
  readonly before?: { readonly createdAt: Date; readonly id: string };
  readonly limit: number;
}

const COLUMNS = `id, secret_sha256 AS "secretSha256", display_name AS "displayName", scope,
  created_by AS "createdBy", created_at AS "createdAt", expires_at AS "expiresAt",
  revoked_at AS "revokedAt"`;

/**
 * Bearer tokens in the catalog (`shardgate.tokens`). An UPDATE or DELETE of a row notifies every
 * gateway (catalog event `token`), which drops the token from its verification cache.
 */
export class TokenStore {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  async create(
    t: {
      id: string;
      secretSha256: Buffer;
      displayName: string;
      scope: string;
      createdBy: string;
      expiresAt: Date | null;
    },
    signal?: AbortSignal,
  ): Promise<TokenRecord> {
    const res = await this.#db.query<TokenRecord>(
      `INSERT INTO shardgate.tokens (id, secret_sha256, display_name, scope, created_by, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
      [t.id, t.secretSha256, t.displayName, t.scope, t.createdBy, t.expiresAt],
      signal,
    );
    return res.rows[0]!;
  }

  async get(id: string, signal?: AbortSignal): Promise<TokenRecord | undefined> {
    const res = await this.#db.query<TokenRecord>(
      `SELECT ${COLUMNS} FROM shardgate.tokens WHERE id = $1`,
      [id],
      signal,
    );
    return res.rows[0];
  }

  /** A page of tokens, newest first (created_at, then id, both descending). */
  async list(q: ListTokensQuery, signal?: AbortSignal): Promise<TokenRecord[]> {
    const res = await this.#db.query<TokenRecord>(
      `SELECT ${COLUMNS} FROM shardgate.tokens
       WHERE ($1 OR revoked_at IS NULL)
         AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::text))
       ORDER BY created_at DESC, id DESC LIMIT $4`,
      [q.showRevoked, q.before?.createdAt ?? null, q.before?.id ?? null, q.limit],
      signal,
    );
    return res.rows;
  }

  /**
   * Marks a token revoked and returns it; an already revoked token is returned unchanged (its
   * revoked_at stays the first revocation's). Undefined when there is no such token.
   */
  async revoke(id: string, signal?: AbortSignal): Promise<TokenRecord | undefined> {
    const res = await this.#db.query<TokenRecord>(
      `UPDATE shardgate.tokens SET revoked_at = date_trunc('milliseconds', now())
       WHERE id = $1 AND revoked_at IS NULL RETURNING ${COLUMNS}`,
      [id],
      signal,
    );
    return res.rows[0] ?? (await this.get(id, signal));
  }
}
