import pg from 'pg';
import type { Database } from '../pg/database.js';
import { clientMigrations, type ClientMigration } from './client-migrations.js';

/** The quoted identifier of a schema (validated names only reach here; quoting is still done). */
export function quoteSchema(schema: string): string {
  return pg.escapeIdentifier(schema);
}

/**
 * Creates the client's schema if absent and applies every migration it lacks, in one transaction
 * under a per-schema advisory lock: concurrent creates of one client wait for each other, and a
 * failure at any statement leaves no half-made schema behind (Postgres DDL is transactional).
 * Returns the schema's version afterwards; with `createMissing: false` an absent schema stays
 * absent (0 is returned): an on-demand upgrade must not recreate a schema a move has dropped.
 */
export async function ensureClientSchema(
  db: Database,
  schema: string,
  options: {
    signal?: AbortSignal;
    migrations?: readonly ClientMigration[];
    createMissing?: boolean;
  } = {},
): Promise<number> {
  const migrations = options.migrations ?? clientMigrations;
  const ident = quoteSchema(schema);
  return db.transaction(options.signal, async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('shardgate:' || $1))`, [schema]);
    const exists = await tx.query<{ t: string | null }>(`SELECT to_regclass($1) AS t`, [
      `${ident}.schema_migrations`,
    ]);
    let applied = new Set<number>();
    if (exists.rows[0]?.t) {
      const done = await tx.query<{ version: number }>(
        `SELECT version FROM ${ident}.schema_migrations`,
      );
      applied = new Set(done.rows.map((r) => r.version));
    } else if (options.createMissing === false) {
      return 0;
    } else {
      await tx.query(`CREATE SCHEMA ${ident}`);
      await tx.query(`CREATE TABLE ${ident}.schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    }
    let version = Math.max(0, ...applied);
    for (const m of migrations) {
      if (applied.has(m.version)) continue;
      await tx.query(m.sql(ident));
      await tx.query(`INSERT INTO ${ident}.schema_migrations (version, name) VALUES ($1, $2)`, [
        m.version,
        m.name,
      ]);
      version = Math.max(version, m.version);
    }
    return version;
  });
}
