import type { Catalog } from '../catalog/catalog.js';
import { tenantNotActive } from '../core/errors.js';
import { parseClientId } from '../core/ids.js';
import type { Database } from '../pg/database.js';
import type { Placement, Router } from '../router/router.js';
import type { HandoffFeed } from '../shards/handoff-feed.js';
import type { ShardPools } from '../shards/shard-pools.js';
import type { SharedStore } from '../shared-db/shared-store.js';

/** What the handlers share: the wired-up parts of one gateway process. */
export interface GatewayContext {
  readonly catalog: Catalog;
  readonly router: Router;
  readonly pools: ShardPools;
  readonly feed: HandoffFeed;
  readonly shared: SharedStore;
  readonly log: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

/** A client's data location, checked to be active, with its shard's database. */
export interface ClientScope {
  readonly placement: Placement;
  readonly db: Database;
  /** The quoted schema identifier for SQL. */
  readonly schema: string;
}

/**
 * The hot path of every tenant-scoped call: validate the id (before any SQL), resolve its
 * placement (a Map lookup when cached), refuse non-active tenants, pick the shard's pool.
 */
export async function openClientScope(
  ctx: GatewayContext,
  rawClientId: string,
  signal: AbortSignal,
): Promise<ClientScope> {
  const clientId = parseClientId(rawClientId);
  const placement = ctx.router.cached(clientId) ?? (await ctx.router.resolve(clientId, signal));
  if (placement.status !== 'active') throw tenantNotActive(clientId, placement.status);
  return { placement, db: ctx.pools.get(placement.shard), schema: placement.schemaIdent };
}
