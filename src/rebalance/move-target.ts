import type { Catalog } from '../catalog/catalog.js';
import { ShardgateError } from '../core/errors.js';
import type { ShardName } from '../core/ids.js';
import { databaseIdentity } from '../shards/replication.js';
import type { ShardPools } from '../shards/shard-pools.js';

/**
 * Refuses a move target that is unknown, draining, or the source database under another shard
 * name: preparing the target drops any schema of the client there, which would be the live one.
 * Returns the URLs it checked; the journal confirms them when it records the move
 * (MoveJournal.create), so a URL changed in between cannot slip past this check.
 */
export async function checkMoveTarget(
  deps: { catalog: Catalog; pools: ShardPools },
  source: ShardName,
  target: ShardName,
): Promise<{ sourceUrl: string; targetUrl: string }> {
  const shard = (await deps.catalog.loadTopology()).shards.find((s) => s.name === target);
  if (!shard || !deps.pools.has(target)) {
    throw new ShardgateError('not-found', `shard '${target}' does not exist`);
  }
  if (shard.state === 'draining') {
    throw new ShardgateError('failed-precondition', `shard '${target}' is draining; pick another`);
  }
  const checked = { sourceUrl: deps.pools.urlOf(source), targetUrl: deps.pools.urlOf(target) };
  const [a, b] = await Promise.all([
    databaseIdentity(deps.pools.get(source)),
    databaseIdentity(deps.pools.get(target)),
  ]);
  if (a === b) {
    throw new ShardgateError(
      'failed-precondition',
      `shards '${source}' and '${target}' are the same database; a move between them would lose the client's data`,
    );
  }
  return checked;
}
