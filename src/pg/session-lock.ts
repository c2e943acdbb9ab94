import pg from 'pg';

/** How long taking a lock may wait for the catalog to connect and answer, by default. */
export const LOCK_TIMEOUT_MS = 3_000;

/** A held session-level advisory lock; released when `release` is called or the process dies. */
export interface SessionLock {
  /**
   * Aborts when the lock's connection fails or ends, which releases the lock on the server: from
   * then on another process may take it. Whoever did the guarded work must take it again (or
   * stop) before going on.
   */
  readonly lost: AbortSignal;
  release(): Promise<void>;
}

/**
 * Tries to take a session-level advisory lock on its own connection. Because the lock lives as
 * long as that connection, a crashed process frees it at once, so another process can take over
 * the job it guarded. Undefined when someone else holds it.
 */
export async function trySessionLock(
  url: string,
  key: string,
  options: { timeoutMs?: number } = {},
): Promise<SessionLock | undefined> {
  const timeoutMs = options.timeoutMs ?? LOCK_TIMEOUT_MS;
  const client = new pg.Client({
    connectionString: url,
    application_name: 'shardgate-lock',
    // A silent catalog must not hold whoever asks for a lock (move recovery asks every few
    // seconds): connecting and the non-blocking try each get a bound.
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    keepAlive: true,
    // Like every pooled connection: nothing in `public` (or any schema) can shadow pg_catalog.
    options: '-c search_path=pg_catalog',
  });
  const lost = new AbortController();
  const onLost = (): void => lost.abort(new Error(`the connection holding lock ${key} ended`));
  client.on('error', onLost);
  client.on('end', onLost);
  await client.connect();
  try {
    const res = await client.query<{ ok: boolean }>(
      'SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended($1, 0)) AS ok',
      [key],
    );
    if (!res.rows[0]?.ok) {
      await client.end();
      return undefined;
    }
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return {
    lost: lost.signal,
    async release() {
      await client.end().catch(() => undefined);
    },
  };
}
