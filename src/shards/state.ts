import { ShardgateError, versionConflict } from '../core/errors.js';
import type { Database } from '../pg/database.js';
import type { PointReadSpec } from '../pg/point-reads.js';

/** A client's state document and its version. */
export interface StateRecord {
  document: Record<string, unknown>;
  version: number;
  updatedAt: Date | null;
}

interface StateRow {
  document: Record<string, unknown>;
  version: string;
  updatedAt: Date | null;
}

/** Without expected_version a patch retries this often when other writers keep winning. */
const MAX_PATCH_ATTEMPTS = 20;

const RETURNING = `RETURNING document, version, updated_at AS "updatedAt"`;

/** The state table holds one row per client schema. */
const STATE_ROW: PointReadSpec = {
  table: 'state',
  columns: `document, version, updated_at AS "updatedAt"`,
  singleRow: true,
};

/** Typed queries on `<schema>.state`; `schema` is always the quoted identifier. */
export const state = {
  /** The document; concurrent reads on the same shard share statements (Database.readSingleRow). */
  async get(db: Database, schema: string, signal?: AbortSignal): Promise<StateRecord> {
    return toRecord(await db.readSingleRow<StateRow>(STATE_ROW, schema, signal));
  },

  /**
   * Replaces the document in one statement. With `expectedVersion`, writes only if it is current;
   * otherwise ABORTED, and nothing changed.
   */
  async put(
    db: Database,
    schema: string,
    documentJson: string,
    expectedVersion: number | undefined,
    signal?: AbortSignal,
  ): Promise<StateRecord> {
    const res = await db.query<StateRow>(
      `UPDATE ${schema}.state SET document = $1::jsonb, version = version + 1,
         updated_at = date_trunc('milliseconds', now())
       WHERE $2::bigint IS NULL OR version = $2 ${RETURNING}`,
      [documentJson, expectedVersion ?? null],
      signal,
    );
    if (res.rows[0]) return toRecord(res.rows[0]);
    const current = await state.get(db, schema, signal);
    throw versionConflict(expectedVersion ?? -1, current.version);
  },

  /**
   * Applies an RFC 7386 merge patch with optimistic concurrency: read, merge, write if the version
   * did not move. With `expectedVersion` a moved version is ABORTED; without it the patch is
   * re-applied to the newer document, so concurrent patches never lose each other's keys.
   */
  async patch(
    db: Database,
    schema: string,
    patch: Record<string, unknown>,
    expectedVersion: number | undefined,
    validate: (document: Record<string, unknown>) => string,
    signal?: AbortSignal,
  ): Promise<StateRecord> {
    for (let attempt = 0; attempt < MAX_PATCH_ATTEMPTS; attempt++) {
      const current = await state.get(db, schema, signal);
      if (expectedVersion !== undefined && current.version !== expectedVersion) {
        throw versionConflict(expectedVersion, current.version);
      }
      const merged = mergePatch(current.document, patch) as Record<string, unknown>;
      const res = await db.query<StateRow>(
        `UPDATE ${schema}.state SET document = $1::jsonb, version = version + 1,
           updated_at = date_trunc('milliseconds', now())
         WHERE version = $2 ${RETURNING}`,
        [validate(merged), current.version],
        signal,
      );
      if (res.rows[0]) return toRecord(res.rows[0]);
      if (expectedVersion !== undefined) {
        throw versionConflict(expectedVersion, (await state.get(db, schema, signal)).version);
      }
    }
    throw new ShardgateError('aborted', 'the state changed too often to apply the patch; retry it');
  },
};

/**
 * RFC 7386 merge patch on plain JSON values. Copies instead of mutating, and builds objects without
 * a prototype, so no key in a document (`hasOwnProperty`, `__proto__`) can shadow a method or reach
 * a prototype. (json-merge-patch called `target.hasOwnProperty(key)` and failed on such documents.)
 */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isJsonObject(patch)) return patch;
  const result: Record<string, unknown> = Object.create(null);
  if (isJsonObject(target)) Object.assign(result, target);
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function toRecord(row: StateRow | undefined): StateRecord {
  if (!row) throw new ShardgateError('internal', 'the client schema has no state row');
  return { document: row.document, version: Number(row.version), updatedAt: row.updatedAt };
}
