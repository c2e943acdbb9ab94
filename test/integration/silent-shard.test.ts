import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { ShardgateError } from '../../src/core/errors.js';
import { CANCEL_GRACE_MS, Database, DRIVER_TIMEOUT_GRACE_MS } from '../../src/pg/database.js';
import { trySessionLock } from '../../src/pg/session-lock.js';
import { startFreezableProxy, type FreezableProxy } from '../support/freezable-proxy.js';
import { createDatabase, eventually, uniqueSuffix } from '../support/harness.js';

/** Short enough for a test; a silent shard must cost a call about this, not minutes. */
const STATEMENT_TIMEOUT_MS = 600;

/**
 * A shard whose network path goes silent (a vanished host, a failed-over address, a partition):
 * no reset, no error, no answer. Without a bound on the driver side a pooled connection would wait
 * for TCP to give up, about 15 minutes, holding the call's per-client slot and the pool's
 * connection all that time.
 */
describe('a shard that goes silent', () => {
  let proxy: FreezableProxy;
  let db: Database;
  const errors: Error[] = [];

  beforeAll(async () => {
    const shardServer = inject('pgServers')[1]!;
    const url = await createDatabase(shardServer.adminUrl, `t_${uniqueSuffix()}_silent`);
    proxy = await startFreezableProxy(url);
    db = new Database({
      url: proxy.url,
      label: "shard 'silent'",
      max: 3,
      idleTimeoutMs: 30_000,
      connectionTimeoutMs: 1_000,
      statementTimeoutMs: STATEMENT_TIMEOUT_MS,
      maxLifetimeSeconds: 0,
      onError: (err) => errors.push(err),
    });
  });

  afterEach(() => proxy.thaw());

  afterAll(async () => {
    proxy.thaw();
    await db.close();
    await proxy.close();
  });

  /** Fills the pool with live connections, so the next statements use ones opened before. */
  async function warmPool(): Promise<void> {
    await Promise.all([1, 2, 3].map(() => db.query('SELECT pg_catalog.pg_sleep(0.05)')));
    expect(db.stats().total).toBe(3);
  }

  async function outcome(
    p: Promise<unknown>,
  ): Promise<{ ms: number; error: ShardgateError | undefined }> {
    const started = performance.now();
    const error = await p.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error === undefined || error instanceof ShardgateError).toBe(true);
    return { ms: performance.now() - started, error: error as ShardgateError | undefined };
  }

  it('fails a statement UNAVAILABLE soon after the statement timeout and drops its connection', async () => {
    await warmPool();
    proxy.freeze();
    const { ms, error } = await outcome(db.query('SELECT 1'));
    expect(error?.code).toBe('unavailable');
    expect(error?.message).toMatch(/shard 'silent' is unavailable/);
    // the statement timeout plus the driver's grace, with room for a slow machine; never minutes
    expect(ms).toBeGreaterThan(STATEMENT_TIMEOUT_MS + DRIVER_TIMEOUT_GRACE_MS - 100);
    expect(ms).toBeLessThan(STATEMENT_TIMEOUT_MS + DRIVER_TIMEOUT_GRACE_MS + 3_000);
    expect(db.stats().total).toBe(2);

    proxy.thaw();
    const { rows } = await db.query<{ one: number }>('SELECT 1 AS one');
    expect(rows).toEqual([{ one: 1 }]);
  });

  it('ends a cancelled call after the cancel grace instead of waiting for the silent shard', async () => {
    await warmPool();
    proxy.freeze();
    const controller = new AbortController();
    const call = outcome(db.query('SELECT 1', [], controller.signal));
    setTimeout(() => controller.abort(), 50);
    const { ms, error } = await call;
    expect(error?.code).toBe('cancelled');
    // The cancel request cannot reach the shard either: the connection is given up after the
    // cancel grace, well before the driver's own timeout would end the wait.
    expect(ms).toBeGreaterThan(CANCEL_GRACE_MS);
    expect(ms).toBeLessThan(STATEMENT_TIMEOUT_MS + DRIVER_TIMEOUT_GRACE_MS);
    expect(db.stats().total).toBe(2);

    proxy.thaw();
    expect((await db.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  // A reset with no word from the server (a failover, a killed backend, a restarted proxy): the
  // checked-out connection's 'error' event had no listener, an uncaught exception that ends the
  // gateway process (vitest reports it as an unhandled error and fails the run).
  it('fails a statement UNAVAILABLE when its connection is reset, and the process goes on', async () => {
    const running = outcome(db.query('SELECT pg_catalog.pg_sleep(0.3)'));
    await new Promise((r) => setTimeout(r, 50));
    proxy.sever();
    const { error } = await running;
    expect(error?.code).toBe('unavailable');
    // The idle connections were reset too; once the pool has seen that, it connects anew.
    await eventually(async () =>
      expect((await db.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]),
    );
  });

  it('fails a transaction UNAVAILABLE when its connection is reset between statements', async () => {
    const { error } = await outcome(
      db.transaction(undefined, async (q) => {
        await q.query('SELECT 1');
        proxy.sever();
        await new Promise((r) => setTimeout(r, 50)); // the reset lands while no statement runs
        await q.query('SELECT 2');
      }),
    );
    expect(error?.code).toBe('unavailable');
    await eventually(async () =>
      expect((await db.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]),
    );
  });

  it('gives up taking a session lock (a move lock) from a silent server after its timeout', async () => {
    proxy.freeze();
    const started = performance.now();
    await expect(trySessionLock(proxy.url, 'silent-lock', { timeoutMs: 500 })).rejects.toThrow();
    // Move recovery asks for locks every few seconds: without a bound each ask would wait until
    // the server answered again.
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  it('rolls back a transaction whose connection it gave up', async () => {
    await db.query('CREATE SCHEMA IF NOT EXISTS silent');
    await db.query('CREATE TABLE IF NOT EXISTS silent.rows (n int)');
    await warmPool();
    const controller = new AbortController();
    const { ms, error } = await outcome(
      db.transaction(controller.signal, async (q) => {
        await q.query('INSERT INTO silent.rows VALUES (1)');
        proxy.freeze();
        setTimeout(() => controller.abort(), 50);
        await q.query('INSERT INTO silent.rows VALUES (2)');
      }),
    );
    expect(error?.code).toBe('cancelled');
    expect(ms).toBeLessThan(STATEMENT_TIMEOUT_MS + DRIVER_TIMEOUT_GRACE_MS);
    proxy.thaw();
    // The server saw the connection close mid-transaction and rolled it back: nothing half-written,
    // and no backend is left holding the transaction open.
    await eventually(async () => {
      const { rows } = await db.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_catalog.pg_stat_activity
          WHERE datname = pg_catalog.current_database() AND state LIKE 'idle in transaction%'`,
      );
      expect(rows[0]!.n).toBe('0');
    });
    const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM silent.rows');
    expect(rows[0]!.n).toBe('0');
  });
});
