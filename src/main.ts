import { ConfigError, loadConfig } from './config/load-config.js';
import type { GatewayConfig } from './core/config.js';
import { createLogger } from './core/log.js';
import { startEmbeddedCluster, type EmbeddedCluster } from './embedded/embedded-cluster.js';
import { startGateway } from './gateway.js';

/**
 * The composition root: read config; without a catalog URL start embedded PostgreSQL (catalog +
 * shared database + shards under ./.shardgate, kept across restarts); serve until SIGINT/SIGTERM.
 */
async function main(): Promise<void> {
  let config: GatewayConfig;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);

  let cluster: EmbeddedCluster | undefined;
  let catalogUrl = config.catalogUrl;
  if (!catalogUrl) {
    log.info(
      { dataDir: config.embedded.dataDir },
      'starting embedded PostgreSQL (catalog + shards)',
    );
    cluster = await startEmbeddedCluster({
      ...config.embedded,
      log: (line) => log.debug({ postgres: line }),
    });
    catalogUrl = cluster.catalogUrl;
    config = {
      ...config,
      sharedUrl: config.sharedUrl ?? cluster.sharedUrl,
      shards:
        config.shards.length > 0
          ? config.shards
          : cluster.shards.map((s) => ({ ...s, weight: 100 })),
    };
  }

  const gateway = await startGateway({ ...config, catalogUrl }, log).catch(async (err: unknown) => {
    await cluster?.stop();
    throw err;
  });
  log.info({ address: gateway.address }, `shardgate listening on ${gateway.address}`);

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    await gateway.close();
    await cluster?.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((err: unknown) => {
  process.stderr.write(`shardgate failed to start: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
