import { unknownClient } from '../core/errors.js';
import { parseClientId } from '../core/ids.js';
import { ShardState, type AdminServiceImplementation } from '../gen/shardgate/v1/admin.js';
import { tenantStatusToProto } from './convert.js';
import type { GatewayContext } from './gateway-context.js';

/** AdminService: topology and placement, read from the catalog (never from caches). */
export function createAdminService(ctx: GatewayContext): AdminServiceImplementation {
  return {
    async getTopology(_req, { signal }) {
      const [topology, counts] = await Promise.all([
        ctx.catalog.loadTopology(signal),
        ctx.catalog.countTenantsByShard(signal),
      ]);
      return {
        shards: topology.shards.map((s) => ({
          name: s.name,
          weight: s.weight,
          address: redactUrl(s.url),
          state: s.state === 'active' ? ShardState.SHARD_STATE_ACTIVE : ShardState.SHARD_STATE_DRAINING,
          tenantCount: counts.get(s.name) ?? 0,
        })),
        ringEpoch: topology.epoch,
        ringVnodes: topology.vnodes,
      };
    },

    async locate(req, { signal }) {
      const clientId = parseClientId(req.clientId);
      const tenant = await ctx.catalog.getTenant(clientId, signal);
      if (!tenant) throw unknownClient(clientId);
      const ringShard = ctx.router.ring.shardFor(clientId) ?? '';
      return {
        clientId,
        shard: tenant.shard,
        schema: tenant.schema,
        ringShard,
        placementDiffers: ringShard !== tenant.shard,
        status: tenantStatusToProto(tenant.status),
      };
    },
  };
}

/** `host:port/database` of a connection URL, without user or password. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return '(unparseable url)';
  }
}
