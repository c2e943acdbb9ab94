import pg from 'pg';
import { Database } from '../../src/pg/database.js';
import { PointReads, type PointReadLimits } from '../../src/pg/point-reads.js';

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
 * Holds ACCESS EXCLUSIVE locks on `tables` (quoted `schema.table` names) until `release()`, so
 * statements on them wait: calls issued meanwhile pile up in the gateway's point-read lanes.
 */
export async function holdTables(
  url: string,
  tables: readonly string[],
): Promise<{ release(): Promise<void> }> {
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
