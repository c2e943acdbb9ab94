import { ShardgateError } from '../core/errors.js';
import type { ClientId, ShardName } from '../core/ids.js';
import type { Database } from '../pg/database.js';

export const movePhases = [
  'pending',
  'preparing',
  'copying',
  'catching_up',
  'cutover',
  'flipped',
  'cleaning',
  'done',
] as const;
export type MovePhase = (typeof movePhases)[number];
export const moveStates = ['running', 'succeeded', 'failed', 'cancelled'] as const;
export type MoveState = (typeof moveStates)[number];
export const moveReasons = ['ring', 'drain', 'manual'] as const;
export type MoveReason = (typeof moveReasons)[number];

/** Phases from the flip on: the client lives on the target, and the move can only be finished. */
export const AFTER_FLIP: readonly MovePhase[] = ['flipped', 'cleaning', 'done'];

/** A move as journaled in the catalog; the journal row is saved before each step runs. */
export interface MoveRecord {
  id: string;
  clientId: ClientId;
  sourceShard: ShardName;
  targetShard: ShardName;
  reason: MoveReason;
  phase: MovePhase;
  state: MoveState;
  rowsCopied: number;
  rowsTotal: number;
  bytesTotal: number;
  writePauseMs: number | null;
  error: string | null;
  cancelRequested: boolean;
  createdAt: Date;
  updatedAt: Date;
  finishedAt: Date | null;
}

const COLUMNS = `id, client_id AS "clientId", source_shard AS "sourceShard", target_shard AS "targetShard",
  reason, phase, state, rows_copied::float8 AS "rowsCopied", rows_total::float8 AS "rowsTotal",
  bytes_total::float8 AS "bytesTotal", write_pause_ms::float8 AS "writePauseMs", error,
  cancel_requested AS "cancelRequested", created_at AS "createdAt", updated_at AS "updatedAt",
  finished_at AS "finishedAt"`;

/** The fields a step may change. */
export type MoveUpdate = Partial<
  Pick<
    MoveRecord,
    'phase' | 'state' | 'rowsCopied' | 'rowsTotal' | 'bytesTotal' | 'writePauseMs' | 'error'
  >
>;

const UPDATE_COLUMNS: Record<keyof MoveUpdate, string> = {
  phase: 'phase',
  state: 'state',
  rowsCopied: 'rows_copied',
  rowsTotal: 'rows_total',
  bytesTotal: 'bytes_total',
  writePauseMs: 'write_pause_ms',
  error: 'error',
};

