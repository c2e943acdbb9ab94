import { createHash } from 'node:crypto';
import { ShardgateError } from '../core/errors.js';
import type { Database } from './database.js';

/**
 * AIP-155 idempotency keys for creates. A keyed create claims its request_id in a key table and
 * inserts its rows in ONE statement (so one round trip, and atomic without a transaction): the
 * rows are inserted only if the claim was. A retry finds the claim and re-reads the rows it
 * names; a concurrent twin waits on the key's unique index and then re-reads. Key tables:
 * `request_id uuid` (plus `caller text` where callers share the table), `method text`,
 * `request_sha256 bytea`, `result_ids uuid[]`, `created_at timestamptz`.
 */

/** A request_id is remembered at least this long; older ones are pruned a few at a time. */
export const REQUEST_ID_RETENTION_DAYS = 7;
/** Most expired keys one create deletes (an index range scan on created_at). */
const PRUNE_BATCH = 200;

/** A create's idempotency key and the fingerprint of what the create asks for. */
export interface RequestKey {
  /** A lowercase UUID. */
  readonly requestId: string;
  /** The RPC, e.g. `CreateAppointment`: a key reused for another method is a different request. */
  readonly method: string;
  /** SHA-256 of the canonical JSON of [method, input]. */
  readonly sha256: Buffer;
  /** Whose key it is where one key table serves many callers; undefined in a client schema. */
  readonly caller?: string;
}

/** The key of a create; `input` is its validated request minus request_id, hashed canonically. */
export function requestKey(
  requestId: string,
  method: string,
  input: unknown,
  caller?: string,
): RequestKey {
  const sha256 = createHash('sha256')
    .update(canonicalJson([method, input]))
    .digest();
  return { requestId, method, sha256, ...(caller === undefined ? {} : { caller }) };
}

/**
 * JSON with object keys sorted at every level and Dates as ISO strings: equal values give equal
 * text whatever the order their fields arrived in (a protobuf Struct's map has no order).
 */
