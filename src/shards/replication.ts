import pg from 'pg';
import { ShardgateError } from '../core/errors.js';
import type { Database } from '../pg/database.js';

/**
 * The shard-side steps of a move, each safe to re-run: logical replication of one client schema
 * from its source shard to a target shard, a write fence on the source, and verification.
 * `schema` arguments are raw schema names; identifiers are quoted here.
 */

/** SQLSTATE raised by the fence: the client's data is being moved off this shard. */
export const FENCE_SQLSTATE = 'SGMOV';

const q = pg.escapeIdentifier;
const lit = pg.escapeLiteral;

/** Name of the publication, subscription and slot of one move (≤ 63 bytes). */
export function replicationName(moveId: string): string {
  return `sg_move_${moveId.replaceAll('-', '')}`;
}

/**
 * Publishes every table of the client schema. The tables are listed, not `FOR TABLES IN SCHEMA`:
 * that form needs a superuser, a list only ownership of the tables, which the runtime role has.
 */
export async function createPublication(
  source: Database,
  name: string,
  schema: string,
): Promise<void> {
  const exists = await source.query('SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1', [
    name,
  ]);
  if ((exists.rowCount ?? 0) > 0) return;
  const tables = await tablesOf(source, schema);
  if (tables.length === 0) {
    throw new ShardgateError(
      'failed-precondition',
      `client schema ${schema} has no tables to move`,
    );
  }
  await source.query(
    `CREATE PUBLICATION ${q(name)} FOR TABLE ${tables.map((t) => `${q(schema)}.${q(t)}`).join(', ')}`,
  );
}

/**
 * Subscribes the target to the source's publication; the initial copy starts at once. The source
 * URL must be reachable from the target's PostgreSQL server, not only from the gateway.
 *
 * The slot is made first, on the source, not by CREATE SUBSCRIPTION: a subscription that creates
 * its slot on its own PostgreSQL server (source and target databases on one server) hangs, because
 * building the slot's snapshot waits for the CREATE SUBSCRIPTION transaction itself to end.
 */
export async function createSubscription(
  target: Database,
  name: string,
  source: Database,
  sourceUrl: string,
): Promise<void> {
  const exists = await target.query('SELECT 1 FROM pg_catalog.pg_subscription WHERE subname = $1', [
    name,
  ]);
  if ((exists.rowCount ?? 0) > 0) return;
  await createSlot(source, name);
  await target.query(
    `CREATE SUBSCRIPTION ${q(name)} CONNECTION ${lit(libpqConnectionString(sourceUrl))}
     PUBLICATION ${q(name)} WITH (copy_data = true, create_slot = false, slot_name = ${lit(name)})`,
  );
}

/** Creates the move's logical replication slot on the source unless it is there. */
async function createSlot(source: Database, name: string): Promise<void> {
  await source.query(
    `SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1)`,
    [name],
  );
}

/**
 * True when the target's server has logical replication workers left for one more move's
 * subscription: its apply worker and its table-sync workers, after every other enabled
 * subscription's apply worker (pg_subscription is shared by the server's databases). A move
 * alone on its server is always let in.
 */
export async function hasSubscriptionRoom(target: Database): Promise<boolean> {
  const res = await target.query<{ workers: number; sync: number; moves: number; subs: number }>(
    `SELECT current_setting('max_logical_replication_workers')::int AS workers,
            current_setting('max_sync_workers_per_subscription')::int AS sync,
            (count(*) FILTER (WHERE subname LIKE 'sg\\_move\\_%'))::int AS moves,
            count(*)::int AS subs
     FROM pg_catalog.pg_subscription WHERE subenabled`,
  );
  const { workers, sync, moves, subs } = res.rows[0]!;
  return moves === 0 || (moves + 1) * (1 + sync) <= workers - (subs - moves);
}

/**
 * Which database this is, whatever URL reached it: its server's system identifier and its name.
 * Two shard names may point at one database; a move between them must be refused.
 */
export async function databaseIdentity(db: Database, signal?: AbortSignal): Promise<string> {
  const res = await db.query<{ id: string }>(
    `SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system())::text || '/' ||
            pg_catalog.current_database() AS id`,
    [],
    signal,
  );
  return res.rows[0]!.id;
}

/** Tables of the subscription and how many have finished their initial copy. */
export async function syncProgress(
  target: Database,
  name: string,
): Promise<{ tables: number; ready: number }> {
  const res = await target.query<{ tables: string; ready: string }>(
    `SELECT count(*) AS tables, count(*) FILTER (WHERE r.srsubstate = 'r') AS ready
     FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_subscription_rel r ON r.srsubid = s.oid
     WHERE s.subname = $1`,
    [name],
  );
  return { tables: Number(res.rows[0]?.tables ?? 0), ready: Number(res.rows[0]?.ready ?? 0) };
}

