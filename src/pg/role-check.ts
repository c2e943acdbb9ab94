import pg from 'pg';
import type { GatewayConfig } from '../core/config.js';
import { ShardgateError } from '../core/errors.js';

/** A database the gateway connects to, named as messages name it ("shard 'shard-2'"). */
export interface DatabaseTarget {
  url: string;
  label: string;
  /** A shard: online moves run from and to it, which needs replication privileges. */
  shard?: boolean;
}

/** Where the check's warnings go (a pino Logger is one). */
export interface RoleCheckLog {
  warn(details: object, message: string): void;
}

type ShardRef = { readonly name: string; readonly url: string };

/** Shards as role-check targets, leaving out those with a URL in `checked` (already done). */
export const shardTargets = (
  shards: readonly ShardRef[],
  checked: readonly ShardRef[] = [],
): DatabaseTarget[] =>
  shards
    .filter((s) => !checked.some((c) => c.url === s.url))
    .map((s) => ({ url: s.url, label: `shard '${s.name}'`, shard: true }));

interface RoleFacts {
  role: string;
  superuser: boolean;
  replication: boolean;
  subscribe: boolean;
  originProgress: boolean;
  createInDatabase: boolean;
  publicOpen: boolean | null;
  roleCreatesInPublic: boolean | null;
}

const FACTS = `
  SELECT current_user AS role, r.rolsuper AS superuser, r.rolreplication AS replication,
    CASE WHEN to_regrole('pg_create_subscription') IS NULL THEN false
      ELSE pg_has_role(current_user, 'pg_create_subscription', 'USAGE') END AS subscribe,
    has_function_privilege('pg_catalog.pg_replication_origin_progress(text, boolean)', 'EXECUTE')
      AS "originProgress",
    has_database_privilege(current_database(), 'CREATE') AS "createInDatabase",
    CASE WHEN to_regnamespace('public') IS NOT NULL
      THEN has_schema_privilege('public', 'public', 'CREATE') END AS "publicOpen",
    CASE WHEN to_regnamespace('public') IS NOT NULL
      THEN has_schema_privilege('public', 'CREATE') END AS "roleCreatesInPublic"
  FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`;

/**
 * Checks the role each database is reached as, once, on a connection of its own (the pools never
 * see it). A superuser is refused unless `database.allowSuperuser`: it bypasses every privilege
 * the hardening relies on. CREATE on schema `public` for everyone is revoked where this role may
 * (it owns the schema, or is a superuser) and warned about where it may not; a shard whose role
 * lacks what online moves need is warned about. A database that does not answer is skipped with
 * a warning: the gateway serves what it can, as it does for a shard that is down.
 */
export async function checkDatabaseRoles(
  targets: readonly DatabaseTarget[],
  config: Pick<GatewayConfig, 'database' | 'pool'>,
  log: RoleCheckLog,
): Promise<void> {
  const unique = targets.filter((t, i) => targets.findIndex((o) => o.url === t.url) === i);
  // In parallel, but the refusal reported is that of the first target refused, every time.
  const results = await Promise.allSettled(unique.map((t) => checkOne(t, config, log)));
  const refused = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (refused) throw refused.reason;
}

async function checkOne(
  target: DatabaseTarget,
  config: Pick<GatewayConfig, 'database' | 'pool'>,
  log: RoleCheckLog,
): Promise<void> {
  const client = new pg.Client({
    connectionString: target.url,
    connectionTimeoutMillis: config.pool.connectionTimeoutMs,
    application_name: 'shardgate-role-check',
    options: '-c search_path=pg_catalog',
  });
  client.on('error', () => undefined);
  let facts: RoleFacts;
  try {
    await client.connect();
    facts = (await client.query<RoleFacts>(FACTS)).rows[0]!;
  } catch (err) {
    await client.end().catch(() => undefined);
    log.warn({ err, database: target.label }, `could not check the role ${target.label} uses`);
    return;
  }
  try {
    if (facts.superuser) refuseOrWarn(target, facts, config.database.allowSuperuser, log);
    await checkPublic(client, target, facts, log);
    if (target.shard && !facts.superuser) warnIfMovesCannotRun(target, facts, log);
  } finally {
    await client.end().catch(() => undefined);
  }
}

function refuseOrWarn(
  target: DatabaseTarget,
  facts: RoleFacts,
  allowSuperuser: boolean,
  log: RoleCheckLog,
): void {
  const what = `${target.label} is reached as role "${facts.role}", a superuser`;
  if (!allowSuperuser) {
    throw new ShardgateError(
      'failed-precondition',
      `${what}, which bypasses every privilege check shardgate's isolation relies on; connect as ` +
        'a role without SUPERUSER (docs/database-roles.md lists what it needs), or set ' +
        'database.allowSuperuser to true to run anyway',
    );
  }
  log.warn({ database: target.label, role: facts.role }, `${what} (database.allowSuperuser)`);
}

/**
 * Revokes CREATE on `public` from PUBLIC when it is granted (which works when this role owns the
 * schema), then warns about whoever may still create there: everyone, or this role itself.
 */
async function checkPublic(
  client: pg.Client,
  target: DatabaseTarget,
  facts: RoleFacts,
  log: RoleCheckLog,
): Promise<void> {
  let { publicOpen, roleCreatesInPublic } = facts;
  if (publicOpen) {
    try {
      // Without ownership this is a no-op with a server WARNING, so the result is read back.
      await client.query('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
      const { rows } = await client.query<{ open: boolean; mine: boolean }>(
        `SELECT has_schema_privilege('public', 'public', 'CREATE') AS open,
                has_schema_privilege('public', 'CREATE') AS mine`,
      );
      ({ open: publicOpen, mine: roleCreatesInPublic } = rows[0]!);
    } catch {
      // Reported below, like a revoke without effect.
    }
  }
  if (publicOpen) {
    log.warn(
      { database: target.label },
      `every role may CREATE in schema public of ${target.label}; the gateway's role cannot ` +
        'revoke that, so run REVOKE CREATE ON SCHEMA public FROM PUBLIC there as the owner of ' +
        'the schema (docs/database-roles.md)',
    );
  } else if (roleCreatesInPublic && !facts.superuser) {
    log.warn(
      { database: target.label, role: facts.role },
      `role "${facts.role}" may CREATE in schema public of ${target.label} (it owns the schema ` +
        'or was granted CREATE there); the gateway never looks in public, but a role that owns ' +
        'no public schema is the safer set-up (docs/database-roles.md)',
    );
  }
}

function warnIfMovesCannotRun(target: DatabaseTarget, facts: RoleFacts, log: RoleCheckLog): void {
  const missing = [
    facts.replication ? [] : ['the REPLICATION attribute'],
    facts.subscribe ? [] : ['membership in pg_create_subscription'],
    facts.originProgress ? [] : ['EXECUTE on pg_replication_origin_progress(text, boolean)'],
    facts.createInDatabase ? [] : ['CREATE on the database'],
  ].flat();
  if (missing.length === 0) return;
  log.warn(
    { database: target.label, role: facts.role, missing },
    `online moves to and from ${target.label} will fail: role "${facts.role}" lacks ` +
      `${missing.join(', ')} (docs/database-roles.md)`,
  );
}
