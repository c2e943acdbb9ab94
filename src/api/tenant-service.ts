import type { CallContext } from 'nice-grpc';
import { ShardgateError, unknownClient } from '../core/errors.js';
import { parseClientId, parseShardName, schemaNameFor, type ClientId } from '../core/ids.js';
import type {
  TenantServiceImplementation,
  CreateTenantRequest,
  CreateTenantResponse,
} from '../gen/shardgate/v1/tenant.js';
import { ensureClientSchema } from '../shards/client-schema.js';
import { tenantStatusFilter, tenantToProto } from './convert.js';
import type { GatewayContext } from './gateway-context.js';
import { cursorString, decodePageToken, pageOf } from './page-token.js';
import { pageSize } from './validate.js';

/** TenantService: provisioning and lifecycle, against the catalog's directory. */
export function createTenantService(ctx: GatewayContext): TenantServiceImplementation {
  return {
    createTenant: (req, { signal }) => createTenant(ctx, req, signal),

    async getTenant(req, { signal }) {
      const clientId = parseClientId(req.clientId);
      const tenant = await ctx.catalog.getTenant(clientId, signal);
      if (!tenant) throw unknownClient(clientId);
      return { tenant: tenantToProto(tenant) };
    },

    async listTenants(req, { signal }) {
      const limit = pageSize(req.pageSize);
      const status = tenantStatusFilter(req.status);
      const shard = req.shard === '' ? undefined : parseShardName(req.shard);
      const filters = [status, shard];
      const cursor = decodePageToken(req.pageToken, filters);
      const rows = await ctx.catalog.listTenants(
        { status, shard, afterClientId: cursor && cursorString(cursor[0]), limit: limit + 1 },
        signal,
      );
      const { items, nextPageToken } = pageOf(rows, limit, filters, (t) => [t.clientId]);
      return { tenants: items.map(tenantToProto), nextPageToken };
    },

    async churnTenant(req, context) {
      return { tenant: await changeStatus(ctx, req.clientId, 'churned', context) };
    },

    async reactivateTenant(req, context) {
      return { tenant: await changeStatus(ctx, req.clientId, 'active', context) };
    },
  };
}

/**
 * Registers the client in the directory (status provisioning) on the ring's shard, creates its
 * schema in one transaction, then marks it active. A retry finds the entry and finishes the same
 * work; a concurrent create of the same client waits on the schema's advisory lock.
 */
async function createTenant(
  ctx: GatewayContext,
  req: CreateTenantRequest,
  signal: AbortSignal,
): Promise<CreateTenantResponse> {
  const clientId = parseClientId(req.clientId);
  let tenant = await ctx.catalog.getTenant(clientId, signal);
  let inserted = false;
  if (!tenant) {
    const shard = ctx.router.ring.shardFor(clientId);
    if (!shard) {
      throw new ShardgateError(
        'failed-precondition',
        'no active shard can take new clients; add a shard first',
      );
    }
    ({ tenant, inserted } = await ctx.catalog.insertTenant(
      { clientId, schema: schemaNameFor(clientId), shard },
      signal,
    ));
  }
  if (tenant.status !== 'provisioning') return { tenant: tenantToProto(tenant), created: false };
  let version: number;
  try {
    version = await ensureClientSchema(ctx.pools.get(tenant.shard), tenant.schema, { signal });
  } catch (err) {
    if (inserted) await forgetFailedCreate(ctx, clientId);
    throw err;
  }
  const done = await ctx.catalog.markProvisioned(tenant, version);
  ctx.router.invalidate(clientId);
  return { tenant: tenantToProto(done.tenant), created: inserted || done.inserted };
}

async function forgetFailedCreate(ctx: GatewayContext, clientId: ClientId): Promise<void> {
  try {
    await ctx.catalog.deleteProvisioningTenant(clientId);
  } catch (err) {
    // The entry stays 'provisioning'; a retried CreateTenant finishes it.
    ctx.log.warn({ err, clientId }, 'could not remove the directory entry of a failed create');
  }
}

async function changeStatus(
  ctx: GatewayContext,
  rawClientId: string,
  to: 'active' | 'churned',
  { signal }: CallContext,
) {
  const clientId = parseClientId(rawClientId);
  const from = to === 'churned' ? 'active' : 'churned';
  const changed = await ctx.catalog.setTenantStatus(clientId, [from], to, signal);
  ctx.router.invalidate(clientId);
  const tenant = changed ?? (await ctx.catalog.getTenant(clientId, signal));
  if (!tenant) throw unknownClient(clientId);
  if (tenant.status !== to) {
    throw new ShardgateError(
      'failed-precondition',
      `client '${clientId}' is ${tenant.status}; only ${from} tenants can be ${to === 'churned' ? 'churned' : 'reactivated'}`,
    );
  }
  return tenantToProto(tenant);
}
