import pg from 'pg';
import type { Database, Queryable } from '../pg/database.js';
import { lockInOrder } from './replication.js';

/**
 * Verification of a moved schema that keeps the write pause independent of the client's size.
 * While the client is still served, a trigger on every source table records the primary key of
 * each row written (in `shardgate_moves.changed`, outside the replicated schema). Rows never
 * written since then are compared in full before the pause; inside the pause only the recorded
 * rows are compared, by primary key. Together every row is checked before the flip.
 */

const q = pg.escapeIdentifier;
const lit = pg.escapeLiteral;

interface KeyedTable {
  table: string;
  /** Single-column primary key, or undefined: such a table is compared in full in the pause. */
  pk: string | undefined;
  pkType: string | undefined;
}

/** Starts recording the keys of rows written to the schema's tables for this move. */
export async function installChangeTracking(
  source: Database,
  schema: string,
  moveId: string,
): Promise<void> {
  const tables = await keyedTables(source, schema);
  await source.transaction(undefined, async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('shardgate:move-tracking'))`);
    // Before any trigger DDL, and in the writers' order (see lockInOrder).
    if (tables.length > 0)
      await tx.query(
        lockInOrder(
          schema,
          tables.map((t) => t.table),
        ),
      );
    await tx.query('CREATE SCHEMA IF NOT EXISTS shardgate_moves');
    await tx.query(`CREATE TABLE IF NOT EXISTS shardgate_moves.changed (
      move text NOT NULL, tbl text NOT NULL, pk text NOT NULL, PRIMARY KEY (move, tbl, pk))`);
    await tx.query(`CREATE OR REPLACE FUNCTION shardgate_moves.track() RETURNS trigger
      LANGUAGE plpgsql SET search_path = pg_catalog AS $$
      BEGIN
        IF TG_OP <> 'INSERT' THEN
          INSERT INTO shardgate_moves.changed VALUES (TG_ARGV[0], TG_TABLE_NAME, to_jsonb(OLD) ->> TG_ARGV[1])
            ON CONFLICT DO NOTHING;
        END IF;
        IF TG_OP <> 'DELETE' THEN
          INSERT INTO shardgate_moves.changed VALUES (TG_ARGV[0], TG_TABLE_NAME, to_jsonb(NEW) ->> TG_ARGV[1])
            ON CONFLICT DO NOTHING;
        END IF;
        RETURN NULL;
      END $$`);
    for (const t of tables.filter((x) => x.pk)) {
      await tx.query(`DROP TRIGGER IF EXISTS shardgate_track ON ${q(schema)}.${q(t.table)}`);
      await tx.query(`CREATE TRIGGER shardgate_track AFTER INSERT OR UPDATE OR DELETE
        ON ${q(schema)}.${q(t.table)} FOR EACH ROW
        EXECUTE FUNCTION shardgate_moves.track(${lit(moveId)}, ${lit(t.pk!)})`);
    }
  });
}

/** Stops recording and forgets the move's keys; tolerates a schema that is already gone. */
export async function removeChangeTracking(
  source: Database,
  schema: string,
  moveId: string,
): Promise<void> {
  const tracked = await source.query<{ ok: boolean }>(
    `SELECT to_regclass('shardgate_moves.changed') IS NOT NULL AS ok`,
  );
  if (!tracked.rows[0]?.ok) return;
  for (const t of await keyedTables(source, schema)) {
    await source.query(`DROP TRIGGER IF EXISTS shardgate_track ON ${q(schema)}.${q(t.table)}`);
  }
  await source.query('DELETE FROM shardgate_moves.changed WHERE move = $1', [moveId]);
}

/**
 * Before the pause: compares every row not written since tracking began. The target's snapshot
 * is taken first, then the source's, so every change the target shows is in the source snapshot
 * and its key in the recorded set; rows outside that set are identical on both sides if the copy
 * is right. Returns the tables that differ.
 */
export async function verifyUnchangedRows(
  source: Database,
  target: Database,
  schema: string,
  moveId: string,
): Promise<string[]> {
  const tables = (await keyedTables(source, schema)).filter((t) => t.pk);
  return target.transaction(undefined, async (ttx) => {
    await snapshot(ttx);
    return source.transaction(undefined, async (stx) => {
      await snapshot(stx);
      const changed = await changedKeys(stx, moveId);
      const differing: string[] = [];
      for (const t of tables) {
        const where = `WHERE NOT (r.${q(t.pk!)}::text = ANY($1::text[]))`;
        const keys = [changed.get(t.table) ?? []];
        const [a, b] = await Promise.all([
          digest(stx, schema, t.table, where, keys),
          digest(ttx, schema, t.table, where, keys),
        ]);
        if (a !== b) differing.push(t.table);
      }
      return differing;
    });
  });
}

/**
 * Inside the pause (source fenced, target caught up): compares the rows written since tracking
 * began, by primary key, and in full any table without a single-column key. Its cost follows the
 * writes made during the move, not the client's size. Returns the tables that differ.
 */
export async function verifyChangedRows(
  source: Database,
  target: Database,
  schema: string,
  moveId: string,
  signal?: AbortSignal,
): Promise<string[]> {
  const tables = await keyedTables(source, schema, signal);
  const changed = await source.transaction(signal, (tx) => changedKeys(tx, moveId));
  const compare = async (t: KeyedTable): Promise<string | undefined> => {
    const keys = changed.get(t.table) ?? [];
    if (t.pk && keys.length === 0) return undefined;
    const where = t.pk ? `WHERE r.${q(t.pk)} = ANY($1::${t.pkType}[])` : '';
    const values = t.pk ? [keys] : [];
    const [a, b] = await Promise.all([
      source.transaction(signal, (tx) =>
        settings(tx).then(() => digest(tx, schema, t.table, where, values)),
      ),
      target.transaction(signal, (tx) =>
        settings(tx).then(() => digest(tx, schema, t.table, where, values)),
      ),
    ]);
    return a === b ? undefined : t.table;
  };
  const results = await Promise.all(tables.map(compare));
  return results.filter((t): t is string => t !== undefined);
}

async function snapshot(tx: Queryable): Promise<void> {
  await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
  await settings(tx);
  await tx.query('SELECT 1');
}

/** Same text form of every value on both servers, whatever their defaults. */
async function settings(tx: Queryable): Promise<void> {
  await tx.query(
    `SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO'; SET LOCAL extra_float_digits = 3`,
  );
}

