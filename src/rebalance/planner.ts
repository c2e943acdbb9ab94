import type { Catalog, Topology } from '../catalog/catalog.js';
import type { ClientId, ShardName } from '../core/ids.js';
import type { ShardRing } from '../router/shard-ring.js';
import { clientSchemaSizes } from '../shards/replication.js';
import type { ShardPools } from '../shards/shard-pools.js';

/** One client a rebalance would move, and why. */
export interface PlannedMove {
  clientId: ClientId;
  from: ShardName;
  to: ShardName;
  reason: 'ring' | 'drain';
  sizeBytes: number;
  rowEstimate: number;
}

/**
 * Dry run of a rebalance: every client on a draining shard moves to its ring shard; every other
 * client whose ring shard differs from its placement moves there, unless an operator pinned it.
 * Sizes come from one statistics query per source shard. Smallest clients first, so a plan
 * cut short by `limit` moves the most clients for the least data.
 */
export async function planRebalance(opts: {
  catalog: Catalog;
  pools: ShardPools;
  topology: Topology;
  ring: ShardRing;
  limit?: number;
}): Promise<PlannedMove[]> {
  const draining = new Set(
    opts.topology.shards.filter((s) => s.state === 'draining').map((s) => s.name),
  );
  const moves: Omit<PlannedMove, 'sizeBytes' | 'rowEstimate'>[] = [];
  const schemaOf = new Map<string, string>();
  for (const p of await opts.catalog.listPlacements()) {
    const ringShard = opts.ring.shardFor(p.clientId);
    if (!ringShard || ringShard === p.shard) continue;
    const reason = draining.has(p.shard) ? 'drain' : p.pinned ? undefined : 'ring';
    if (!reason) continue;
    moves.push({ clientId: p.clientId, from: p.shard, to: ringShard, reason });
    schemaOf.set(p.clientId, p.schema);
  }
  const sizes = new Map<string, Map<string, { bytes: number; rows: number }>>();
  for (const from of new Set(moves.map((m) => m.from))) {
    sizes.set(from, await clientSchemaSizes(opts.pools.get(from)).catch(() => new Map()));
  }
  const planned = moves.map((m) => {
    const size = sizes.get(m.from)?.get(schemaOf.get(m.clientId)!);
    return { ...m, sizeBytes: size?.bytes ?? 0, rowEstimate: size?.rows ?? 0 };
  });
  planned.sort((a, b) => a.sizeBytes - b.sizeBytes || (a.clientId < b.clientId ? -1 : 1));
  return opts.limit && opts.limit > 0 ? planned.slice(0, opts.limit) : planned;
}
