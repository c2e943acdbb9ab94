import type { AuditLog } from '../catalog/audit-log.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import type { Catalog } from '../catalog/catalog.js';
import type { MoveJournal } from '../catalog/move-journal.js';
import type { TokenStore } from '../catalog/token-store.js';
import type { TopologyAdmin } from '../catalog/topology-admin.js';
import type { GatewayConfig } from '../core/config.js';
import { isShardgateError, ShardgateError, tenantNotActive } from '../core/errors.js';
import { parseClientId, type ClientId } from '../core/ids.js';
import type { Database } from '../pg/database.js';
import type { TenantMover } from '../rebalance/tenant-mover.js';
import type { Placement, Router } from '../router/router.js';
import type { HandoffFeed } from '../shards/handoff-feed.js';
import type { ShardPools } from '../shards/shard-pools.js';
import type { SharedStore } from '../shared-db/shared-store.js';

/** What the handlers share: the wired-up parts of one gateway process. */
export interface GatewayContext {
  readonly config: GatewayConfig;
  readonly catalog: Catalog;
  readonly router: Router;
  readonly pools: ShardPools;
  readonly feed: HandoffFeed;
  readonly shared: SharedStore;
  readonly topologyAdmin: TopologyAdmin;
  readonly journal: MoveJournal;
  readonly mover: TenantMover;
  /** The audit log of admin actions (written by the audit middleware). */
  readonly audit: AuditLog;
  /** Bearer tokens in the catalog (AdminService CreateToken, ListTokens, RevokeToken). */
  readonly tokens: TokenStore;
  /** Verifies bearer secrets with a cache the catalog change feed keeps honest. */
  readonly verifier: TokenVerifier;
  /** Reloads shards and ring from the catalog now (other replicas follow by NOTIFY). */
  refreshTopology(): Promise<void>;
  /**
   * Checks a would-be shard URL answers (and is not a refused superuser) before it is registered;
   * returns its database identity and how many of `schemas` it lacks.
   */
  probeShard(
    url: string,
    signal: AbortSignal,
    schemas?: readonly string[],
  ): Promise<{ identity: string; missingSchemas: number }>;
  readonly log: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

/** A client's data location, checked to be active, with its shard's database. */
export interface ClientScope {
  readonly placement: Placement;
  readonly db: Database;
  /** The quoted schema identifier for SQL. */
  readonly schema: string;
}

/** Longest a write waits for a move's cutover to finish before it fails UNAVAILABLE. */
export const MAX_WRITE_PAUSE_MS = 10_000;
/** Re-reads of a stale placement before giving up. */
const MAX_PLACEMENT_RETRIES = 3;

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
  return scopeOf(ctx, await placementOf(ctx, clientId, signal));
}

/**
 * Runs one tenant-scoped operation and follows the client if it moves: a write waits while the
 * client's writes are paused for a cutover, and an operation the old shard refused (the move's
 * fence, or a schema already dropped there) re-reads the placement from the catalog and runs
 * again on the new shard. The retried work had no effect: the fence fires before any row changes.
 * A write refused again by the shard the directory still names (fenced by a move whose pause or
 * flip has not reached this gateway) waits for the directory entry to change, bounded by
 * MAX_WRITE_PAUSE_MS, instead of failing.
 */
export async function withClient<T>(
  ctx: GatewayContext,
  rawClientId: string,
  signal: AbortSignal,
  access: 'read' | 'write',
  fn: (scope: ClientScope) => Promise<T>,
): Promise<T> {
  const clientId = parseClientId(rawClientId);
  const giveUpAt = Date.now() + MAX_WRITE_PAUSE_MS;
  let refusedBy: string | undefined;
  for (let attempt = 0; ; attempt++) {
    let placement = await placementOf(ctx, clientId, signal);
    if (access === 'write' && placement.writesPaused)
      placement = await waitForResume(ctx, clientId, signal);
    try {
      return await fn(scopeOf(ctx, placement));
    } catch (err) {
      if (!isShardgateError(err) || err.reason !== 'placement-stale') throw err;
      const refusedAgain = refusedBy === placement.shard;
      refusedBy = placement.shard;
      if (access === 'read' ? attempt >= MAX_PLACEMENT_RETRIES : Date.now() >= giveUpAt) throw err;
      ctx.router.invalidate(clientId);
      if (refusedAgain) await ctx.router.waitForChange(clientId, FENCED_RETRY_MS, signal);
    }
  }
}

/** How long a write refused twice by the same shard waits for the client's entry to change. */
const FENCED_RETRY_MS = 100;

async function placementOf(
  ctx: GatewayContext,
  clientId: ClientId,
  signal: AbortSignal,
): Promise<Placement> {
  const placement = ctx.router.cached(clientId) ?? (await ctx.router.resolve(clientId, signal));
  if (placement.status !== 'active') throw tenantNotActive(clientId, placement.status);
  return placement;
}

function scopeOf(ctx: GatewayContext, placement: Placement): ClientScope {
  return { placement, db: ctx.pools.get(placement.shard), schema: placement.schemaIdent };
}

/** Waits (bounded) until the client's writes resume; re-reads the catalog at least every 100 ms. */
async function waitForResume(
  ctx: GatewayContext,
  clientId: ClientId,
  signal: AbortSignal,
): Promise<Placement> {
  const giveUpAt = Date.now() + MAX_WRITE_PAUSE_MS;
  for (;;) {
    await ctx.router.waitForChange(
      clientId,
      Math.min(100, Math.max(0, giveUpAt - Date.now())),
      signal,
    );
    if (signal.aborted)
      throw new ShardgateError('cancelled', 'the call was cancelled while the client was moving');
    ctx.router.invalidate(clientId);
    const placement = await placementOf(ctx, clientId, signal);
    if (!placement.writesPaused) return placement;
    if (Date.now() >= giveUpAt) {
      throw new ShardgateError(
        'unavailable',
        `client '${clientId}' is being moved and its writes are paused; retry`,
      );
    }
  }
}
