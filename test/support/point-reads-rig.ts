import pg from 'pg';
import { configSchema } from '../../src/core/config.js';
import { parseClientId, schemaNameFor } from '../../src/core/ids.js';
import { Database } from '../../src/pg/database.js';
import { PointReads, type PointReadLimits } from '../../src/pg/point-reads.js';
import { createTestTopology, startTestGateway, type TestGateway } from './harness.js';

/** A statement as a PointReads sent it to the database. */
export interface SentStatement {
  text: string;
  values: unknown[];
}

/** A small pool on a test database for PointReads tests; its idle errors land in `errors`. */
export function pointReadsDatabase(url: string, label: string, errors: Error[]): Database {
  return new Database({
    url,
    label,
    max: 4,
    idleTimeoutMs: 10_000,
    connectionTimeoutMs: 3_000,
    statementTimeoutMs: 20_000,
    maxLifetimeSeconds: 0,
    onError: (err) => errors.push(err),
  });
}

/** A PointReads over `db` that records every statement it sends (and runs it for real). */
export function countedReads(
  db: Database,
  limits: PointReadLimits,
): { reads: PointReads; sent: SentStatement[] } {
  const sent: SentStatement[] = [];
  const reads = new PointReads(limits, (text, values, signal) => {
    sent.push({ text, values });
    return db.query(text, values, signal);
  });
  return { reads, sent };
}

/**
 * Watches (never changes) what every Database sends until `restore()`: the texts of coalesced
 * statements, to show calls through a gateway really shared statements.
 */
export function watchSharedStatements(): { shared: string[]; restore(): void } {
  const shared: string[] = [];
  const query = Database.prototype.query;
  Database.prototype.query = function (this: Database, text: string, ...rest: unknown[]) {
    if (text.includes('__branch')) shared.push(text);
    return query.call(this, text, ...(rest as [unknown[], AbortSignal]));
  } as typeof query;
  return { shared, restore: () => void (Database.prototype.query = query) };
}

/**
 * Holds ACCESS EXCLUSIVE locks on `table` of each client's schema until `release()`, so
 * statements on them wait: calls issued meanwhile pile up in the gateway's point-read lanes.
 */
export async function holdClientTables(
  url: string,
  clientIds: readonly string[],
  table: string,
): Promise<{ release(): Promise<void> }> {
  const tables = clientIds.map(
    (id) => `${pg.escapeIdentifier(schemaNameFor(parseClientId(id)))}.${table}`,
  );
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`LOCK TABLE ${tables.join(', ')} IN ACCESS EXCLUSIVE MODE`);
  return {
    async release() {
      await client.query('COMMIT');
      await client.end();
    },
  };
}

/** A gateway on one fresh shard whose point reads coalesce, and what it sends. */
export interface CoalescingGateway {
  gw: TestGateway;
  /** The shard's URL as the runtime role (to hold its tables). */
  shardUrl: string;
  /** Coalesced statements sent so far (texts). */
  shared: string[];
  /** Coalesced reads of the shard not answered yet. */
  pendingReads(): number;
  close(): Promise<void>;
}

/**
 * Starts a gateway with one coalesced statement per table at a time and no per-client cap in the
 * way (5 by default, which would keep all but 5 of one client's calls in the client's own queue),
 * and watches the coalesced statements every Database sends.
 */
export async function startCoalescingGateway(): Promise<CoalescingGateway> {
  const topology = await createTestTopology(1);
  const defaults = configSchema.parse({});
  const gw = await startTestGateway(topology, {
    pool: { ...defaults.pool, readBatchStatements: 1 },
    limits: { ...defaults.limits, clientMaxConcurrent: 64 },
  });
  const { shared, restore } = watchSharedStatements();
  const shard = gw.gateway.context.pools.get(topology.shards[0]!.name as never);
  return {
    gw,
    shardUrl: topology.shards[0]!.url,
    shared,
    pendingReads: () => shard.stats().pointReads,
    async close() {
      restore();
      await gw.close();
    },
  };
}