/** Exact row count of every table in the schema. */
export async function rowCounts(db: Database, schema: string): Promise<Map<string, number>> {
  const tables = await tablesOf(db, schema);
  if (tables.length === 0) return new Map();
  const res = await db.query<{ t: string; n: string }>(
    tables
      .map((t) => `SELECT ${lit(t)} AS t, count(*) AS n FROM ${q(schema)}.${q(t)}`)
      .join(' UNION ALL '),
  );
  return new Map(res.rows.map((r) => [r.t, Number(r.n)]));
}

/** Refreshes the planner statistics of every table in the schema. */
export async function analyzeSchema(db: Database, schema: string): Promise<void> {
  const tables = await tablesOf(db, schema);
  if (tables.length > 0)
    await db.query(`ANALYZE ${tables.map((t) => `${q(schema)}.${q(t)}`).join(', ')}`);
}

/** Size on disk and estimated rows of a schema (catalog statistics only: cheap). */
export async function schemaSize(
  db: Database,
  schema: string,
): Promise<{ bytes: number; rows: number }> {
  const res = await db.query<{ bytes: string | null; rows: string | null }>(
    `SELECT sum(pg_catalog.pg_total_relation_size(c.oid)) AS bytes,
            sum(GREATEST(c.reltuples, 0)) FILTER (WHERE c.relkind = 'r') AS rows
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')`,
    [schema],
  );
  return {
    bytes: Number(res.rows[0]?.bytes ?? 0),
    rows: Math.round(Number(res.rows[0]?.rows ?? 0)),
  };
}

/**
 * Fences the source: a BEFORE trigger on every table refuses writes with SQLSTATE SGMOV.
 * CREATE TRIGGER waits for writes in flight, so every write either committed before the fence
 * (and replicates) or fails (and the gateway retries it on the new placement).
 */
export async function installFence(source: Database, schema: string): Promise<void> {
  const tables = await tablesOf(source, schema);
  // One multi-statement query runs as one implicit transaction and costs one round trip: this
  // runs inside the client's write pause.
  await source.query(
    [
      lockInOrder(schema, tables),
      `CREATE OR REPLACE FUNCTION ${q(schema)}.shardgate_fence() RETURNS trigger
      LANGUAGE plpgsql SET search_path = pg_catalog AS $$
      BEGIN
        IF current_setting('shardgate.fence_bypass', true) = 'on' THEN
          RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END IF;
        RAISE EXCEPTION 'client schema % is being moved to another shard', TG_TABLE_SCHEMA
          USING ERRCODE = '${FENCE_SQLSTATE}';
      END $$`,
      ...tables.flatMap((t) => [
        `DROP TRIGGER IF EXISTS shardgate_fence ON ${q(schema)}.${q(t)}`,
        `CREATE TRIGGER shardgate_fence BEFORE INSERT OR UPDATE OR DELETE
        ON ${q(schema)}.${q(t)} FOR EACH ROW EXECUTE FUNCTION ${q(schema)}.shardgate_fence()`,
      ]),
    ].join(';\n'),
  );
}

export async function removeFence(source: Database, schema: string): Promise<void> {
  const exists = await source.query(`SELECT to_regnamespace($1) AS ns`, [q(schema)]);
  if (!exists.rows[0]?.ns) return;
  await source.query(`DROP FUNCTION IF EXISTS ${q(schema)}.shardgate_fence() CASCADE`);
}

/**
 * Writes a marker through the fence (a no-op update of the state row) and returns a WAL position
 * below its commit. Once the target's replication origin has applied past it, every change
 * committed on the source before the fence is on the target.
 */
export async function writeMarker(source: Database, schema: string): Promise<string> {
  return source.transaction(undefined, async (tx) => {
    await tx.query(`SET LOCAL shardgate.fence_bypass = 'on'`);
    await tx.query(`UPDATE ${q(schema)}.state SET document = document`);
    const res = await tx.query<{ lsn: string }>(
      'SELECT pg_catalog.pg_current_wal_insert_lsn()::text AS lsn',
    );
    return res.rows[0]!.lsn;
  });
}

/**
 * True once the subscription has applied a source commit past `lsn`: the progress of its
 * replication origin (`pg_<subscription oid>`). A role without SUPERUSER needs EXECUTE on
 * pg_replication_origin_progress for this (docs/database-roles.md).
 */
export async function appliedPast(
  target: Database,
  name: string,
  lsn: string,
  signal?: AbortSignal,
): Promise<boolean> {
  const res = await target.query<{ done: boolean | null }>(
    `SELECT pg_catalog.pg_replication_origin_progress('pg_' || s.oid, false) >= $2::pg_lsn AS done
     FROM pg_catalog.pg_subscription s
     WHERE s.subname = $1
       AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())`,
    [name, lsn],
    signal,
  );
  return res.rows[0]?.done === true;
}

/** Drops the subscription (and its slot on the source when the source answers). */
export async function dropSubscription(target: Database, name: string): Promise<void> {
  const exists = await target.query('SELECT 1 FROM pg_catalog.pg_subscription WHERE subname = $1', [
    name,
  ]);
  if ((exists.rowCount ?? 0) === 0) return;
  try {
    await target.query(`DROP SUBSCRIPTION ${q(name)}`);
  } catch {
    // The source is unreachable: detach the slot so the drop succeeds; dropSlot cleans it later.
    await target.query(`ALTER SUBSCRIPTION ${q(name)} DISABLE`);
    await target.query(`ALTER SUBSCRIPTION ${q(name)} SET (slot_name = NONE)`);
    await target.query(`DROP SUBSCRIPTION ${q(name)}`);
  }
}

