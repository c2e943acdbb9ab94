import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardgateError } from '../../src/core/errors.js';
import { Database } from '../../src/pg/database.js';
import type { PointReadSpec } from '../../src/pg/point-reads.js';
import { countedReads } from '../support/point-reads-rig.js';
import { adminUrlOf, createTestTopology, withPg } from '../support/harness.js';

const SPEC: PointReadSpec = { table: 'appointments', columns: 'id, label' };
const SCHEMAS = ['pw_a', 'pw_b', 'pw_c'].map((s) => pg.escapeIdentifier(s));
const STATEMENT_TIMEOUT_MS = 300;

/**
 * A shared point-read statement that fails for the whole shard (here: past the statement timeout,
 * as on an overloaded shard) answers every read in it with that error; running each again alone
 * would multiply the load on the struggling shard and make every caller wait twice.
 */
describe('PointReads when the shard itself fails', () => {
  let url: string;
  let db: Database;
  const poolErrors: Error[] = [];

  beforeAll(async () => {
    url = (await createTestTopology(1)).shards[0]!.url;
    await withPg(url, async (c) => {
      for (const s of SCHEMAS) {
        await c.query(`CREATE SCHEMA ${s}`);
        await c.query(`CREATE TABLE ${s}.appointments (id uuid PRIMARY KEY, label text NOT NULL)`);
      }
    });
    db = new Database({
      url,
      label: "shard 'pw'",
      max: 4,
      idleTimeoutMs: 10_000,
      connectionTimeoutMs: 3_000,
      statementTimeoutMs: STATEMENT_TIMEOUT_MS,
      maxLifetimeSeconds: 0,
      onError: (err) => poolErrors.push(err),
    });
  });
  afterAll(async () => {
    await db?.close();
    expect(poolErrors).toEqual([]);
  });

  it('gives every read of a statement that timed out its error, without running them again alone', async () => {
    const locker = new pg.Client({ connectionString: adminUrlOf(url) });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(
        `LOCK TABLE ${SCHEMAS.map((s) => `${s}.appointments`).join(', ')} IN ACCESS EXCLUSIVE MODE`,
      );
      const { reads, sent } = countedReads(db, { statements: 1, maxBatch: 64 });
      const got = await Promise.all(
        SCHEMAS.flatMap((s) => [randomUUID(), randomUUID()].map((id) => [s, id] as const)).map(
          ([s, id]) => reads.read(SPEC, s, id, undefined).catch((e: unknown) => e),
        ),
      );
      // One statement, and so one statement timeout: none of the six reads ran again alone.
      expect(sent).toHaveLength(1);
      expect(sent[0]!.text.split(' UNION ALL ')).toHaveLength(3);
      for (const err of got) {
        expect(err).toBeInstanceOf(ShardgateError);
        expect(err).toMatchObject({
          code: 'deadline-exceeded',
          message: "shard 'pw' cancelled the statement (statement timeout)",
        });
      }
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
  });
});
