import type { ClientId, ShardName } from '../core/ids.js';

export const shardStates = ['active', 'draining'] as const;
export type ShardState = (typeof shardStates)[number];

export const tenantStatuses = ['provisioning', 'active', 'churned'] as const;
export type TenantStatus = (typeof tenantStatuses)[number];

/** A shard as the catalog records it. `url` holds credentials: never log or return it. */
export interface ShardRecord {
  readonly name: ShardName;
  readonly url: string;
  readonly weight: number;
  readonly state: ShardState;
}

/** Everything routing needs that is shared by all clients. */
export interface Topology {
  readonly shards: readonly ShardRecord[];
  /** Virtual nodes per shard on the ring. */
  readonly vnodes: number;
  /** Incremented by every change to shards or weights. */
  readonly epoch: number;
}

/** A tenant directory entry: the truth for where a client's data lives. */
export interface TenantRecord {
  readonly clientId: ClientId;
  readonly schema: string;
  readonly shard: ShardName;
  readonly status: TenantStatus;
  readonly schemaVersion: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly churnedAt: Date | null;
  /** True during a move's cutover: writes wait until the placement flips (or the move rolls back). */
  readonly writesPaused: boolean;
  /** Incremented by every flip of the placement (a move); starts at 1. */
  readonly placementEpoch: number;
}

/** A directory entry reduced to what rebalance planning needs. */
export interface PlacementRow {
  readonly clientId: ClientId;
  readonly shard: ShardName;
  readonly schema: string;
  /** Moved on purpose by an operator: a rebalance leaves it alone unless its shard drains. */
  readonly pinned: boolean;
}

/** Filters and keyset position for listing tenants in client_id order. */
export interface ListTenantsQuery {
  readonly status?: TenantStatus;
  readonly shard?: ShardName;
  readonly afterClientId?: string;
  readonly limit: number;
}

/** A change seen on the catalog's change feed. */
export type CatalogEvent =
  | { readonly kind: 'tenant'; readonly clientId: string }
  /** A token was revoked or deleted: drop it from any cache of verified tokens. */
  | { readonly kind: 'token'; readonly tokenId: string }
  | { readonly kind: 'topology' }
  /** The feed is back after it was lost (or up for the first time): every cache starts over. */
  | { readonly kind: 'resync' }
  /** The feed was lost; changes may be missed until it is back (see `feedLostAtMs`). */
  | { readonly kind: 'feed-lost' };

/**
 * The catalog: shards, ring parameters and the tenant directory. Every gateway replica pointed at
 * the same catalog sees the same data, and learns of changes through `onChange`.
 */
export interface Catalog {
  /** Creates or upgrades the catalog's own tables (safe to run from several replicas at once). */
  migrate(): Promise<void>;
  /** Adds each shard that is not registered yet; bumps the ring epoch if any was added. */
  registerShards(
    shards: readonly { name: ShardName; url: string; weight: number }[],
    vnodes: number,
  ): Promise<void>;
  loadTopology(signal?: AbortSignal): Promise<Topology>;
  getTenant(clientId: ClientId, signal?: AbortSignal): Promise<TenantRecord | undefined>;
  /** Inserts a provisioning entry unless one exists; returns the entry that is there now. */
  insertTenant(
    entry: { clientId: ClientId; schema: string; shard: ShardName },
    signal?: AbortSignal,
  ): Promise<{ tenant: TenantRecord; inserted: boolean }>;
  /** Moves a tenant from one of `from` to `to`; undefined when it is in none of them. */
  setTenantStatus(
    clientId: ClientId,
    from: readonly TenantStatus[],
    to: TenantStatus,
    signal?: AbortSignal,
  ): Promise<TenantRecord | undefined>;
  /**
   * Provisioning finished: active, at this client-schema version. Re-inserts the entry if a failed
   * concurrent create removed it meanwhile (`inserted` then true); leaves an entry on another
   * shard alone and returns it.
   */
  markProvisioned(
    entry: { clientId: ClientId; schema: string; shard: ShardName },
    schemaVersion: number,
    signal?: AbortSignal,
  ): Promise<{ tenant: TenantRecord; inserted: boolean }>;
  setSchemaVersion(clientId: ClientId, schemaVersion: number): Promise<void>;
  /** Removes an entry that is still provisioning (a create whose schema could not be made). */
  deleteProvisioningTenant(clientId: ClientId): Promise<void>;
  listTenants(query: ListTenantsQuery, signal?: AbortSignal): Promise<TenantRecord[]>;
  /** Tenants on `shard` whose schema is older than `version`, in client_id order. */
  listTenantsBehind(
    shard: ShardName,
    version: number,
    afterClientId: string,
    limit: number,
  ): Promise<TenantRecord[]>;
  countTenantsByShard(signal?: AbortSignal): Promise<Map<string, number>>;
  /** Every tenant's client id and shard, for planning a rebalance. */
  listPlacements(signal?: AbortSignal): Promise<PlacementRow[]>;
  /** Pauses or resumes a client's writes (the cutover of a move). */
  setWritesPaused(clientId: ClientId, paused: boolean): Promise<void>;
  /** Starts the change feed; `resync` means events may have been missed (drop all caches). */
  watch(onChange: (event: CatalogEvent) => void): Promise<void>;
  /** True while the change feed is live, so caches may be trusted. */
  readonly watching: boolean;
  /**
   * When (ms since the epoch) the live change feed was last lost; undefined while it is live or
   * before it first came up. Caches may go on being used for a grace period after it.
   */
  readonly feedLostAtMs: number | undefined;
  close(): Promise<void>;
}