export function canonicalJson(value: unknown): string {
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    const fields = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`);
    return `{${fields.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** One keyed multi-row insert: where the rows go and the INSERT that puts them there. */
export interface KeyedInsert {
  /** The quoted key table, e.g. `"client_acme".request_ids`. */
  readonly keysTable: string;
  /** The quoted table the rows go to; its primary key is `id uuid`. */
  readonly table: string;
  /** The select list of a row, unqualified, as the INSERT's RETURNING uses it. */
  readonly columns: string;
  /** The new rows' ids, made by the caller, in request order. */
  readonly ids: readonly string[];
  /** `INSERT … SELECT … WHERE ${guard} RETURNING ${columns}`; it uses only $1..$values.length. */
  readonly insert: (guard: string) => string;
  readonly values: readonly unknown[];
}

type Marked<R> = R & {
  outcome: 'created' | 'prior';
  priorMethod: string | null;
  priorSha256: Buffer | null;
  priorOrder: number | null;
};

/**
 * A create's INSERT of `s.ids` rows, in request order: with a key, through insertOnce (one
 * effect per request_id); without one, the plain INSERT and nothing else on the hot path.
 */
export async function insertRows<R extends { id: string }>(
  db: Database,
  key: RequestKey | undefined,
  s: KeyedInsert,
  signal?: AbortSignal,
): Promise<R[]> {
  if (key) return insertOnce<R>(db, key, s, signal);
  const res = await db.query<R>(s.insert('true'), s.values as unknown[], signal);
  return inOrder(s.ids, res.rows);
}

/**
 * Inserts the rows once per key and returns them in request order: the new rows, or on a retry
 * the rows the first call made, read now (same ids and created_at; a row changed since, such as
 * an updated appointment, shows its current fields). The same key with another request fails
 * FAILED_PRECONDITION and writes nothing.
 */
export async function insertOnce<R extends { id: string }>(
  db: Database,
  key: RequestKey,
  s: KeyedInsert,
  signal?: AbortSignal,
): Promise<R[]> {
  const { text, values } = keyedStatement(key, s);
  const rows = (await db.query<Marked<R>>(text, values, signal)).rows;
  if (rows[0]?.outcome === 'created') return inRequestOrder(s.ids, rows);
  if (rows.length > 0) return replay(key, rows);
  // A twin claimed the key after this statement's snapshot was taken and has committed since
  // (ON CONFLICT waited for it): a new statement sees its claim.
  const scoped = key.caller !== undefined;
  const again = await db.query<Marked<R>>(
    `WITH prior AS (${priorSelect(s.keysTable, scoped, '$1', '$2')}) ${replaySelect(s)}`,
    scoped ? [key.requestId, key.caller] : [key.requestId],
    signal,
  );
  if (again.rows.length > 0) return replay(key, again.rows);
  throw new ShardgateError(
    'aborted',
    `a concurrent call with request_id ${key.requestId} did not finish; retry`,
  );
}

/**
 * prior: the key's claim if committed before this statement began. claim: the key, unless prior
 * has it; ON CONFLICT waits for a twin's claim in flight and then does nothing. created: the
 * rows, only if claim inserted the key. The answer: created rows, or the rows prior names.
 */
function keyedStatement(key: RequestKey, s: KeyedInsert): { text: string; values: unknown[] } {
  const at = (i: number): string => `$${s.values.length + i}`;
  const scoped = key.caller !== undefined;
  const keyCols = scoped ? 'caller, request_id' : 'request_id';
  const keyVals = scoped ? `${at(5)}::text, ${at(1)}::uuid` : `${at(1)}::uuid`;
  const ctes = [
    `prior AS (${priorSelect(s.keysTable, scoped, at(1), at(5))})`,
    `claim AS (
      INSERT INTO ${s.keysTable} (${keyCols}, method, request_sha256, result_ids)
      SELECT ${keyVals}, ${at(2)}::text, ${at(3)}::bytea, ${at(4)}::uuid[]
      WHERE NOT EXISTS (SELECT 1 FROM prior)
      ON CONFLICT (${keyCols}) DO NOTHING RETURNING 1)`,
    `created AS (${s.insert('EXISTS (SELECT 1 FROM claim)')})`,
  ];
  if (prunes(key)) ctes.push(pruneCte(s.keysTable, keyCols));
  const text = `WITH ${ctes.join(',\n')}
    SELECT 'created' AS "outcome", NULL::text AS "priorMethod", NULL::bytea AS "priorSha256",
           NULL::int AS "priorOrder", created.* FROM created
    UNION ALL
    ${replaySelect(s)}`;
  const values = [...s.values, key.requestId, key.method, key.sha256, s.ids];
  if (scoped) values.push(key.caller);
  return { text, values };
}

function priorSelect(
  keysTable: string,
  scoped: boolean,
  idParam: string,
  callerParam: string,
): string {
  return `SELECT method, request_sha256, result_ids FROM ${keysTable}
    WHERE request_id = ${idParam}::uuid${scoped ? ` AND caller = ${callerParam}::text` : ''}`;
}

/** The rows a prior claim names, in the order it made them; a missing row has a null id. */
function replaySelect(s: KeyedInsert): string {
  return `SELECT 'prior' AS "outcome", p.method AS "priorMethod", p.request_sha256 AS "priorSha256",
           r.* FROM prior p
    CROSS JOIN LATERAL (
      SELECT u.n::int AS "priorOrder", ${s.columns}
      FROM unnest(p.result_ids) WITH ORDINALITY AS u(uid, n)
      LEFT JOIN ${s.table} AS t ON t.id = u.uid) r`;
}

/**
 * Expired keys go a batch at a time, piggybacked on the keyed creates whose (random) request_id
 * ends in `0` — one in 16, and no round trip of its own. SKIP LOCKED keeps concurrent prunes from
 * waiting on each other; the created_at index keeps a prune with nothing to do cheap.
 */
function pruneCte(keysTable: string, keyCols: string): string {
  return `pruned AS (DELETE FROM ${keysTable} WHERE (${keyCols}) IN (
      SELECT ${keyCols} FROM ${keysTable}
      WHERE created_at < now() - make_interval(days => ${REQUEST_ID_RETENTION_DAYS})
      ORDER BY created_at LIMIT ${PRUNE_BATCH} FOR UPDATE SKIP LOCKED))`;
}

function prunes(key: RequestKey): boolean {
  return key.requestId.endsWith('0');
}

function replay<R extends { id: string }>(key: RequestKey, rows: Marked<R>[]): R[] {
  const first = rows[0]!;
  if (first.priorMethod !== key.method || !first.priorSha256?.equals(key.sha256)) {
    const other = first.priorMethod === key.method ? 'a different request' : first.priorMethod;
    throw new ShardgateError(
      'failed-precondition',
      `request_id ${key.requestId} was already used for ${other}; ` +
        'a retry must repeat the request unchanged, a new request needs a new request_id',
    );
  }
  if (rows.some((r) => r.id === null)) {
    throw new ShardgateError(
      'failed-precondition',
      `what the ${key.method} call with request_id ${key.requestId} created no longer exists; ` +
        'use a new request_id',
    );
  }
  return rows.sort((a, b) => a.priorOrder! - b.priorOrder!).map(unmark);
}

function inRequestOrder<R extends { id: string }>(ids: readonly string[], rows: Marked<R>[]): R[] {
  return inOrder(ids, rows).map(unmark);
}

/** Rows returned by a multi-row INSERT, put back in the order of the ids the caller generated. */
export function inOrder<R extends { id: string }>(ids: readonly string[], rows: readonly R[]): R[] {
  const byId = new Map(rows.map((r) => [r.id, r]));
  return ids.map((id) => {
    const row = byId.get(id);
    if (!row) throw new Error(`the insert returned no row for ${id}`);
    return row;
  });
}

function unmark<R>(row: Marked<R>): R {
  const { outcome: _o, priorMethod: _m, priorSha256: _s, priorOrder: _n, ...rest } = row;
  return rest as R;
}
