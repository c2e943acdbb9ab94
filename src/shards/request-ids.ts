import { isShardgateError } from '../core/errors.js';
import type { Database } from '../pg/database.js';
import { ensureClientSchema, quoteSchema } from './client-schema.js';

/**
 * Runs a keyed create (one that uses `<schema>.request_ids`, client migration v2). Existing
 * schemas are migrated in the background at start-up, so a keyed create may reach a schema that
 * predates the table: Postgres then fails 42P01, which reads as a stale placement. In that case
 * only — the schema is there, the table is not — the schema is upgraded now (under the same
 * per-schema lock as every migration, never recreating a schema a move dropped) and the create
 * runs again; `onUpgraded` gets the new version. Costs nothing on the way that works.
 */
export async function withRequestIds<T>(
  db: Database,
  schema: string,
  run: () => Promise<T>,
  onUpgraded: (version: number) => void,
  signal?: AbortSignal,
): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (!isShardgateError(err) || err.reason !== 'placement-stale') throw err;
    if (!(await lacksRequestIds(db, schema, signal))) throw err;
    const version = await ensureClientSchema(db, schema, { signal, createMissing: false });
    if (version === 0) throw err;
    onUpgraded(version);
    return run();
  }
}

/** True when the client schema exists (it has schema_migrations) but has no request_ids yet. */
async function lacksRequestIds(
  db: Database,
  schema: string,
  signal?: AbortSignal,
): Promise<boolean> {
  const ident = quoteSchema(schema);
  const res = await db.query<{ lacks: boolean }>(
    `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NULL AS lacks`,
    [`${ident}.schema_migrations`, `${ident}.request_ids`],
    signal,
  );
  return res.rows[0]?.lacks === true;
}
