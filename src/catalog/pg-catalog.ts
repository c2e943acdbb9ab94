import { ShardgateError } from '../core/errors.js';
import type { ClientId, ShardName } from '../core/ids.js';
import type { Database } from '../pg/database.js';
import { PgListener } from '../pg/listener.js';
import type {
  Catalog,
  PlacementRow,
  CatalogEvent,
  ListTenantsQuery,
  ShardRecord,
  TenantRecord,
  TenantStatus,
  Topology,
} from './catalog.js';
import { catalogMigrations } from './catalog-migrations.js';

const CHANNEL = 'shardgate_catalog';
/** Arbitrary but fixed: serialises catalog migrations across gateway replicas. */
const MIGRATION_LOCK_KEY = 7_270_451_001;

const TENANT_COLUMNS =
  'client_id, schema_name, shard, status, schema_version, created_at, updated_at, churned_at, writes_paused, placement_epoch';

interface TenantRow {
  client_id: string;
  schema_name: string;
  shard: string;
  status: TenantStatus;
  schema_version: number;
  created_at: Date;
  updated_at: Date;
  churned_at: Date | null;
  writes_paused: boolean;
  placement_epoch: string;
}

/** The catalog in a PostgreSQL database (schema `shardgate`), with LISTEN/NOTIFY as change feed. */
export class PgCatalog implements Catalog {
  readonly #db: Database;
  readonly #url: string;
  #listener: PgListener | undefined;
  #feedLostAtMs: number | undefined;

  constructor(db: Database, url: string) {
    this.#db = db;
    this.#url = url;
  }

  get watching(): boolean {
    return this.#listener?.connected ?? false;
  }

  get feedLostAtMs(): number | undefined {
    return this.#feedLostAtMs;
  }