/** The move journal (`shardgate.moves`) and the placement flip, in the catalog database. */
export class MoveJournal {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /**
   * Journals a new move under an id the caller chose (and already holds the lock of, so no
   * recovering process mistakes the new move for an orphan); FAILED_PRECONDITION when the client
   * already has a running one.
   *
   * `checked` holds the URLs the caller's checks (checkMoveTarget) ran against. The journal row
   * is written in the same transaction that confirms, with both shard rows locked FOR SHARE, that
   * the client still lives on `source`, the target is still active, and neither shard's URL has
   * changed since: a SetShardDsn or RemoveShard (which lock the row FOR UPDATE and refuse while
   * a move runs) either commits before, and the move is refused here, or waits for it, and is
   * refused there. Without it a URL changed between the checks and the journal row could point
   * the target at the source's database, whose live schema preparing the target would drop.
   */
  async create(m: {
    id: string;
    clientId: ClientId;
    source: ShardName;
    target: ShardName;
    reason: MoveReason;
    checked: { sourceUrl: string; targetUrl: string };
  }): Promise<MoveRecord> {
    try {
      return await this.#db.transaction(undefined, async (tx) => {
        const shards = await tx.query<{ name: string; url: string; state: string }>(
          `SELECT name, url, state FROM shardgate.shards WHERE name IN ($1, $2)
           ORDER BY name FOR SHARE`,
          [m.source, m.target],
        );
        const source = shards.rows.find((r) => r.name === m.source);
        const target = shards.rows.find((r) => r.name === m.target);
        if (!target) throw new ShardgateError('not-found', `shard '${m.target}' does not exist`);
        if (target.state !== 'active') {
          throw new ShardgateError(
            'failed-precondition',
            `shard '${m.target}' is ${target.state}; pick another`,
          );
        }
        if (source?.url !== m.checked.sourceUrl || target.url !== m.checked.targetUrl) {
          throw new ShardgateError(
            'aborted',
            `the connection URL of shard '${m.source}' or '${m.target}' changed while the move ` +
              'was starting; retry',
          );
        }
        const placed = await tx.query<{ shard: string }>(
          'SELECT shard FROM shardgate.tenants WHERE client_id = $1 FOR SHARE',
          [m.clientId],
        );
        if (placed.rows[0]?.shard !== m.source) {
          throw new ShardgateError(
            'aborted',
            `client '${m.clientId}' no longer lives on '${m.source}'; retry`,
          );
        }
        const res = await tx.query<MoveRecord>(
          `INSERT INTO shardgate.moves (id, client_id, source_shard, target_shard, reason, phase, state)
           VALUES ($1, $2, $3, $4, $5, 'pending', 'running') RETURNING ${COLUMNS}`,
          [m.id, m.clientId, m.source, m.target, m.reason],
        );
        return res.rows[0]!;
      });
    } catch (err) {
      if (err instanceof ShardgateError && err.code === 'already-exists') {
        throw new ShardgateError(
          'failed-precondition',
          `client '${m.clientId}' is already being moved`,
        );
      }
      throw err;
    }
  }

  async get(id: string, signal?: AbortSignal): Promise<MoveRecord | undefined> {
    const res = await this.#db.query<MoveRecord>(
      `SELECT ${COLUMNS} FROM shardgate.moves WHERE id = $1`,
      [id],
      signal,
    );
    return res.rows[0];
  }

  async update(id: string, u: MoveUpdate): Promise<MoveRecord> {
    const sets: string[] = [];
    const values: unknown[] = [id];
    for (const [key, column] of Object.entries(UPDATE_COLUMNS) as [keyof MoveUpdate, string][]) {
      if (u[key] === undefined) continue;
      values.push(u[key]);
      sets.push(`${column} = $${values.length}`);
    }
    if (u.state && u.state !== 'running')
      sets.push(`finished_at = date_trunc('milliseconds', now())`);
    sets.push(`updated_at = date_trunc('milliseconds', now())`);
    const res = await this.#db.query<MoveRecord>(
      `UPDATE shardgate.moves SET ${sets.join(', ')} WHERE id = $1 RETURNING ${COLUMNS}`,
      values,
    );
    if (!res.rows[0]) throw new ShardgateError('not-found', `move ${id} does not exist`);
    return res.rows[0];
  }

  async requestCancel(id: string, signal?: AbortSignal): Promise<MoveRecord | undefined> {
    const res = await this.#db.query<MoveRecord>(
      `UPDATE shardgate.moves SET cancel_requested = true, updated_at = date_trunc('milliseconds', now())
       WHERE id = $1 RETURNING ${COLUMNS}`,
      [id],
      signal,
    );
    return res.rows[0];
  }

  async list(
    q: {
      clientId?: string;
      state?: MoveState;
      before?: { createdAt: Date; id: string };
      limit: number;
    },
    signal?: AbortSignal,
  ): Promise<MoveRecord[]> {
    const res = await this.#db.query<MoveRecord>(
      `SELECT ${COLUMNS} FROM shardgate.moves
       WHERE ($1::text IS NULL OR client_id = $1) AND ($2::text IS NULL OR state = $2)
         AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
       ORDER BY created_at DESC, id DESC LIMIT $5`,
      [
        q.clientId ?? null,
        q.state ?? null,
        q.before?.createdAt ?? null,
        q.before?.id ?? null,
        q.limit,
      ],
      signal,
    );
    return res.rows;
  }

  async listRunning(): Promise<MoveRecord[]> {
    const res = await this.#db.query<MoveRecord>(
      `SELECT ${COLUMNS} FROM shardgate.moves WHERE state = 'running' ORDER BY created_at`,
    );
    return res.rows;
  }

  /**
   * The flip: one catalog transaction records the phase, points the client at the target and
   * resumes its writes. Refused (false, nothing changed) once a rollback or a cancel was asked for,
   * or when the client is no longer on the source. The move row is updated first: its row lock
   * orders the flip against `beginRollback`, so a move is either flipped or rolled back, never both.
   */
  async flip(move: MoveRecord, writePauseMs: number): Promise<boolean> {
    return this.#db
      .transaction(undefined, async (tx) => {
        const journaled = await tx.query(
          `UPDATE shardgate.moves SET phase = 'flipped', write_pause_ms = $2,
           updated_at = date_trunc('milliseconds', now())
         WHERE id = $1 AND state = 'running' AND phase = 'cutover' AND NOT cancel_requested`,
          [move.id, writePauseMs],
        );
        if (journaled.rowCount !== 1) return false;
        const res = await tx.query(
          `UPDATE shardgate.tenants SET shard = $3, writes_paused = false, pinned = $4,
           placement_epoch = placement_epoch + 1,
           updated_at = date_trunc('milliseconds', now())
         WHERE client_id = $1 AND shard = $2`,
          [move.clientId, move.sourceShard, move.targetShard, move.reason === 'manual'],
        );
        if (res.rowCount !== 1) throw new FlipRefused();
        return true;
      })
      .catch((err: unknown) => {
        if (err instanceof FlipRefused) return false;
        throw err;
      });
  }

  /**
   * Starts a rollback: from now on the flip is refused. Returns the move as it stands, or
   * undefined when it has already flipped (it must then be finished, not rolled back).
   */
  async beginRollback(id: string): Promise<MoveRecord | undefined> {
    const res = await this.#db.query<MoveRecord>(
      `UPDATE shardgate.moves SET cancel_requested = true, updated_at = date_trunc('milliseconds', now())
       WHERE id = $1 AND phase <> ALL ($2::text[]) RETURNING ${COLUMNS}`,
      [id, AFTER_FLIP],
    );
    return res.rows[0];
  }

  /** A session-level advisory lock on the catalog marks the one process running a move. */
  lockKey(id: string): string {
    return `shardgate:move:${id}`;
  }
}

/** Rolls the flip transaction back when the client is no longer on the source. */
class FlipRefused extends Error {}
