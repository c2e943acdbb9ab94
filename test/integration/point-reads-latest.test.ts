import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/pg/database.js';
import {
  singleReadSql,
  type PointReadLimits,
  type PointReadSpec,
} from '../../src/pg/point-reads.js';
import { createTestTopology, withPg } from '../support/harness.js';
import { countedReads, pointReadsDatabase } from '../support/point-reads-rig.js';

/** The newest row per key, the shape of GetLatestHandoff. */
type Row = { label: string };
const SPEC: PointReadSpec = {
  table: 'handoffs',
  columns: 'label',
  latestBy: { column: 'to_agent', order: 'created_at DESC, id DESC' },
};
const A = pg.escapeIdentifier('lt_a');
const B = pg.escapeIdentifier('lt_b');
const GONE = pg.escapeIdentifier('lt_no_such_schema');
const T1 = '2031-01-01T00:00:00Z';
const T2 = '2031-01-02T00:00:00Z';
/** Rows per schema: [to_agent, created_at, id, label]. Two of A's 'z' rows share a time. */
const ROWS = new Map<string, [string, string, string, string][]>([
  [
    A,
    [
      ['x', T1, '00000000-0000-4000-8000-000000000001', 'old x in A'],
      ['x', T2, '00000000-0000-4000-8000-000000000002', 'new x in A'],
      ['y', T1, '00000000-0000-4000-8000-000000000003', 'y in A'],
      ['z', T2, '00000000-0000-4000-8000-00000000000a', 'z in A, lower id'],
      ['z', T2, '00000000-0000-4000-8000-00000000000b', 'z in A, higher id'],
    ],
  ],
  [B, [['x', T1, '00000000-0000-4000-8000-000000000004', 'x in B']]],
]);
/** What each (schema, key) read must return. */
const NEWEST: [string, string, Row | undefined][] = [
  [A, 'x', { label: 'new x in A' }],
  [A, 'y', { label: 'y in A' }],
  [B, 'x', { label: 'x in B' }],
  [A, 'x', { label: 'new x in A' }],
  [B, 'y', undefined],
  [A, 'z', { label: 'z in A, higher id' }],
  [A, "x' OR true --", undefined],
];

describe('PointReads of the newest row per key on a real database', () => {
  let db: Database;
  const poolErrors: Error[] = [];

  beforeAll(async () => {
    const { shards } = await createTestTopology(1);
    const url = shards[0]!.url;
    await withPg(url, async (c) => {
      for (const [s, rows] of ROWS) {
        await c.query(`CREATE SCHEMA ${s}`);
        await c.query(
          `CREATE TABLE ${s}.handoffs (id uuid PRIMARY KEY, to_agent text NOT NULL,
             created_at timestamptz NOT NULL, label text NOT NULL)`,
        );
        for (const [to, at, id, label] of rows) {
          await c.query(`INSERT INTO ${s}.handoffs VALUES ($1, $2, $3, $4)`, [id, to, at, label]);
        }
      }
    });
    db = pointReadsDatabase(url, "shard 'lt'", poolErrors);
  });
  afterAll(async () => {
    await db?.close();
    expect(poolErrors).toEqual([]);
  });

  const counted = (limits: PointReadLimits) => countedReads(db, limits);

  it('answers concurrent reads with one statement, a branch per schema and key, each with its newest row', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 64 });
    const got = await Promise.all(
      NEWEST.map(([s, key]) => reads.read<Row>(SPEC, s, key, undefined)),
    );
    expect(got).toEqual(NEWEST.map(([, , want]) => want));
    expect(sent).toHaveLength(1);
    // (A,x) twice shares its branch: six distinct (schema, key) pairs, each key bound once.
    expect(sent[0]!.text.split(' UNION ALL ')).toHaveLength(6);
    expect(sent[0]!.values).toEqual(['x', 'y', 'x', 'y', 'z', "x' OR true --"]);
  });

  it('with readBatchStatements 0 sends every read alone, its key bound', async () => {
    const { reads, sent } = counted({ statements: 0, maxBatch: 64 });
    const got = await Promise.all(
      NEWEST.map(([s, key]) => reads.read<Row>(SPEC, s, key, undefined)),
    );
    expect(got).toEqual(NEWEST.map(([, , want]) => want));
    expect(sent).toEqual(
      NEWEST.map(([s, key]) => ({ text: singleReadSql(SPEC, s), values: [key] })),
    );
  });

  it('when a schema is gone, its read gets the error a lone read gets and the others their rows', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 64 });
    const outcome = (s: string, via = reads) =>
      via.read<Row>(SPEC, s, 'x', undefined).catch((e: unknown) => e);
    const got = await Promise.all([A, GONE, B].map((s) => outcome(s)));
    expect([got[0], got[2]]).toEqual([{ label: 'new x in A' }, { label: 'x in B' }]);
    const alone = await outcome(GONE, counted({ statements: 1, maxBatch: 64 }).reads);
    expect(got[1]).toMatchObject({ code: 'unavailable', reason: 'placement-stale' });
    expect((got[1] as Error).message).toBe((alone as Error).message);
    expect(sent).toHaveLength(1 + 3); // the shared statement, then each read alone
  });
});
