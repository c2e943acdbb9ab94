import pg from 'pg';
import { ShardgateError } from '../core/errors.js';
import { PointReads, type PointReadSpec } from './point-reads.js';
import { abortedBySignal, isConnectionBroken, translatePgError } from './sql-errors.js';

/** What a typed query needs: run one statement with bound parameters. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
}

/** Settings for one database's pool; every connection gets the session settings below. */
export interface DatabaseOptions {
  url: string;
  /** Used in error messages and as application_name suffix, e.g. "shard 'shard-1'". */
  label: string;
  max: number;
  idleTimeoutMs: number;
  connectionTimeoutMs: number;
  statementTimeoutMs: number;
  maxLifetimeSeconds: number;
  /** Replace a connection after this many checkouts; 0 or unset: never (see config `pool`). */
  maxUses?: number;
  /**
   * Coalesced point-read statements in flight per table (see PointReads); 0 or unset: every
   * point read is its own statement.
   */
  readBatchStatements?: number;
  /** Most point reads one coalesced statement answers; default 64. */
  readBatchMax?: number;
  onError: (err: Error) => void;
}

/**
 * How long past the statement timeout the driver waits for any answer before it gives a
 * connection up (pg's `query_timeout`). The server ends every statement at the statement timeout,
 * so only a silent server (a vanished host, a dead network path) reaches this; without it a
 * connection would wait for TCP to give up, about 15 minutes.
 */
export const DRIVER_TIMEOUT_GRACE_MS = 2_000;

/**
 * How long a cancelled call waits for its statement to end once cancellation is requested; past
 * that the connection is closed instead (the server rolls back whatever it was doing), so a
 * silent server cannot hold a cancelled call. A live server ends a cancelled statement in
 * milliseconds.
 */
export const CANCEL_GRACE_MS = 500;

/**
 * One PostgreSQL database: a pool shared by every client whose data lives there, plus a one-slot
 * control pool used only to cancel a running statement when a call's AbortSignal fires (grpc-js
 * does not cancel database work for you). Every error leaves as a ShardgateError.
 *
 * A pooled connection serves one client after another, so it must never carry state from one
 * call to the next: nothing here or in its users runs session-level SET, session advisory locks,
 * LISTEN, named prepared statements or temporary tables on it (transaction-scoped SET LOCAL and
 * xact locks end with the transaction). Whatever needs a session of its own gets a dedicated
 * connection: PgListener (LISTEN), trySessionLock (move locks). Connections are also replaced
 * after `maxUses` checkouts and `maxLifetimeSeconds`, which bounds each backend's caches.
 */
export class Database {
  readonly label: string;
  readonly #pool: pg.Pool;
  readonly #options: DatabaseOptions;
  readonly #pointReads: PointReads;
  #control: pg.Pool | undefined;

