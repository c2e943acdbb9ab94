import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/pg/database.js';
import {
  singleReadSql,
  type PointReadLimits,
  type PointReadSpec,
} from '../../src/pg/point-reads.js';
import { createTestTopology, eventually, freshClientId, withPg } from '../support/harness.js';
import {
  countedReads,
  holdClientTables,
  pointReadsDatabase,
  startCoalescingGateway,
} from '../support/point-reads-rig.js';

/** A single-row table per schema, read whole: the shape of a client's state document. */
type Row = { label: string };
const SPEC: PointReadSpec = { table: 'state', columns: 'label', singleRow: true };
const A = pg.escapeIdentifier('sr_a');
const B = pg.escapeIdentifier('sr_b');
const C = pg.escapeIdentifier('sr_c');
/** Its table exists but holds no row. */
const EMPTY = pg.escapeIdentifier('sr_empty');
const GONE = pg.escapeIdentifier('sr_no_such_schema');
const LABEL = new Map([
  [A, 'state of A'],
  [B, 'state of B'],
  [C, 'state of C'],
]);
const rowOf = (schema: string): Row | undefined => {
  const label = LABEL.get(schema);
  return label === undefined ? undefined : { label };
};

describe('PointReads of single-row tables on a real database', () => {
  let db: Database;
  const poolErrors: Error[] = [];

  beforeAll(async () => {
    const { shards } = await createTestTopology(1);
    const url = shards[0]!.url;
    await withPg(url, async (c) => {
      for (const s of [A, B, C, EMPTY]) {
        await c.query(`CREATE SCHEMA ${s}`);
        await c.query(`CREATE TABLE ${s}.state (label text NOT NULL)`);
        const label = LABEL.get(s);
        if (label !== undefined) await c.query(`INSERT INTO ${s}.state VALUES ($1)`, [label]);
      }
    });
    db = pointReadsDatabase(url, "shard 'sr'", poolErrors);
  });
  afterAll(async () => {
    await db?.close();
    expect(poolErrors).toEqual([]);
  });

  const counted = (limits: PointReadLimits) => countedReads(db, limits);

  const SCHEMAS = [A, B, C, A, EMPTY, B, C, A, EMPTY];

  it('answers concurrent reads over several schemas with one statement, each with its own schema’s row', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 64 });
    const got = await Promise.all(
      SCHEMAS.map((s) => reads.read<Row>(SPEC, s, undefined, undefined)),
    );
    expect(got).toEqual(SCHEMAS.map(rowOf));
    expect(sent).toHaveLength(1);
    expect(sent[0]!.text.split(' UNION ALL ')).toHaveLength(4);
    expect(sent[0]!.values).toEqual([]);
  });

  it('with readBatchStatements 0 sends every read alone, without parameters', async () => {
    const { reads, sent } = counted({ statements: 0, maxBatch: 64 });
    const got = await Promise.all(
      SCHEMAS.map((s) => reads.read<Row>(SPEC, s, undefined, undefined)),
    );
    expect(got).toEqual(SCHEMAS.map(rowOf));
    expect(sent).toEqual(SCHEMAS.map((s) => ({ text: singleReadSql(SPEC, s), values: [] })));
  });

  it('when a schema is gone, its read gets the error a lone read gets and the others their rows', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 64 });
    const outcome = (s: string, via = reads) =>
      via.read<Row>(SPEC, s, undefined, undefined).catch((e: unknown) => e);
    const got = await Promise.all([A, GONE, B].map((s) => outcome(s)));
    expect([got[0], got[2]]).toEqual([rowOf(A), rowOf(B)]);
    const alone = await outcome(GONE, counted({ statements: 1, maxBatch: 64 }).reads);
    expect(got[1]).toMatchObject({ code: 'unavailable', reason: 'placement-stale' });
    expect((got[1] as Error).message).toBe((alone as Error).message);
    expect(sent).toHaveLength(1 + 3); // the shared statement, then each read alone
  });

  it('refuses a key for a single-row table, and a missing key for a keyed one', async () => {
    const { reads, sent } = counted({ statements: 1, maxBatch: 64 });
    const keyed: PointReadSpec = { table: 'appointments', columns: 'id' };
    await expect(
      reads.read(SPEC, A, '00000000-0000-4000-8000-000000000000', undefined),
    ).rejects.toBeInstanceOf(TypeError);
    await expect(reads.read(keyed, A, undefined, undefined)).rejects.toBeInstanceOf(TypeError);
    expect(sent).toEqual([]);
  });
});

describe('GetState with coalesced reads (end to end)', () => {
  it('40 concurrent GetState calls over two clients on one shard each get their own document', async () => {
    const { gw, shardUrl, shared, pendingReads, close } = await startCoalescingGateway();
    try {
      const clients = [freshClientId('sr-one'), freshClientId('sr-two')];
      for (const clientId of clients) {
        await gw.client.tenants.createTenant({ clientId });
        await gw.client.state.putState({ clientId, document: { owner: clientId } });
      }
      // Both state tables held: every call waits in the shard's point-read lane, then they go
      // out together once the locks are released, whatever the machine's speed.
      const held = await holdClientTables(shardUrl, clients, 'state');
      const calls = Array.from({ length: 40 }, (_, i) => clients[i % 2]!);
      const pending = calls.map((clientId) => gw.client.state.getState({ clientId }));
      await eventually(async () => expect(pendingReads()).toBe(40));
      await held.release();
      const got = await Promise.all(pending);
      expect(got.map((r) => r.state?.document)).toEqual(calls.map((owner) => ({ owner })));
      expect(got.every((r) => r.state?.version === 1)).toBe(true);
      // All 40 waited in the lane together (above), so at most two statements answered them: the
      // first, held by the locks, and one for everything that queued behind it.
      const onState = shared.filter((text) => text.includes('.state'));
      expect(onState.length).toBeGreaterThan(0);
      expect(onState.length).toBeLessThanOrEqual(2);
    } finally {
      await close();
    }
  });
});
