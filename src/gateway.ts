import type { Logger } from 'pino';
import { createGrpcServer } from './api/grpc-server.js';
import type { GatewayContext } from './api/gateway-context.js';
import { AuditLog } from './catalog/audit-log.js';
import { purgeAuditPeriodically } from './catalog/audit-retention.js';
import { exposureProblem } from './auth/exposure.js';
import { createServerCredentials } from './auth/server-credentials.js';
import { TokenVerifier } from './auth/token-verifier.js';
import { PgCatalog } from './catalog/pg-catalog.js';
import { TokenStore } from './catalog/token-store.js';
import type { TenantRecord } from './catalog/catalog.js';
import type { GatewayConfig } from './core/config.js';
import { ShardgateError } from './core/errors.js';
import type { ShardName } from './core/ids.js';
import { migrateClientSchemas } from './jobs/schema-migrator.js';
import { Database } from './pg/database.js';
import { checkDatabaseRoles, shardTargets } from './pg/role-check.js';
import { MoveJournal } from './catalog/move-journal.js';
import { TopologyAdmin } from './catalog/topology-admin.js';
import { Failpoints } from './core/failpoints.js';
import { TenantMover } from './rebalance/tenant-mover.js';
import { Router, type Placement } from './router/router.js';
import { quoteSchema } from './shards/client-schema.js';
import { HandoffFeed } from './shards/handoff-feed.js';
import { databaseIdentity } from './shards/replication.js';
import { ShardPools } from './shards/shard-pools.js';
import { SharedStore } from './shared-db/shared-store.js';