  constructor(options: DatabaseOptions) {
    this.label = options.label;
    this.#options = options;
    this.#pool = createPool(options, options.max);
    this.#pointReads = new PointReads(
      { statements: options.readBatchStatements ?? 0, maxBatch: options.readBatchMax ?? 64 },
      (text, values, signal) => this.query(text, values, signal),
    );
  }

  /** Runs one statement outside a transaction. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values: unknown[] = [],
    signal?: AbortSignal,
  ): Promise<pg.QueryResult<R>> {
    return this.withConnection(signal, (conn) => conn.query<R>(text, values));
  }

  /**
   * The row of `<schema>.<table>` with primary key `id`, or undefined. Concurrent point reads of
   * the same table share one statement under load (src/pg/point-reads.ts); `schema` is a quoted
   * identifier and `id` a lower-case UUID. `spec` must be a module-level constant: reads are
   * grouped by the spec object, and each one gets a lane that lives as long as this Database.
   */
  readById<R extends pg.QueryResultRow>(
    spec: PointReadSpec,
    schema: string,
    id: string,
    signal?: AbortSignal,
  ): Promise<R | undefined> {
    return this.#pointReads.read<R>(spec, schema, id, signal);
  }

  /**
   * The row of the single-row table `<schema>.<table>` (`spec.singleRow`), or undefined; coalesced
   * like readById.
   */
  readSingleRow<R extends pg.QueryResultRow>(
    spec: PointReadSpec,
    schema: string,
    signal?: AbortSignal,
  ): Promise<R | undefined> {
    return this.#pointReads.read<R>(spec, schema, undefined, signal);
  }

  /**
   * The first row in `spec.latestBy.order` of `<schema>.<table>` whose `spec.latestBy.column`
   * equals `key`, or undefined; coalesced like readById (a branch per schema and key).
   */
  readLatest<R extends pg.QueryResultRow>(
    spec: PointReadSpec,
    schema: string,
    key: string,
    signal?: AbortSignal,
  ): Promise<R | undefined> {
    return this.#pointReads.read<R>(spec, schema, key, signal);
  }

  /**
   * Runs `fn` in BEGIN … COMMIT. Any error (including a cancelled call) rolls back; if the rollback
   * itself fails the connection is destroyed, so no pooled connection is ever left in a transaction.
   * Once `signal` fires, no further statement of `fn` starts.
   */
  async transaction<T>(
    signal: AbortSignal | undefined,
    fn: (tx: Queryable) => Promise<T>,
  ): Promise<T> {
    return this.withConnection(signal, async (conn) => {
      const tx: Queryable = {
        query: (text, values) => {
          if (signal?.aborted) return Promise.reject(abortedBySignal(signal));
          return conn.query(text, values);
        },
      };
      await conn.query('BEGIN');
      try {
        const result = await fn(tx);
        if (signal?.aborted) throw abortedBySignal(signal);
        await conn.query('COMMIT');
        return result;
      } catch (err) {
        await conn.query('ROLLBACK').catch((rollbackErr: unknown) => {
          throw new RollbackFailed(err, rollbackErr);
        });
        throw err;
      }
    });
  }

  /**
   * Checks out a connection, wires cancellation to `signal`, and always returns it clean. A call
   * cancelled while it waits for a connection gives up the wait and never runs its statement.
   */
  async withConnection<T>(
    signal: AbortSignal | undefined,
    fn: (conn: pg.PoolClient) => Promise<T>,
  ): Promise<T> {
    if (signal?.aborted) throw abortedBySignal(signal);
    const conn = await this.#checkout(signal);
    if (signal?.aborted) {
      conn.release();
      throw abortedBySignal(signal);
    }
    const pid = (conn as unknown as { processID?: number }).processID;
    let cancelling: Promise<void> | undefined;
    let giveUp: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      cancelling = this.#cancelBackend(pid);
      // Closing the socket fails the running statement at once, and the server, seeing the
      // connection go, rolls back whatever it was doing.
      giveUp = setTimeout(() => void conn.end().catch(() => undefined), CANCEL_GRACE_MS);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    // Checked out, a client has no listener of the pool's: a connection reset (a failover, a
    // killed backend) would then be an uncaught 'error' event, which ends the process. The
    // statement running, or the next one, fails on its own, and release drops the client.
    conn.on('error', ignoreCheckedOutError);
    let broken: Error | undefined;
    try {
      return await fn(conn);
    } catch (err) {
      const cause = err instanceof RollbackFailed ? err.rollbackError : err;
      if (err instanceof RollbackFailed || isConnectionBroken(cause)) broken = asError(cause);
      throw translatePgError(
        err instanceof RollbackFailed ? err.original : err,
        this.label,
        signal,
      );
    } finally {
      signal?.removeEventListener('abort', onAbort);
      clearTimeout(giveUp);
      // A cancel request still on its way would hit whatever the next borrower runs; once it has
      // landed on an idle backend PostgreSQL ignores it. A broken connection has no next borrower.
      if (cancelling && !broken) await cancelling;
      conn.removeListener('error', ignoreCheckedOutError);
      conn.release(broken);
    }
  }

  /** pool.connect() raced against `signal`; an abandoned checkout goes back to the pool unused. */
  async #checkout(signal: AbortSignal | undefined): Promise<pg.PoolClient> {
    // Hot path: with an idle connection the checkout cannot wait, so there is nothing to race.
    if (this.#pool.idleCount > 0 || !signal) {
      try {
        return await this.#pool.connect();
      } catch (err) {
        throw translatePgError(err, this.label, signal);
      }
    }
    const connecting = this.#pool.connect();
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(abortedBySignal(signal!));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([connecting, aborted]);
    } catch (err) {
      connecting.then(
        (conn) => conn.release(),
        () => undefined,
      );
      throw translatePgError(err, this.label, signal);
    } finally {
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Closes both pools; in-flight statements finish first. */
  async close(): Promise<void> {
    await Promise.all([this.#pool.end(), this.#control?.end()]);
  }

  /** Pool counters, for metrics and tests. */
  stats(): { total: number; idle: number; waiting: number; pointReads: number } {
    return {
      total: this.#pool.totalCount,
      idle: this.#pool.idleCount,
      waiting: this.#pool.waitingCount,
      pointReads: this.#pointReads.pending,
    };
  }

  async #cancelBackend(pid: number | undefined | null): Promise<void> {
    if (!pid) return;
    this.#control ??= createPool(this.#options, 1);
    try {
      await this.#control.query('SELECT pg_catalog.pg_cancel_backend($1)', [pid]);
    } catch (err) {
      this.#options.onError(asError(err));
    }
  }
}

/** See withConnection; one function for every checkout, so adding it allocates nothing. */
function ignoreCheckedOutError(): void {}

class RollbackFailed extends Error {
  constructor(
    readonly original: unknown,
    readonly rollbackError: unknown,
  ) {
    super('rollback failed');
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new ShardgateError('internal', String(err));
}

function createPool(o: DatabaseOptions, max: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString: o.url,
    max,
    idleTimeoutMillis: o.idleTimeoutMs,
    connectionTimeoutMillis: o.connectionTimeoutMs,
    maxLifetimeSeconds: o.maxLifetimeSeconds,
    ...(o.maxUses ? { maxUses: o.maxUses } : {}),
    application_name: 'shardgate',
    statement_timeout: o.statementTimeoutMs,
    query_timeout: o.statementTimeoutMs + DRIVER_TIMEOUT_GRACE_MS,
    // A connection idle towards a vanished host is found out by TCP keepalive probes.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    idle_in_transaction_session_timeout: Math.max(o.statementTimeoutMs, 10_000),
    // Every statement names its schema; pinning search_path keeps objects in `public` (or any
    // other schema) from shadowing the ones a query means (the CVE-2018-1058 class).
    options: '-c search_path=pg_catalog',
  });
  // An idle client's error would otherwise be an unhandled 'error' event and kill the process.
  pool.on('error', (err) => o.onError(err));
  return pool;
}
