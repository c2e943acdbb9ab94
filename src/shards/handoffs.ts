import { uuidV7 } from '../core/uuid-v7.js';
import type { Database } from '../pg/database.js';
import type { PointReadSpec } from '../pg/point-reads.js';
import { insertRows, type RequestKey } from '../pg/insert-once.js';

/** A handoff as stored in a client schema. */
export interface HandoffRecord {
  id: string;
  fromAgent: string;
  toAgent: string;
  version: number;
  summary: Record<string, unknown>;
  createdAt: Date;
}

/** A handoff listing's order: by (created_at, id), which is append order, or its reverse. */
export type HandoffOrder = 'newest-first' | 'oldest-first';

/** Filters and keyset position for listing in (created_at, id) order, newest first by default. */
export interface HandoffQuery {
  fromAgent?: string;
  toAgent?: string;
  createdAfter?: Date;
  createdBefore?: Date;
  /** Default 'newest-first'. */
  order?: HandoffOrder;
  /** The last handoff of the previous page: this page holds those after it in `order`. */
  after?: { createdAt: Date; id: string };
  limit: number;
}

const COLUMNS = `id, from_agent AS "fromAgent", to_agent AS "toAgent", version, summary,
  created_at AS "createdAt"`;

/** GetLatestHandoff's read (index handoffs_to_agent_latest_idx), coalesced per shard. */
const LATEST_TO: PointReadSpec = {
  table: 'handoffs',
  columns: COLUMNS,
  latestBy: { column: 'to_agent', order: 'created_at DESC, id DESC' },
};

/**
 * A new handoff's id: a UUIDv7 (RFC 9562, src/core/uuid-v7.ts), increasing within a process, so
 * handoffs that share a created_at millisecond (a batch, which is one statement, or back-to-back
 * appends) list and resolve "latest" in the order they were appended: listings order by
 * (created_at, id). Only handoffs appended through different gateways in the same millisecond are
 * ordered by their generators' clocks, which is fine for writes that were concurrent anyway.
 */
const handoffId = (): string => uuidV7();

/** The fields of a new handoff; the summary is serialised JSON. */
export interface NewHandoff {
  fromAgent: string;
  toAgent: string;
  version: number;
  summaryJson: string;
}

/** Typed queries on `<schema>.handoffs`; `schema` is always the quoted identifier. */
export const handoffs = {
  /**
   * With a request key, a retry returns the first call's handoff and inserts nothing, so its
   * insert trigger does not fire again and watchers see the handoff once.
   */
  async append(
    db: Database,
    schema: string,
    h: NewHandoff,
    signal?: AbortSignal,
    key?: RequestKey,
  ): Promise<HandoffRecord> {
    if (key) return (await handoffs.appendMany(db, schema, [h], signal, key))[0]!;
    const res = await db.query<HandoffRecord>(
      `INSERT INTO ${schema}.handoffs (id, from_agent, to_agent, version, summary)
       VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING ${COLUMNS}`,
      [handoffId(), h.fromAgent, h.toAgent, h.version, h.summaryJson],
      signal,
    );
    return res.rows[0]!;
  },

  /**
   * Appends many in one atomic statement; the answer keeps the request's order. With a request
   * key the claim of the key is part of that statement (src/pg/insert-once.ts).
   */
  async appendMany(
    db: Database,
    schema: string,
    items: readonly NewHandoff[],
    signal?: AbortSignal,
    key?: RequestKey,
  ): Promise<HandoffRecord[]> {
    const ids = items.map(() => handoffId());
    const insert = (guard: string): string =>
      `INSERT INTO ${schema}.handoffs (id, from_agent, to_agent, version, summary)
       SELECT u.id, u.f, u.t, u.v, u.s::jsonb
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[]) AS u(id, f, t, v, s)
       WHERE ${guard} RETURNING ${COLUMNS}`;
    const values = [
      ids,
      items.map((h) => h.fromAgent),
      items.map((h) => h.toAgent),
      items.map((h) => h.version),
      items.map((h) => h.summaryJson),
    ];
    return insertRows<HandoffRecord>(
      db,
      key,
      {
        keysTable: `${schema}.request_ids`,
        table: `${schema}.handoffs`,
        columns: COLUMNS,
        ids,
        insert,
        values,
      },
      signal,
    );
  },

  async get(
    db: Database,
    schema: string,
    id: string,
    signal?: AbortSignal,
  ): Promise<HandoffRecord | undefined> {
    const res = await db.query<HandoffRecord>(
      `SELECT ${COLUMNS} FROM ${schema}.handoffs WHERE id = $1`,
      [id],
      signal,
    );
    return res.rows[0];
  },

  async list(
    db: Database,
    schema: string,
    q: HandoffQuery,
    signal?: AbortSignal,
  ): Promise<HandoffRecord[]> {
    const { text, values } = handoffs.listQuery(schema, q);
    const res = await db.query<HandoffRecord>(text, values, signal);
    return res.rows;
  },

  /**
   * The list statement and its parameters. Exported so a test can EXPLAIN the exact text: every
   * filter is `($n IS NULL OR col = $n)`, which the planner folds away for each bound value, so
   * the agents and created_at indexes stay usable (in either order: an index scans backward).
   * Only the keyset comparison and the ORDER BY differ by order, and neither takes caller text.
   */
  listQuery(schema: string, q: HandoffQuery): { text: string; values: unknown[] } {
    const [past, direction] = q.order === 'oldest-first' ? ['>', 'ASC'] : ['<', 'DESC'];
    return {
      text: `SELECT ${COLUMNS} FROM ${schema}.handoffs
       WHERE ($1::text IS NULL OR from_agent = $1)
         AND ($2::text IS NULL OR to_agent = $2)
         AND ($3::timestamptz IS NULL OR created_at >= $3)
         AND ($4::timestamptz IS NULL OR created_at < $4)
         AND ($5::timestamptz IS NULL OR (created_at, id) ${past} ($5, $6::uuid))
       ORDER BY created_at ${direction}, id ${direction} LIMIT $7`,
      values: [
        q.fromAgent ?? null,
        q.toAgent ?? null,
        q.createdAfter ?? null,
        q.createdBefore ?? null,
        q.after?.createdAt ?? null,
        q.after?.id ?? null,
        q.limit,
      ],
    };
  },

  async latestTo(
    db: Database,
    schema: string,
    toAgent: string,
    signal?: AbortSignal,
  ): Promise<HandoffRecord | undefined> {
    return db.readLatest<HandoffRecord>(LATEST_TO, schema, toAgent, signal);
  },
};