  async migrate(): Promise<void> {
    await this.#db.transaction(undefined, async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      await tx.query('CREATE SCHEMA IF NOT EXISTS shardgate');
      await tx.query(`CREATE TABLE IF NOT EXISTS shardgate.catalog_migrations (
        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const done = await tx.query<{ version: number }>(
        'SELECT version FROM shardgate.catalog_migrations',
      );
      const applied = new Set(done.rows.map((r) => r.version));
      for (const m of catalogMigrations) {
        if (applied.has(m.version)) continue;
        await tx.query(m.sql);
        await tx.query('INSERT INTO shardgate.catalog_migrations (version, name) VALUES ($1, $2)', [
          m.version,
          m.name,
        ]);
      }
    });
  }

  async registerShards(
    shards: readonly { name: ShardName; url: string; weight: number }[],
    vnodes: number,
  ): Promise<void> {
    await this.#db.transaction(undefined, async (tx) => {
      await tx.query(
        'INSERT INTO shardgate.ring (vnodes, epoch) VALUES ($1, 0) ON CONFLICT (singleton) DO NOTHING',
        [vnodes],
      );
      let added = 0;
      for (const s of shards) {
        const res = await tx.query(
          `INSERT INTO shardgate.shards (name, url, weight) VALUES ($1, $2, $3)
           ON CONFLICT (name) DO NOTHING`,
          [s.name, s.url, s.weight],
        );
        added += res.rowCount ?? 0;
      }
      if (added > 0) await tx.query('UPDATE shardgate.ring SET epoch = epoch + 1');
    });
  }

  async loadTopology(signal?: AbortSignal): Promise<Topology> {
    return this.#db.transaction(signal, async (tx) => {
      const ring = await tx.query<{ vnodes: number; epoch: string }>(
        'SELECT vnodes, epoch FROM shardgate.ring',
      );
      const shards = await tx.query<ShardRecord>(
        'SELECT name, url, weight, state FROM shardgate.shards ORDER BY name',
      );
      const row = ring.rows[0];
      return {
        shards: shards.rows,
        vnodes: row?.vnodes ?? 64,
        epoch: row ? Number(row.epoch) : 0,
      };
    });
  }

  async getTenant(clientId: ClientId, signal?: AbortSignal): Promise<TenantRecord | undefined> {
    const res = await this.#db.query<TenantRow>(
      `SELECT ${TENANT_COLUMNS} FROM shardgate.tenants WHERE client_id = $1`,
      [clientId],
      signal,
    );
    return res.rows[0] && toTenant(res.rows[0]);
  }

  async insertTenant(
    entry: { clientId: ClientId; schema: string; shard: ShardName },
    signal?: AbortSignal,
  ): Promise<{ tenant: TenantRecord; inserted: boolean }> {
    // No conflict target: every unique index (client_id and schema_name) must be an arbiter.
    // With `ON CONFLICT (client_id)` a concurrent insert of the same client could fail on
    // schema_name's index with 23505 instead of doing nothing.
    for (let attempt = 0; attempt < 3; attempt++) {
      const res = await this.#db.query<TenantRow>(
        `INSERT INTO shardgate.tenants (client_id, schema_name, shard, status)
         VALUES ($1, $2, $3, 'provisioning') ON CONFLICT DO NOTHING
         RETURNING ${TENANT_COLUMNS}`,
        [entry.clientId, entry.schema, entry.shard],
        signal,
      );
      if (res.rows[0]) return { tenant: toTenant(res.rows[0]), inserted: true };
      const existing = await this.getTenant(entry.clientId, signal);
      if (existing) return { tenant: existing, inserted: false };
      // Deleted in between (a failed create cleaned up): try again.
    }
    throw new ShardgateError(
      'already-exists',
      `schema '${entry.schema}' is registered to another client; the directory needs repair`,
    );
  }

  async setTenantStatus(
    clientId: ClientId,
    from: readonly TenantStatus[],
    to: TenantStatus,
    signal?: AbortSignal,
  ): Promise<TenantRecord | undefined> {
    const res = await this.#db.query<TenantRow>(
      `UPDATE shardgate.tenants
       SET status = $3, updated_at = date_trunc('milliseconds', now()),
           churned_at = CASE WHEN $3 = 'churned' THEN date_trunc('milliseconds', now()) END
       WHERE client_id = $1 AND status = ANY($2::text[])
       RETURNING ${TENANT_COLUMNS}`,
      [clientId, from, to],
      signal,
    );
    return res.rows[0] && toTenant(res.rows[0]);
  }

  async markProvisioned(
    entry: { clientId: ClientId; schema: string; shard: ShardName },
    schemaVersion: number,
    signal?: AbortSignal,
  ): Promise<{ tenant: TenantRecord; inserted: boolean }> {
    // An upsert, not an UPDATE: a failed concurrent create of the same client may have deleted the
    // provisioning entry while this one made the schema; the entry then comes back, pointing at
    // the schema just made. An entry on another shard is left alone (its own create finishes it).
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.#db.query<TenantRow & { inserted: boolean }>(
          `INSERT INTO shardgate.tenants AS t (client_id, schema_name, shard, status, schema_version)
           VALUES ($1, $2, $3, 'active', $4)
           ON CONFLICT (client_id) DO UPDATE
             SET status = CASE WHEN t.status = 'provisioning' THEN 'active' ELSE t.status END,
                 schema_version = GREATEST(t.schema_version, EXCLUDED.schema_version),
                 updated_at = date_trunc('milliseconds', now())
             WHERE t.shard = EXCLUDED.shard
           RETURNING ${TENANT_COLUMNS}, (xmax = 0) AS inserted`,
          [entry.clientId, entry.schema, entry.shard, schemaVersion],
          signal,
        );
        const row = res.rows[0];
        if (row) return { tenant: toTenant(row), inserted: row.inserted };
        const existing = await this.getTenant(entry.clientId, signal);
        if (existing) return { tenant: existing, inserted: false };
      } catch (err) {
        // schema_name's index is no arbiter here: a racing insert of this client can hit it.
        if (!(err instanceof ShardgateError && err.code === 'already-exists') || attempt >= 2)
          throw err;
      }
      if (attempt >= 2)
        throw new ShardgateError(
          'aborted',
          `the directory entry of '${entry.clientId}' kept changing; retry`,
        );
    }
  }

  async setSchemaVersion(clientId: ClientId, schemaVersion: number): Promise<void> {
    await this.#db.query(
      `UPDATE shardgate.tenants SET schema_version = GREATEST(schema_version, $2) WHERE client_id = $1`,
      [clientId, schemaVersion],
    );
  }

  async deleteProvisioningTenant(clientId: ClientId): Promise<void> {
    await this.#db.query(
      `DELETE FROM shardgate.tenants WHERE client_id = $1 AND status = 'provisioning'`,
      [clientId],
    );
  }

  async listTenants(q: ListTenantsQuery, signal?: AbortSignal): Promise<TenantRecord[]> {
    const res = await this.#db.query<TenantRow>(
      `SELECT ${TENANT_COLUMNS} FROM shardgate.tenants
       WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR shard = $2)
         AND client_id > $3
       ORDER BY client_id LIMIT $4`,
      [q.status ?? null, q.shard ?? null, q.afterClientId ?? '', q.limit],
      signal,
    );
    return res.rows.map(toTenant);
  }

  async listTenantsBehind(
    shard: ShardName,
    version: number,
    afterClientId: string,
    limit: number,
  ): Promise<TenantRecord[]> {
    const res = await this.#db.query<TenantRow>(
      `SELECT ${TENANT_COLUMNS} FROM shardgate.tenants
       WHERE shard = $1 AND schema_version < $2 AND status <> 'provisioning' AND client_id > $3
       ORDER BY client_id LIMIT $4`,
      [shard, version, afterClientId, limit],
    );
    return res.rows.map(toTenant);
  }

  async countTenantsByShard(signal?: AbortSignal): Promise<Map<string, number>> {
    const res = await this.#db.query<{ shard: string; n: string }>(
      'SELECT shard, count(*) AS n FROM shardgate.tenants GROUP BY shard',
      [],
      signal,
    );
    return new Map(res.rows.map((r) => [r.shard, Number(r.n)]));
  }

  async listPlacements(signal?: AbortSignal): Promise<PlacementRow[]> {
    const res = await this.#db.query<PlacementRow>(
      `SELECT client_id AS "clientId", shard, schema_name AS schema, pinned FROM shardgate.tenants
       WHERE status <> 'provisioning' ORDER BY client_id`,
      [],
      signal,
    );
    return res.rows;
  }

  async setWritesPaused(clientId: ClientId, paused: boolean): Promise<void> {
    await this.#db.query('UPDATE shardgate.tenants SET writes_paused = $2 WHERE client_id = $1', [
      clientId,
      paused,
    ]);
  }

  async watch(onChange: (event: CatalogEvent) => void): Promise<void> {
    const listener = new PgListener({ url: this.#url, channel: CHANNEL });
    this.#listener = listener;
    // Changes sent while the feed was down are lost: caches must start over once it is back.
    listener.on('connected', () => {
      this.#feedLostAtMs = undefined;
      onChange({ kind: 'resync' });
    });
    listener.on('disconnected', () => {
      this.#feedLostAtMs = Date.now();
      onChange({ kind: 'feed-lost' });
    });
    listener.on('notification', (payload: string) => {
      if (payload === 's') onChange({ kind: 'topology' });
      else if (payload.startsWith('t:')) onChange({ kind: 'tenant', clientId: payload.slice(2) });
      else if (payload.startsWith('k:')) onChange({ kind: 'token', tokenId: payload.slice(2) });
    });
    await listener.start();
  }

  async close(): Promise<void> {
    await this.#listener?.close();
  }
}

function toTenant(r: TenantRow): TenantRecord {
  return {
    clientId: r.client_id as ClientId,
    schema: r.schema_name,
    shard: r.shard as ShardName,
    status: r.status,
    schemaVersion: r.schema_version,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    churnedAt: r.churned_at,
    writesPaused: r.writes_paused,
    placementEpoch: Number(r.placement_epoch),
  };
}
