import { join } from 'node:path';
import pg from 'pg';
import { superuser } from './embedded-host.js';
import { EmbeddedServer } from './embedded-server.js';

/** Options of a local cluster; each server's defaults are those of EmbeddedServerOptions. */
export interface EmbeddedClusterOptions {
  /** Holds `catalog/`, `shard-1/` … and their password files. */
  dataDir: string;
  /** The catalog server listens here, shard i on basePort + i. */
  basePort: number;
  /** How many shard servers to run. */
  shardCount: number;
  /** Keep the data when stopped. Default true; false deletes it (tests). */
  persistent?: boolean;
  /** Receives every server's log lines, prefixed with the server's name. */
  log?: (line: string) => void;
}

/**
 * A running local cluster: one catalog server (catalog and shared databases) and N shards. Its
 * URLs connect as the runtime role, never as the superuser (`servers[i].urlFor` is that one).
 */
export interface EmbeddedCluster {
  catalogUrl: string;
  sharedUrl: string;
  shards: { name: string; url: string }[];
  /** The catalog server first, then shard-1 … shard-N. */
  servers: EmbeddedServer[];
  /** Stops every server; a no-op once stopped. */
  stop(): Promise<void>;
}

const catalogDatabase = 'shardgate_catalog';
const sharedDatabase = 'shardgate_shared';
const shardDatabase = 'shardgate';

/**
 * Starts the catalog and shard servers in parallel. If any fails, the others are stopped before the
 * first failure is rethrown, so a failed start leaves no server running.
 */
export async function startEmbeddedCluster(opts: EmbeddedClusterOptions): Promise<EmbeddedCluster> {
  const specs = [
    { name: 'catalog', port: opts.basePort, databases: [catalogDatabase, sharedDatabase] },
    ...Array.from({ length: opts.shardCount }, (_, i) => ({
      name: `shard-${i + 1}`,
      port: opts.basePort + i + 1,
      databases: [shardDatabase],
    })),
  ];
  const results = await Promise.allSettled(
    specs.map((spec) =>
      EmbeddedServer.start({
        dataDir: join(opts.dataDir, spec.name),
        port: spec.port,
        databases: spec.databases,
        ...(opts.persistent === undefined ? {} : { persistent: opts.persistent }),
        log: (line) => opts.log?.(`[${spec.name}] ${line}`),
      }),
    ),
  );
  const servers = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) {
    await Promise.allSettled(servers.map((s) => s.stop()));
    throw failure.reason;
  }
  const [catalog, ...shardServers] = servers as [EmbeddedServer, ...EmbeddedServer[]];
  try {
    await adoptRuntimeUrls(catalog, servers);
  } catch (err) {
    await Promise.allSettled(servers.map((s) => s.stop()));
    throw err;
  }
  return {
    catalogUrl: catalog.runtimeUrlFor(catalogDatabase),
    sharedUrl: catalog.runtimeUrlFor(sharedDatabase),
    shards: shardServers.map((s, i) => ({
      name: `shard-${i + 1}`,
      url: s.runtimeUrlFor(shardDatabase),
    })),
    servers,
    stop: () => stopAll(servers),
  };
}

/**
 * A catalog written by a gateway that ran as the superuser (before the runtime role existed)
 * registered its shards with superuser URLs, and registration leaves known shards alone. Points
 * every shard URL that reaches one of these servers as the superuser at the runtime role instead.
 */
async function adoptRuntimeUrls(catalog: EmbeddedServer, servers: EmbeddedServer[]): Promise<void> {
  const byPort = new Map(servers.map((s) => [String(s.port), s]));
  const client = new pg.Client({
    connectionString: catalog.urlFor(catalogDatabase),
    options: '-c search_path=pg_catalog',
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{ ok: boolean }>(
      `SELECT to_regclass('shardgate.shards') IS NOT NULL AS ok`,
    );
    if (!rows[0]?.ok) return;
    const shards = await client.query<{ name: string; url: string }>(
      'SELECT name, url FROM shardgate.shards',
    );
    for (const { name, url } of shards.rows) {
      const parsed = URL.canParse(url) ? new URL(url) : undefined;
      const server = parsed && byPort.get(parsed.port);
      if (!parsed || !server || decodeURIComponent(parsed.username) !== superuser) continue;
      if (!['127.0.0.1', 'localhost'].includes(parsed.hostname)) continue;
      const database = decodeURIComponent(parsed.pathname.slice(1));
      await client.query('UPDATE shardgate.shards SET url = $2 WHERE name = $1', [
        name,
        server.runtimeUrlFor(database),
      ]);
    }
  } finally {
    await client.end();
  }
}

async function stopAll(servers: EmbeddedServer[]): Promise<void> {
  // EmbeddedServer.stop is idempotent, which makes this one idempotent too.
  const results = await Promise.allSettled(servers.map((s) => s.stop()));
  const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
  if (errors.length > 0) throw new AggregateError(errors, 'some embedded servers did not stop');
}
