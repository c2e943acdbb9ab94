import { ShardgateError } from '../core/errors.js';
import type { ShardName } from '../core/ids.js';
import type { Database, Queryable } from '../pg/database.js';
import type { ShardRecord, ShardState } from './catalog.js';

/** A shard change and the ring epoch it produced. */
export interface ShardChange {
  shard: ShardRecord;
  epoch: number;
}

const SHARD_COLUMNS = 'name, url, weight, state';

/**
 * Shard administration in the catalog. Every change bumps the ring epoch in the same
 * transaction, and the catalog's statement trigger tells every gateway to reload the topology.
 */
export class TopologyAdmin {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  async addShard(
    s: { name: ShardName; url: string; weight: number },
    signal?: AbortSignal,
  ): Promise<ShardChange> {
    return this.#db.transaction(signal, async (tx) => {
      const res = await tx.query<ShardRecord>(
        `INSERT INTO shardgate.shards (name, url, weight) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO NOTHING RETURNING ${SHARD_COLUMNS}`,
        [s.name, s.url, s.weight],
      );
      if (!res.rows[0])
        throw new ShardgateError('already-exists', `shard '${s.name}' already exists`);
      return { shard: res.rows[0], epoch: await bumpEpoch(tx) };
    });
  }

  async setState(name: ShardName, state: ShardState, signal?: AbortSignal): Promise<ShardChange> {
    return this.#update(name, 'state = $2', state, signal);
  }

  async setWeight(name: ShardName, weight: number, signal?: AbortSignal): Promise<ShardChange> {
    return this.#update(name, 'weight = $2', weight, signal);
  }

  /** A new connection URL for a shard; refused while a move to or from it runs. */
  async setUrl(name: ShardName, url: string, signal?: AbortSignal): Promise<ShardChange> {
    return this.#db.transaction(signal, async (tx) => {
      await lockShard(tx, name);
      await refuseWhileMoving(tx, name);
      const res = await tx.query<ShardRecord>(
        `UPDATE shardgate.shards SET url = $2, updated_at = now() WHERE name = $1
         RETURNING ${SHARD_COLUMNS}`,
        [name, url],
      );
      return { shard: res.rows[0]!, epoch: await bumpEpoch(tx) };
    });
  }

  /** Unregisters a shard; refused while tenants are placed there or moves involve it. */
  async removeShard(name: ShardName, signal?: AbortSignal): Promise<number> {
    return this.#db.transaction(signal, async (tx) => {
      await lockShard(tx, name);
      const held = await tx.query<{ n: string }>(
        'SELECT count(*) AS n FROM shardgate.tenants WHERE shard = $1',
        [name],
      );
      const n = Number(held.rows[0]?.n ?? 0);
      if (n > 0) {
        throw new ShardgateError(
          'failed-precondition',
          `shard '${name}' still holds ${n} client(s); drain it and run Rebalance first`,
        );
      }
      await refuseWhileMoving(tx, name);
      await tx.query('DELETE FROM shardgate.shards WHERE name = $1', [name]);
      return bumpEpoch(tx);
    });
  }

  async #update(
    name: ShardName,
    set: string,
    value: unknown,
    signal?: AbortSignal,
  ): Promise<ShardChange> {
    return this.#db.transaction(signal, async (tx) => {
      const res = await tx.query<ShardRecord>(
        `UPDATE shardgate.shards SET ${set}, updated_at = now() WHERE name = $1 RETURNING ${SHARD_COLUMNS}`,
        [name, value],
      );
      if (!res.rows[0]) throw new ShardgateError('not-found', `shard '${name}' does not exist`);
      return { shard: res.rows[0], epoch: await bumpEpoch(tx) };
    });
  }
}

/** Locks the shard's row for the transaction; NOT_FOUND when there is none. */
async function lockShard(tx: Queryable, name: ShardName): Promise<void> {
  const shard = await tx.query('SELECT 1 FROM shardgate.shards WHERE name = $1 FOR UPDATE', [name]);
  if (shard.rowCount === 0) throw new ShardgateError('not-found', `shard '${name}' does not exist`);
}

async function refuseWhileMoving(tx: Queryable, name: ShardName): Promise<void> {
  const moving = await tx.query(
    `SELECT 1 FROM shardgate.moves WHERE state = 'running' AND $1 IN (source_shard, target_shard) LIMIT 1`,
    [name],
  );
  if ((moving.rowCount ?? 0) > 0) {
    throw new ShardgateError('failed-precondition', `a move to or from shard '${name}' is running`);
  }
}

async function bumpEpoch(tx: Queryable): Promise<number> {
  const res = await tx.query<{ epoch: string }>(
    'UPDATE shardgate.ring SET epoch = epoch + 1 RETURNING epoch',
  );
  return Number(res.rows[0]?.epoch ?? 0);
}
