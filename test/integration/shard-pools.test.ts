import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { configSchema } from '../../src/core/config.js';
import type { PointReadSpec } from '../../src/pg/point-reads.js';
import { ShardPools } from '../../src/shards/shard-pools.js';
import { createDatabase, eventually, uniqueSuffix, withPg } from '../support/harness.js';

const SPEC: PointReadSpec = { table: 'items', columns: 'id' };
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Statements of the pool that wait on a lock in the test database right now. */
async function waitingStatements(url: string): Promise<number> {
  return withPg(url, async (c) => {
    const { rows } = await c.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_catalog.pg_stat_activity
        WHERE datname = pg_catalog.current_database() AND application_name = 'shardgate'
          AND wait_event_type = 'Lock'`,
    );
    return Number(rows[0]!.n);
  });
}

describe('ShardPools', () => {
  let url: string;
  beforeAll(async () => {
    url = await createDatabase(inject('pgServers')[1]!.adminUrl, `t_${uniqueSuffix()}_pools`);
    await withPg(url, (c) =>
      c.query('CREATE SCHEMA sp; CREATE TABLE sp.items (id uuid PRIMARY KEY)'),
    );
  });

  const pools: ShardPools[] = [];
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.close()));
  });

  it.each([
    // A quarter of the pool by default, at least one.
    { label: 'max 8', pool: { max: 8 }, expected: 2 },
    { label: 'max 2', pool: { max: 2 }, expected: 1 },
    // An explicit setting wins; 0 turns coalescing off (one statement per read).
    {
      label: 'max 8, readBatchStatements 3',
      pool: { max: 8, readBatchStatements: 3 },
      expected: 3,
    },
    {
      label: 'max 8, readBatchStatements 0',
      pool: { max: 8, readBatchStatements: 0 },
      expected: 8,
    },
  ])(
    'with pool $label, point reads of one table use $expected statement(s) at once',
    async ({ pool, expected }) => {
      const shardPools = new ShardPools(configSchema.parse({ pool }).pool, () => undefined);
      pools.push(shardPools);
      shardPools.sync([{ name: 'shard-1', url }]);
      const db = shardPools.get('shard-1');
      const locker = new pg.Client({ connectionString: url });
      await locker.connect();
      const reads: Promise<unknown>[] = [];
      try {
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE sp.items IN ACCESS EXCLUSIVE MODE');
        // One read per event-loop turn, so each may go out alone while its lane has room.
        for (let i = 0; i < 12; i++) {
          reads.push(db.readById(SPEC, 'sp', randomUUID()));
          await nextTurn();
        }
        await eventually(async () => expect(await waitingStatements(url)).toBe(expected), 5_000);
        await new Promise((r) => setTimeout(r, 100)); // and no more follow
        expect(await waitingStatements(url)).toBe(expected);
      } finally {
        await locker.query('COMMIT');
        await locker.end();
      }
      expect(await Promise.all(reads)).toEqual(reads.map(() => undefined));
    },
  );
});
