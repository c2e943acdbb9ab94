import { join } from 'node:path';
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

/** A running local cluster: one catalog server (catalog and shared databases) and N shards. */
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
  return {
    catalogUrl: catalog.urlFor(catalogDatabase),
    sharedUrl: catalog.urlFor(sharedDatabase),
    shards: shardServers.map((s, i) => ({ name: `shard-${i + 1}`, url: s.urlFor(shardDatabase) })),
    servers,
    stop: () => stopAll(servers),
  };
}

async function stopAll(servers: EmbeddedServer[]): Promise<void> {
  // EmbeddedServer.stop is idempotent, which makes this one idempotent too.
  const results = await Promise.allSettled(servers.map((s) => s.stop()));
  const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
  if (errors.length > 0) throw new AggregateError(errors, 'some embedded servers did not stop');
}
