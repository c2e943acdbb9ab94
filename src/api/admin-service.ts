import type { ShardRecord } from '../catalog/catalog.js';
import { invalidArgument, ShardgateError, unknownClient } from '../core/errors.js';
import { databaseIdentity } from '../shards/replication.js';
import { parseClientId, parseShardName } from '../core/ids.js';
import { withTimeLimit } from '../core/time-limit.js';
import {
  ShardState,
  type AdminServiceImplementation,
  type Shard,
} from '../gen/shardgate/v1/admin.js';
import { createAuditHandlers } from './admin-audit.js';
import { createMoveHandlers } from './admin-moves.js';
import { createTokenHandlers } from './admin-tokens.js';
import { tenantStatusToProto } from './convert.js';
import type { GatewayContext } from './gateway-context.js';

const URL_PATTERN = /^postgres(ql)?:\/\//;

/** AdminService: topology, placement, shard changes and moves; reads come from the catalog. */
export function createAdminService(ctx: GatewayContext): AdminServiceImplementation {
  const shardToProto = (s: ShardRecord, tenantCount = 0): Shard => ({
    name: s.name,
    weight: s.weight,
    address: redactUrl(s.url),
    state: s.state === 'active' ? ShardState.SHARD_STATE_ACTIVE : ShardState.SHARD_STATE_DRAINING,
    tenantCount,
  });
  const withCount = async (s: ShardRecord, signal: AbortSignal): Promise<Shard> =>
    shardToProto(s, (await ctx.catalog.countTenantsByShard(signal)).get(s.name) ?? 0);

  return {
    async getTopology(_req, { signal }) {
      const [topology, counts] = await Promise.all([
        ctx.catalog.loadTopology(signal),
        ctx.catalog.countTenantsByShard(signal),
      ]);
      return {
        shards: topology.shards.map((s) => shardToProto(s, counts.get(s.name) ?? 0)),
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
        placementEpoch: tenant.placementEpoch,
      };
    },

    async addShard(req, { signal }) {
      const name = parseShardName(req.name, 'name');
      checkShardUrl(req.dsn);
      const weight = req.weight === 0 ? 100 : shardWeight(req.weight);
      const { identity } = await ctx.probeShard(req.dsn, signal);
      await refuseKnownDatabase(ctx, identity, signal);
      const change = await ctx.topologyAdmin.addShard({ name, url: req.dsn, weight }, signal);
      await ctx.refreshTopology();
      return { shard: shardToProto(change.shard), ringEpoch: change.epoch };
    },

    async drainShard(req, { signal }) {
      const change = await ctx.topologyAdmin.setState(
        parseShardName(req.name, 'name'),
        'draining',
        signal,
      );
      await ctx.refreshTopology();
      return { shard: await withCount(change.shard, signal), ringEpoch: change.epoch };
    },

    async removeShard(req, { signal }) {
      const ringEpoch = await ctx.topologyAdmin.removeShard(
        parseShardName(req.name, 'name'),
        signal,
      );
      await ctx.refreshTopology();
      return { ringEpoch };
    },

    async setShardWeight(req, { signal }) {
      const name = parseShardName(req.name, 'name');
      const change = await ctx.topologyAdmin.setWeight(name, shardWeight(req.weight), signal);
      await ctx.refreshTopology();
      return { shard: await withCount(change.shard, signal), ringEpoch: change.epoch };
    },

    async setShardDsn(req, { signal }) {
      const name = parseShardName(req.name, 'name');
      checkShardUrl(req.dsn);
      const topology = await ctx.catalog.loadTopology(signal);
      if (!topology.shards.some((s) => s.name === name)) {
        throw new ShardgateError('not-found', `shard '${name}' does not exist`);
      }
      const schemas = (await ctx.catalog.listPlacements(signal))
        .filter((p) => p.shard === name)
        .map((p) => p.schema);
      const probe = await ctx.probeShard(req.dsn, signal, schemas);
      if (probe.missingSchemas > 0) {
        throw new ShardgateError(
          'failed-precondition',
          `that database lacks the schemas of ${probe.missingSchemas} of the ${schemas.length} ` +
            `client(s) placed on shard '${name}': it is not this shard's database`,
        );
      }
      await refuseKnownDatabase(ctx, probe.identity, signal, name);
      const change = await ctx.topologyAdmin.setUrl(name, req.dsn, signal);
      await ctx.refreshTopology();
      return { shard: await withCount(change.shard, signal), ringEpoch: change.epoch };
    },

    ...createMoveHandlers(ctx),
    ...createTokenHandlers(ctx),
    ...createAuditHandlers(ctx),
  };
}

/** A second shard name for a database already registered would let a move destroy its data. */
async function refuseKnownDatabase(
  ctx: GatewayContext,
  identity: string,
  signal: AbortSignal,
  /** The shard whose own database this may be (SetShardDsn). */
  except?: string,
): Promise<void> {
  const topology = await ctx.catalog.loadTopology(signal);
  const others = topology.shards.filter((s) => s.name !== except && ctx.pools.has(s.name));
  // In parallel, each bounded: a silent shard must not hold the call. One that cannot answer is
  // passed over; a move between two names of one database is still refused (checkMoveTarget).
  const known = await withTimeLimit(signal, ctx.config.pool.connectionTimeoutMs, (probe) =>
    Promise.all(
      others.map((s) => databaseIdentity(ctx.pools.get(s.name), probe).catch(() => undefined)),
    ),
  );
  const same = others.find((_, i) => known[i] === identity);
  if (same) {
    throw new ShardgateError(
      'already-exists',
      `that database is already registered as shard '${same.name}'`,
    );
  }
}

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/**
 * Checks a new shard's URL before anything connects: a postgres:// URL with a host, whose user,
 * password and database decode, without control characters (the URL parser silently drops a
 * tab or newline, so what connects would differ from what was typed). The driver would otherwise
 * fail on such a URL with a TypeError (INTERNAL) or a URIError (read as an unavailable shard), or
 * connect to its default host and port. The message never repeats the URL: it holds a password.
 */
function checkShardUrl(raw: string): void {
  const malformed = invalidArgument(
    'dsn must be a postgres://user:password@host:port/database URL without control characters',
  );
  if (!URL_PATTERN.test(raw) || CONTROL_CHARS.test(raw)) throw malformed;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw malformed;
  }
  if (url.hostname === '') throw malformed;
  for (const part of [url.username, url.password, url.pathname]) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(part);
    } catch {
      throw malformed;
    }
    if (CONTROL_CHARS.test(decoded)) throw malformed;
  }
}

function shardWeight(raw: number): number {
  if (!Number.isInteger(raw) || raw < 1 || raw > 10_000)
    throw invalidArgument('weight must be 1 to 10000');
  return raw;
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
