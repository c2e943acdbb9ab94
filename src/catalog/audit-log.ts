import type { Database } from '../pg/database.js';

/** What an admin action is recorded with when it starts: who, what, on what, and the request. */
export interface AuditEventStart {
  /** The token id, or `bootstrap` / `anonymous`. */
  readonly actor: string;
  readonly actorName: string;
  /** The full RPC name, e.g. `shardgate.v1.AdminService/AddShard`. */
  readonly method: string;
  /** The shard, client, move or token acted on; empty when there is none. */
  readonly target: string;
  /** The request as JSON, with secrets already removed by the caller. */
  readonly requestJson: string;
  /** `OK`, a gRPC status name, or `UNKNOWN` while the action has not ended. */
  readonly outcome: string;
  readonly error: string;
}

/** How an admin action ended; `target` replaces the recorded one when only the result names it. */
export interface AuditEventEnd {
  readonly outcome: string;
  readonly error: string;
  readonly target?: string;
}

/** One row of `shardgate.audit_events`. */
export interface AuditEventRecord extends AuditEventStart {
  /** The identity column as a decimal string (bigint does not fit a JS number forever). */
  readonly id: string;
  readonly createdAt: Date;
}

const COLUMNS = `id::text AS id, created_at AS "createdAt", actor, actor_name AS "actorName", method,
  target, request::text AS "requestJson", outcome, error`;

/** Rows one purge statement deletes at most: each is its own short transaction. */
const AUDIT_PURGE_BATCH_ROWS = 5_000;

const DAY_MS = 86_400_000;

/**
 * The creation time before which events are past a retention of `retentionDays` at `now`;
 * undefined for 0, which keeps events forever (config `audit.retentionDays`).
 */
export function auditRetentionCutoff(retentionDays: number, now = new Date()): Date | undefined {
  return retentionDays === 0 ? undefined : new Date(now.getTime() - retentionDays * DAY_MS);
}

/**
 * The audit log of admin actions (`shardgate.audit_events` in the catalog). Rows are written ahead
 * of the action and completed when it ends, so an action whose gateway dies mid-way still leaves a
 * record (outcome `UNKNOWN`). Append-only apart from that one completion and the retention purge.
 */
export class AuditLog {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /** Inserts an event and returns its id. */
  async record(event: AuditEventStart, signal?: AbortSignal): Promise<string> {
    const res = await this.#db.query<{ id: string }>(
      `INSERT INTO shardgate.audit_events (actor, actor_name, method, target, request, outcome, error)
       VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) RETURNING id::text AS id`,
      [
        event.actor,
        event.actorName,
        event.method,
        event.target,
        event.requestJson,
        event.outcome,
        event.error,
      ],
      signal,
    );
    return res.rows[0]!.id;
  }

  /** Records how the action of a recorded event ended. */
  async complete(id: string, end: AuditEventEnd): Promise<void> {
    await this.#db.query(
      `UPDATE shardgate.audit_events SET outcome = $2, error = $3, target = coalesce($4, target)
       WHERE id = $1::bigint`,
      [id, end.outcome, end.error, end.target ?? null],
    );
  }

  /**
   * Events newest first, optionally by one actor and one of `methods` (full names), strictly
   * older than `beforeId` (the keyset of the previous page).
   */
  async list(
    q: { actor?: string; methods?: readonly string[]; beforeId?: string; limit: number },
    signal?: AbortSignal,
  ): Promise<AuditEventRecord[]> {
    const res = await this.#db.query<AuditEventRecord>(
      `SELECT ${COLUMNS} FROM shardgate.audit_events
       WHERE ($1::text IS NULL OR actor = $1) AND ($2::text[] IS NULL OR method = ANY ($2))
         AND ($3::bigint IS NULL OR id < $3)
       ORDER BY id DESC LIMIT $4`,
      [q.actor ?? null, q.methods ?? null, q.beforeId ?? null, q.limit],
      signal,
    );
    return res.rows;
  }

  /**
   * Deletes every event created before `cutoff`, whatever its outcome (an `UNKNOWN` one is just as
   * old), and returns how many it deleted. It deletes oldest first (found through
   * `audit_events_created_idx`) in statements of at most `batchSize` rows, each its own
   * transaction, so no lock or transaction grows with the backlog. Replicas may purge at once: each batch skips rows
   * another one has locked, so they delete disjoint rows and never wait on each other.
   */
  async purgeOlderThan(
    cutoff: Date,
    opts: { batchSize?: number; signal?: AbortSignal } = {},
  ): Promise<number> {
    const batchSize = opts.batchSize ?? AUDIT_PURGE_BATCH_ROWS;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
    }
    let deleted = 0;
    for (;;) {
      const res = await this.#db.query(
        `DELETE FROM shardgate.audit_events WHERE id IN (
           SELECT id FROM shardgate.audit_events WHERE created_at < $1
           ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
        [cutoff, batchSize],
        opts.signal,
      );
      const n = res.rowCount ?? 0;
      deleted += n;
      if (n < batchSize) return deleted;
    }
  }
}
