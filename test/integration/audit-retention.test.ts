import { Writable } from 'node:stream';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, auditRetentionCutoff } from '../../src/catalog/audit-log.js';
import { configSchema } from '../../src/core/config.js';
import { Database } from '../../src/pg/database.js';
import {
  createTestTopology,
  eventually,
  freshClientId,
  startTestGateway,
  uniqueSuffix,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

const DAY_MS = 86_400_000;

/** A logger whose lines a test can read back. */
function capturingLog(): { log: Logger; messages: () => string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const log = pino({ level: 'info' }, sink);
  return { log, messages: () => lines.map((l) => (JSON.parse(l) as { msg: string }).msg) };
}

describe('audit log retention', () => {
  let topology: TestTopology;
  // Started with retention 0, so no background purge races the direct purges below.
  let gw: TestGateway;
  let audit: AuditLog;

  beforeAll(async () => {
    topology = await createTestTopology(1);
    gw = await startTestGateway(topology, { audit: { retentionDays: 0 } });
    audit = gw.gateway.context.audit;
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
  });

  // Each purge deletes every old row, so a test's leftovers would change the next one's counts.
  const actors: string[] = [];
  const newActor = (prefix: string): string => {
    const actor = `${prefix}-${uniqueSuffix()}`;
    actors.push(actor);
    return actor;
  };
  afterEach(async () => {
    await withPg(topology.catalogUrl, (c) =>
      c.query('DELETE FROM shardgate.audit_events WHERE actor = ANY ($1::text[])', [actors]),
    );
    actors.length = 0;
  });

  /** Inserts `count` events by `actor`, `ageDays` old, behind the gateway's back; their ids, oldest first. */
  async function insertEvents(
    actor: string,
    count: number,
    ageDays: number,
    outcome = 'OK',
  ): Promise<string[]> {
    return withPg(topology.catalogUrl, async (c) => {
      const res = await c.query<{ id: string }>(
        `INSERT INTO shardgate.audit_events
           (created_at, actor, actor_name, method, target, request, outcome)
         SELECT now() - make_interval(days => $2::int), $1, '',
           'shardgate.v1.AdminService/DrainShard', 'shard-x', '{}'::jsonb, $4
         FROM generate_series(1, $3::int)
         RETURNING id::text AS id`,
        [actor, ageDays, count, outcome],
      );
      return res.rows.map((r) => r.id).sort((a, b) => Number(BigInt(a) - BigInt(b)));
    });
  }

  /** The ids of `actor`'s events still in the table, ascending. */
  async function idsOf(actor: string): Promise<string[]> {
    return withPg(topology.catalogUrl, async (c) => {
      const res = await c.query<{ id: string }>(
        'SELECT id::text AS id FROM shardgate.audit_events WHERE actor = $1 ORDER BY audit_events.id',
        [actor],
      );
      return res.rows.map((r) => r.id);
    });
  }

  /** Ages events by `ageDays` (created_at set that far in the past). */
  async function age(ids: readonly string[], ageDays: number): Promise<void> {
    await withPg(topology.catalogUrl, (c) =>
      c.query(
        `UPDATE shardgate.audit_events SET created_at = now() - make_interval(days => $2)
         WHERE id = ANY ($1::bigint[])`,
        [ids, ageDays],
      ),
    );
  }

  const cutoffDaysAgo = (days: number) => new Date(Date.now() - days * DAY_MS);

  it('purgeOlderThan deletes events older than the cutoff, UNKNOWN ones too, and keeps newer ones', async () => {
    const actor = newActor('retention');
    const oldOk = await insertEvents(actor, 3, 500);
    const oldUnknown = await insertEvents(actor, 2, 401, 'UNKNOWN');
    const recent = await insertEvents(actor, 2, 399);
    const recentUnknown = await insertEvents(actor, 1, 0, 'UNKNOWN');
    expect(await idsOf(actor)).toHaveLength(8);

    expect(await audit.purgeOlderThan(cutoffDaysAgo(400))).toBe(5);

    const left = await idsOf(actor);
    expect(left).toEqual([...recent, ...recentUnknown]);
    expect(left.filter((id) => [...oldOk, ...oldUnknown].includes(id))).toEqual([]);
    // Nothing left to delete: a second run is a no-op.
    expect(await audit.purgeOlderThan(cutoffDaysAgo(400))).toBe(0);
    expect(await idsOf(actor)).toEqual([...recent, ...recentUnknown]);
  });

  it('purges 20 old events in batches of 7 (7, 7, 6) and 14 in batches of 7 (7, 7, 0)', async () => {
    const actor = newActor('batches');
    await insertEvents(actor, 20, 50);
    const kept = await insertEvents(actor, 3, 5);
    expect(await audit.purgeOlderThan(cutoffDaysAgo(30), { batchSize: 7 })).toBe(20);
    expect(await idsOf(actor)).toEqual(kept);

    // An exact multiple of the batch size must not stop after a full batch.
    await insertEvents(actor, 14, 50);
    expect(await audit.purgeOlderThan(cutoffDaysAgo(30), { batchSize: 7 })).toBe(14);
    expect(await idsOf(actor)).toEqual(kept);
  });

  it('finds old events through audit_events_created_idx, not by scanning the table', async () => {
    const actor = newActor('indexed');
    await insertEvents(actor, 20_000, 1);
    await insertEvents(actor, 5, 100);
    // A real Database that remembers each statement, so the plan checked is the purge's own.
    const statements: { text: string; values: unknown[] }[] = [];
    class RecordingDatabase extends Database {
      override query<R extends pg.QueryResultRow>(
        text: string,
        values: unknown[] = [],
        signal?: AbortSignal,
      ) {
        statements.push({ text, values });
        return super.query<R>(text, values, signal);
      }
    }
    const db = new RecordingDatabase({
      ...configSchema.parse({}).pool,
      url: topology.catalogUrl,
      label: 'the catalog',
      onError: () => undefined,
    });
    try {
      expect(await new AuditLog(db).purgeOlderThan(cutoffDaysAgo(30))).toBe(5);
    } finally {
      await db.close();
    }
    expect(statements).toHaveLength(1);
    const plan = await withPg(topology.catalogUrl, async (c) => {
      await c.query('ANALYZE shardgate.audit_events');
      const res = await c.query<{ 'QUERY PLAN': unknown }>(
        `EXPLAIN (FORMAT JSON) ${statements[0]!.text}`,
        statements[0]!.values,
      );
      return JSON.stringify(res.rows[0]!['QUERY PLAN']);
    });
    expect(plan).toContain('"Index Name":"audit_events_created_idx"');
    expect(plan).not.toContain('Seq Scan');
  });

  it('refuses a batch size below 1 (it would never end)', async () => {
    await expect(audit.purgeOlderThan(cutoffDaysAgo(30), { batchSize: 0 })).rejects.toThrow(
      /batchSize must be a positive integer/,
    );
  });

  it('two purges at once delete every old event exactly once between them', async () => {
    const actor = newActor('concurrent');
    await insertEvents(actor, 50, 100);
    const kept = await insertEvents(actor, 2, 1);
    const counts = await Promise.all([
      audit.purgeOlderThan(cutoffDaysAgo(30), { batchSize: 7 }),
      audit.purgeOlderThan(cutoffDaysAgo(30), { batchSize: 7 }),
    ]);
    expect(counts[0]! + counts[1]!).toBe(50);
    expect(await idsOf(actor)).toEqual(kept);
  });

  it('retentionDays 0 keeps events of any age: no cutoff, and a gateway started with it deletes nothing', async () => {
    expect(auditRetentionCutoff(0)).toBeUndefined();
    const now = new Date('2030-01-01T00:00:00Z');
    expect(auditRetentionCutoff(400, now)).toEqual(new Date('2028-11-27T00:00:00Z'));

    const actor = newActor('forever');
    const ancient = await insertEvents(actor, 4, 10_000);
    const { log, messages } = capturingLog();
    const forever = await startTestGateway(topology, { audit: { retentionDays: 0 } }, { log });
    try {
      expect(messages()).toContain('audit.retentionDays is 0: audit events are kept forever');
      expect(await idsOf(actor)).toEqual(ancient);
    } finally {
      await forever.close();
    }
    expect(await idsOf(actor)).toEqual(ancient);
  });

  it('a gateway with audit.retentionDays purges old events in the background; ListAuditEvents no longer returns them', async () => {
    const oldClient = freshClientId('aged');
    const newClient = freshClientId('fresh');
    for (const clientId of [oldClient, newClient]) {
      await gw.client.tenants.createTenant({ clientId });
      await gw.client.tenants.churnTenant({ clientId });
      await gw.client.tenants.reactivateTenant({ clientId });
    }
    const listed = async (clientId: string) =>
      (await gw.client.admin.listAuditEvents({ pageSize: 1000 })).events
        .filter((e) => e.target === clientId)
        .map((e) => e.id);
    const agedIds = await listed(oldClient);
    const freshIds = await listed(newClient);
    expect(agedIds).toHaveLength(2);
    expect(freshIds).toHaveLength(2);
    await age(agedIds, 45);

    const { log, messages } = capturingLog();
    const purging = await startTestGateway(topology, { audit: { retentionDays: 30 } }, { log });
    try {
      await eventually(async () => {
        expect(await listed(oldClient)).toEqual([]);
        expect(messages()).toContain('deleted audit events past retention');
      });
      expect(await listed(newClient)).toEqual(freshIds);
      const fromOther = (await purging.client.admin.listAuditEvents({ pageSize: 1000 })).events;
      expect(fromOther.filter((e) => agedIds.includes(e.id))).toEqual([]);
      expect(fromOther.filter((e) => freshIds.includes(e.id)).map((e) => e.id)).toEqual(freshIds);
      expect(messages()).not.toContain('audit retention purge failed; it runs again in an hour');
    } finally {
      await purging.close();
    }
  });
});