async function changedKeys(tx: Queryable, moveId: string): Promise<Map<string, string[]>> {
  const res = await tx.query<{ tbl: string; pks: string[] }>(
    `SELECT tbl, array_agg(pk) AS pks FROM shardgate_moves.changed WHERE move = $1 GROUP BY tbl`,
    [moveId],
  );
  return new Map(res.rows.map((r) => [r.tbl, r.pks]));
}

/** Row count and order-independent hash aggregates of the selected rows. */
async function digest(
  tx: Queryable,
  schema: string,
  table: string,
  where: string,
  values: unknown[],
): Promise<string> {
  const res = await tx.query<{ n: string; x: string | null; s: string | null }>(
    `SELECT count(*) AS n, bit_xor(pg_catalog.hashtextextended(r::text, 0)) AS x,
            sum(pg_catalog.hashtext(r::text)::int8) AS s
     FROM ${q(schema)}.${q(table)} r ${where}`,
    values,
  );
  const row = res.rows[0];
  return `${row?.n ?? 0}:${row?.x ?? 0}:${row?.s ?? 0}`;
}

async function keyedTables(
  db: Database,
  schema: string,
  signal?: AbortSignal,
): Promise<KeyedTable[]> {
  const res = await db.query<{ table: string; pk: string | null; pktype: string | null }>(
    `SELECT c.relname AS table, a.attname AS pk, pg_catalog.format_type(a.atttypid, a.atttypmod) AS pktype
     FROM pg_catalog.pg_class c
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary AND i.indnkeyatts = 1
     LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
     WHERE n.nspname = $1 AND c.relkind = 'r'
     ORDER BY c.relname`,
    [schema],
    signal,
  );
  return res.rows.map((r) => ({
    table: r.table,
    pk: r.pk ?? undefined,
    pkType: r.pktype ?? undefined,
  }));
}