export async function dropPublication(source: Database, name: string): Promise<void> {
  await source.query(`DROP PUBLICATION IF EXISTS ${q(name)}`);
}

/**
 * Drops the replication slot if it is still there and unused. With `evenIfActive`, a walsender
 * still streaming from it (a subscription that could not be dropped, or one on a server that
 * went silent and is not yet timed out) is ended first: a slot left behind keeps the source's WAL
 * forever. Its subscriber, if alive, fails to reconnect until its subscription is dropped.
 */
export async function dropSlot(
  source: Database,
  name: string,
  options: { evenIfActive?: boolean } = {},
): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const res = await source.query<{ pid: number | null }>(
      `SELECT active_pid AS pid,
              CASE WHEN NOT active THEN pg_catalog.pg_drop_replication_slot(slot_name) END
       FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`,
      [name],
    );
    const pid = res.rows[0]?.pid;
    if (!pid || !options.evenIfActive) return;
    if (attempt === SLOT_DROP_ATTEMPTS) {
      throw new ShardgateError(
        'unavailable',
        `replication slot ${name} is still in use by process ${pid}`,
      );
    }
    await source.query('SELECT pg_catalog.pg_terminate_backend($1)', [pid]);
    await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
  }
}
const SLOT_DROP_ATTEMPTS = 5;

export async function dropSchema(db: Database, schema: string): Promise<void> {
  await db.query(`DROP SCHEMA IF EXISTS ${q(schema)} CASCADE`);
}

export async function schemaExists(db: Database, schema: string): Promise<boolean> {
  const res = await db.query<{ ns: string | null }>(`SELECT to_regnamespace($1)::text AS ns`, [
    q(schema),
  ]);
  return res.rows[0]?.ns != null;
}

/** Empties every table of a freshly made schema, so the initial copy brings exactly the source's rows. */
export async function truncateSchema(db: Database, schema: string): Promise<void> {
  const tables = await tablesOf(db, schema);
  if (tables.length === 0) return;
  await db.query(`TRUNCATE ${tables.map((t) => `${q(schema)}.${q(t)}`).join(', ')}`);
}

/**
 * Takes SHARE ROW EXCLUSIVE on every table of a client schema (what CREATE TRIGGER needs) in the
 * order writers take theirs: `request_ids` first, as a keyed create claims its key before it
 * inserts its rows in one statement. Taken one table at a time in another order, the trigger DDL
 * and a keyed create could deadlock, and one of them would wait out deadlock_timeout and fail.
 */
export function lockInOrder(schema: string, tables: readonly string[]): string {
  const ordered = [...tables].sort((a, b) =>
    a === KEYS_TABLE ? -1 : b === KEYS_TABLE ? 1 : a < b ? -1 : a > b ? 1 : 0,
  );
  return `LOCK TABLE ${ordered.map((t) => `${q(schema)}.${q(t)}`).join(', ')} IN SHARE ROW EXCLUSIVE MODE`;
}

/** The idempotency keys' table of a client schema (client migration v2). */
const KEYS_TABLE = 'request_ids';

async function tablesOf(db: Database, schema: string): Promise<string[]> {
  const res = await db.query<{ t: string }>(
    `SELECT tablename AS t FROM pg_catalog.pg_tables WHERE schemaname = $1 ORDER BY tablename`,
    [schema],
  );
  return res.rows.map((r) => r.t);
}

/** libpq keyword/value form of a postgres:// URL, as CREATE SUBSCRIPTION wants it. */
export function libpqConnectionString(url: string): string {
  const u = new URL(url);
  const parts: Record<string, string> = {
    host: decodeURIComponent(u.hostname),
    port: u.port || '5432',
    dbname: decodeURIComponent(u.pathname.slice(1)),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
  };
  for (const [k, v] of u.searchParams) parts[k] = v;
  return Object.entries(parts)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k}='${v.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`)
    .join(' ');
}

/** Size and estimated rows of every client schema on a shard, in one catalog-statistics query. */
export async function clientSchemaSizes(
  db: Database,
): Promise<Map<string, { bytes: number; rows: number }>> {
  const res = await db.query<{ schema: string; bytes: string | null; rows: string | null }>(
    `SELECT n.nspname AS schema, sum(pg_catalog.pg_total_relation_size(c.oid)) AS bytes,
            sum(GREATEST(c.reltuples, 0)) FILTER (WHERE c.relkind = 'r') AS rows
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname LIKE 'client\\_%' AND c.relkind IN ('r', 'p')
     GROUP BY n.nspname`,
  );
  return new Map(
    res.rows.map((r) => [
      r.schema,
      { bytes: Number(r.bytes ?? 0), rows: Math.round(Number(r.rows ?? 0)) },
    ]),
  );
}
