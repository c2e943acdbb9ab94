import type { Catalog } from '../catalog/catalog.js';
import type { ShardName } from '../core/ids.js';
import { clientMigrations, type ClientMigration } from '../shards/client-migrations.js';
import { ensureClientSchema } from '../shards/client-schema.js';
import type { ShardPools } from '../shards/shard-pools.js';

/** What one migration run did, per client; it never throws halfway. */
export interface MigrationReport {
  migrated: string[];
  failed: { clientId: string; error: string }[];
}

/**
 * Brings every client schema on the given shards up to the newest client migration. The catalog
 * records each tenant's schema_version, so finding the clients that lag is one indexed query per
 * page, not a visit to every schema. Each schema migrates in its own transaction; a failure is
 * reported and the run goes on. Safe to run from several replicas at once (per-schema locks).
 */
export async function migrateClientSchemas(opts: {
  catalog: Catalog;
  pools: ShardPools;
  shards: readonly ShardName[];
  migrations?: readonly ClientMigration[];
  pageSize?: number;
}): Promise<MigrationReport> {
  const migrations = opts.migrations ?? clientMigrations;
  const latest = migrations.at(-1)?.version ?? 0;
  const report: MigrationReport = { migrated: [], failed: [] };
  for (const shard of opts.shards) {
    let after = '';
    for (;;) {
      const page = await opts.catalog.listTenantsBehind(shard, latest, after, opts.pageSize ?? 100);
      if (page.length === 0) break;
      for (const tenant of page) {
        try {
          const version = await ensureClientSchema(opts.pools.get(shard), tenant.schema, {
            migrations,
          });
          await opts.catalog.setSchemaVersion(tenant.clientId, version);
          report.migrated.push(tenant.clientId);
        } catch (err) {
          report.failed.push({ clientId: tenant.clientId, error: (err as Error).message });
        }
      }
      after = page.at(-1)!.clientId;
    }
  }
  return report;
}
