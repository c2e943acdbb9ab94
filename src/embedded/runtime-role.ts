// The gateway's runtime role on a server we administer (embedded mode and the test servers): a
// login role without SUPERUSER that has exactly what the gateway and online moves need. The SQL
// here is what docs/database-roles.md asks operators of external servers to run.

import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import pg from 'pg';

/** The runtime role's name on every embedded server. */
export const runtimeRole = 'shardgate';

/** What runs one statement: a pg.Client connected as a superuser. */
type AdminConnection = Pick<pg.Client, 'query'>;

const q = pg.escapeIdentifier;
const lit = pg.escapeLiteral;

/**
 * Creates the runtime role on the server, or brings an existing one back to the intended
 * attributes and `password`. REPLICATION (walsender connections, slots) and pg_create_subscription
 * are what online moves need; nothing else is granted server-wide. The password travels as a
 * SCRAM verifier, so no statement (or server log line about one) ever holds it in clear.
 */
export async function ensureRuntimeRole(
  admin: AdminConnection,
  password: string,
  role = runtimeRole,
): Promise<void> {
  const { rowCount } = await admin.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [
    role,
  ]);
  const attributes =
    'LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS INHERIT REPLICATION ' +
    `PASSWORD ${lit(scramVerifier(password))}`;
  await admin.query(
    rowCount ? `ALTER ROLE ${q(role)} WITH ${attributes}` : `CREATE ROLE ${q(role)} ${attributes}`,
  );
  await admin.query(`GRANT pg_create_subscription TO ${q(role)}`);
}

/**
 * Run as a superuser connected to `database`: lets the runtime role connect and create schemas
 * (and subscriptions) there, takes CREATE on schema `public` away from everyone, lets the role
 * read replication progress (how a move knows the target caught up), and hands it every object
 * in the database's own schemas that a superuser owns — what a gateway that ran as the superuser
 * before created. The database itself stays the superuser's, so the role owns no `public`.
 * Idempotent; returns how many objects changed owner.
 */
export async function grantDatabaseAccess(
  admin: AdminConnection,
  database: string,
  role = runtimeRole,
): Promise<number> {
  await admin.query(`GRANT CONNECT, CREATE ON DATABASE ${q(database)} TO ${q(role)}`);
  const { rows: publicSchema } = await admin.query(`SELECT to_regnamespace('public') AS oid`);
  if (publicSchema[0]?.oid) await admin.query('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
  await admin.query(
    `GRANT EXECUTE ON FUNCTION pg_catalog.pg_replication_origin_progress(text, boolean) TO ${q(role)}`,
  );
  const { rows } = await admin.query<{ ddl: string }>(OWNERSHIP_TRANSFERS, [role]);
  for (const { ddl } of rows) await admin.query(ddl);
  return rows.length;
}

/** Schemas a database's users made: not the system's, and not `public`. */
const OWN_SCHEMA = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'public')
  AND n.nspname NOT LIKE 'pg\\_%'`;
const BY_SUPERUSER = (column: string): string =>
  `(SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = ${column})`;

/**
 * One ALTER … OWNER per superuser-owned object in the database's own schemas, in an order that
 * works: schemas, relations (indexes, and sequences owned by a column, follow their table),
 * routines, standalone types, then the publications and subscriptions of moves.
 */
const OWNERSHIP_TRANSFERS = `
  SELECT ddl FROM (
    SELECT 1 AS step, format('ALTER SCHEMA %I OWNER TO %I', n.nspname, $1::text) AS ddl
    FROM pg_catalog.pg_namespace n WHERE ${OWN_SCHEMA} AND ${BY_SUPERUSER('n.nspowner')}
    UNION ALL
    SELECT 2, format('ALTER %s %s OWNER TO %I',
      CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
        WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, c.oid::regclass, $1::text)
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND ${OWN_SCHEMA}
      AND ${BY_SUPERUSER('c.relowner')}
      AND (c.relkind <> 'S' OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
          AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')))
    UNION ALL
    SELECT 3, format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, $1::text)
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE ${OWN_SCHEMA} AND ${BY_SUPERUSER('p.proowner')}
    UNION ALL
    SELECT 4, format('ALTER %s %s OWNER TO %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
      t.oid::regtype, $1::text)
    FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
    LEFT JOIN pg_catalog.pg_class c ON c.oid = t.typrelid
    WHERE ${OWN_SCHEMA} AND ${BY_SUPERUSER('t.typowner')}
      AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND c.relkind = 'c'))
    UNION ALL
    SELECT 5, format('ALTER PUBLICATION %I OWNER TO %I', pubname, $1::text)
    FROM pg_catalog.pg_publication WHERE pubname LIKE 'sg\\_move\\_%' AND ${BY_SUPERUSER('pubowner')}
    UNION ALL
    SELECT 6, format('ALTER SUBSCRIPTION %I OWNER TO %I', subname, $1::text)
    FROM pg_catalog.pg_subscription
    WHERE subname LIKE 'sg\\_move\\_%' AND ${BY_SUPERUSER('subowner')}
      AND subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
  ) transfers ORDER BY step, ddl`;

/** A new random password for the runtime role. */
export function newRuntimePassword(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677, 4096 iterations),
 * so CREATE/ALTER ROLE never carry the password itself. Our passwords are ASCII, which SASLprep
 * leaves unchanged.
 */
export function scramVerifier(password: string, salt = randomBytes(16)): string {
  const iterations = 4096;
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return (
    `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}` +
    `$${storedKey.toString('base64')}:${serverKey.toString('base64')}`
  );
}