/** A running gateway process's handle. */
export interface RunningGateway {
  /** host:port actually bound (port 0 in the config picks a free one). */
  readonly address: string;
  readonly port: number;
  readonly context: GatewayContext;
  /** Stops accepting calls, lets running ones finish (up to graceMs), closes every pool. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Composition: connects to the catalog (migrating it and registering configured shards), follows
 * its change feed, opens one pool per shard, and serves gRPC. Stateless: every replica pointed at
 * the same catalog routes identically.
 */
export async function startGateway(
  config: GatewayConfig & { catalogUrl: string },
  log: Logger,
  options: { failpoints?: Failpoints } = {},
): Promise<RunningGateway> {
  const exposed = exposureProblem(config);
  if (exposed) throw new ShardgateError('failed-precondition', exposed);
  if (!config.auth.required) {
    log.warn(
      { listen: config.listen },
      'auth.required is off: every local caller without a token is admin; set SHARDGATE_AUTH_REQUIRED=true outside development',
    );
  }
  const credentials = createServerCredentials(config.tls);
  const dbOptions = {
    ...config.pool,
    onError: (err: Error) => log.warn({ err }, 'idle connection error'),
  };
  const catalogDb = new Database({ ...dbOptions, url: config.catalogUrl, label: 'the catalog' });
  const sharedUrl = config.sharedUrl ?? config.catalogUrl;
  const sharedDb =
    sharedUrl === config.catalogUrl
      ? catalogDb
      : new Database({ ...dbOptions, url: sharedUrl, label: 'the shared database' });
  const catalog = new PgCatalog(catalogDb, config.catalogUrl);
  const shared = new SharedStore(sharedDb);
  const pools = new ShardPools(config.pool, (shard, err) =>
    log.warn({ err, shard }, 'idle shard connection error'),
  );

  // Before anything is created or registered: a refused superuser must have made nothing.
  await checkDatabaseRoles(
    [
      { url: config.catalogUrl, label: 'the catalog' },
      { url: sharedUrl, label: 'the shared database' },
      ...shardTargets(config.shards),
    ],
    config,
    log,
  );
  await catalog.migrate();
  await shared.migrate();
  await catalog.registerShards(
    config.shards.map((s) => ({ name: s.name as ShardName, url: s.url, weight: s.weight })),
    config.ring.vnodes,
  );
  const registered = (await catalog.loadTopology()).shards;
  warnOfIgnoredUrls(config.shards, registered, log);
  await checkDatabaseRoles(shardTargets(registered, config.shards), config, log);

  const tokens = new TokenStore(catalogDb);
  // While the catalog's change feed is down the caches may miss a change; within the grace they
  // are still used (config catalog.feedLossGraceMs), so a catalog blip does not stop every call.
  const graceMs = config.catalog.feedLossGraceMs;
  const cacheTrusted = (): boolean =>
    catalog.watching ||
    (catalog.feedLostAtMs !== undefined && Date.now() - catalog.feedLostAtMs < graceMs);
  const verifier = new TokenVerifier({
    loadToken: (id) => tokens.get(id),
    cacheTrusted,
    bootstrapSecret: config.auth.adminToken,
  });
  const router = new Router({
    loadPlacement: async (clientId, signal) => {
      const tenant = await catalog.getTenant(clientId, signal);
      return tenant && toPlacement(tenant);
    },
    cacheTrusted,
  });

  const feed = new HandoffFeed(pools);
  let topologyChain = Promise.resolve();
  const refreshTopology = (): Promise<void> =>
    (topologyChain = topologyChain
      .then(async () => {
        const topology = await catalog.loadTopology();
        await feed.reconnect(pools.sync(topology.shards));
        const active = topology.shards.filter((s) => s.state === 'active');
        router.setRing(active, topology.vnodes, topology.epoch);
      })
      .catch((err: unknown) => log.error({ err }, 'could not load the topology from the catalog')));

  await catalog.watch((event) => {
    if (event.kind === 'tenant') router.invalidate(event.clientId);
    else if (event.kind === 'token') verifier.forget(event.tokenId);
    else if (event.kind === 'feed-lost') return;
    else {
      if (event.kind === 'resync') {
        router.clear();
        verifier.clear();
      }
      void refreshTopology();
    }
  });
  await refreshTopology();

  const journal = new MoveJournal(catalogDb);
  const mover = new TenantMover({
    catalog,
    journal,
    pools,
    catalogUrl: config.catalogUrl,
    failpoints: options.failpoints ?? Failpoints.fromEnv(process.env.SHARDGATE_FAILPOINTS),
    log,
  });
  const context: GatewayContext = {
    config,
    catalog,
    router,
    pools,
    feed,
    shared,
    topologyAdmin: new TopologyAdmin(catalogDb),
    journal,
    mover,
    tokens,
    verifier,
    audit: new AuditLog(catalogDb),
    refreshTopology,
    probeShard: (url, signal, schemas) => probeShard(url, config, signal, log, schemas),
    log,
  };
  const { server, health } = createGrpcServer(context);
  const port = await server.listen(config.listen, credentials);
  const host = config.listen.slice(0, config.listen.lastIndexOf(':'));
  health.setStatus('healthy');

  void migrateInBackground(context, log);
  // Moves whose process died are taken over (rolled back or finished) by whoever gets their lock.
  const recoverMoves = (): void =>
    void mover.recover().catch((err: unknown) => log.warn({ err }, 'move recovery'));
  recoverMoves();
  const recoveryTimer = setInterval(recoverMoves, MOVE_RECOVERY_INTERVAL_MS);
  recoveryTimer.unref();
  const stopAuditPurge = purgeAuditPeriodically(context.audit, config.audit.retentionDays, log);

  return {
    address: `${host}:${port}`,
    port,
    context,
    async close(graceMs = 5_000) {
      health.setStatus('unhealthy');
      clearInterval(recoveryTimer);
      await stopAuditPurge();
      const timer = setTimeout(() => server.forceShutdown(), graceMs);
      await Promise.race([mover.idle(), new Promise((r) => setTimeout(r, graceMs).unref())]);
      await feed.close();
      await server.shutdown();
      clearTimeout(timer);
      await catalog.close();
      await pools.close();
      await Promise.all([catalogDb.close(), sharedDb === catalogDb ? undefined : sharedDb.close()]);
    },
  };
}

/** How often a gateway looks for moves whose process died. */
const MOVE_RECOVERY_INTERVAL_MS = 3_000;

/**
 * Connects to a would-be shard; returns which database it is (UNAVAILABLE when it does not answer)
 * and how many of `schemas` it lacks. A superuser URL is refused (FAILED_PRECONDITION) unless
 * database.allowSuperuser.
 */
async function probeShard(
  url: string,
  config: GatewayConfig,
  signal: AbortSignal,
  log: Logger,
  schemas: readonly string[] = [],
): Promise<{ identity: string; missingSchemas: number }> {
  const db = new Database({
    ...config.pool,
    max: 1,
    url,
    label: 'the new shard',
    onError: () => undefined,
  });
  try {
    const identity = await databaseIdentity(db, signal);
    await checkDatabaseRoles([{ url, label: 'the new shard', shard: true }], config, log);
    const present = await db.query<{ n: string }>(
      'SELECT count(*) AS n FROM pg_catalog.pg_namespace WHERE nspname = ANY($1::text[])',
      [schemas],
      signal,
    );
    return { identity, missingSchemas: schemas.length - Number(present.rows[0]!.n) };
  } finally {
    await db.close();
  }
}

/**
 * Configured shards are registered only when absent, so a changed URL in the configuration (a
 * rotated password, a new host) is not used: say so, without the URL (it holds a password).
 */
function warnOfIgnoredUrls(
  configured: readonly { name: string; url: string }[],
  registered: readonly { name: string; url: string }[],
  log: Logger,
): void {
  for (const c of configured) {
    const r = registered.find((s) => s.name === c.name);
    if (r && r.url !== c.url) {
      log.warn(
        { shard: c.name },
        `the configured URL of shard '${c.name}' differs from the one registered in the catalog, ` +
          `which every gateway uses; to change it: shardctl set-dsn ${c.name} <dsn>`,
      );
    }
  }
}

function toPlacement(t: TenantRecord): Placement {
  return {
    clientId: t.clientId,
    shard: t.shard,
    schema: t.schema,
    schemaIdent: quoteSchema(t.schema),
    status: t.status,
    writesPaused: t.writesPaused,
  };
}

async function migrateInBackground(ctx: GatewayContext, log: Logger): Promise<void> {
  try {
    const topology = await ctx.catalog.loadTopology();
    const report = await migrateClientSchemas({
      catalog: ctx.catalog,
      pools: ctx.pools,
      shards: topology.shards.map((s) => s.name),
    });
    if (report.migrated.length > 0 || report.failed.length > 0) {
      log.info(
        { migrated: report.migrated.length, failed: report.failed },
        'client schema migration',
      );
    }
  } catch (err) {
    log.warn({ err }, 'client schema migration did not run; it runs again at the next start');
  }
}
