import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Handoff } from '../../src/gen/shardgate/v1/handoff.js';
import {
  createTestTopology,
  errorOf,
  freshClientId,
  startTestGateway,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('HandoffService', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(topology);
  });
  afterAll(async () => gw?.close());

  async function newClient(prefix = 'handoff'): Promise<string> {
    const clientId = freshClientId(prefix);
    await gw.client.tenants.createTenant({ clientId });
    return clientId;
  }

  /**
   * Appends and then waits (bounded, about a millisecond) until the clock has passed the stored
   * created_at, so the next handoff gets a strictly later created_at: the time-range filters
   * below need distinct times. (Order needs no wait: handoffs that share a millisecond are
   * ordered by their time-ordered ids, as the batch test shows.)
   */
  async function append(
    clientId: string,
    fromAgent: string,
    toAgent: string,
    n = 0,
  ): Promise<Handoff> {
    const { handoff } = await gw.client.handoffs.appendHandoff({
      clientId,
      handoff: { fromAgent, toAgent, version: 1, summary: { n } },
    });
    const createdMs = handoff!.createdAt!.getTime();
    const deadline = Date.now() + 1_000;
    while (Date.now() <= createdMs) {
      if (Date.now() > deadline) throw new Error('the clock did not pass created_at within 1 s');
      await new Promise((r) => setTimeout(r, 1));
    }
    return handoff!;
  }

  /** Every page of a list call with page size 6, asserting each page's size on the way. */
  async function listAll(req: {
    clientId: string;
    fromAgent?: string;
    toAgent?: string;
    createdAfter?: Date;
    createdBefore?: Date;
  }) {
    const all: Handoff[] = [];
    let pageToken = '';
    for (let pages = 0; ; pages++) {
      expect(pages).toBeLessThan(50);
      const res = await gw.client.handoffs.listHandoffs({ ...req, pageSize: 6, pageToken });
      all.push(...res.handoffs);
      if (res.nextPageToken === '') {
        expect(res.handoffs.length).toBeLessThanOrEqual(6);
        return all;
      }
      expect(res.handoffs).toHaveLength(6);
      pageToken = res.nextPageToken;
    }
  }

  it('stores a nested summary exactly and sets id and created_at', async () => {
    const clientId = await newClient();
    const summary = {
      customer: { name: 'Ada Lovelace', phone: '+1 555 0100', vip: true, balance: -12.5 },
      visits: [1, 2.25, 'three', false, null, { nested: [[], {}] }],
      notes: null,
      count: 0,
      empty: '',
      unicode: 'zażółć 🚀',
    };
    const before = Date.now();
    const { handoff } = await gw.client.handoffs.appendHandoff({
      clientId,
      handoff: {
        id: 'ignored-by-the-server',
        fromAgent: 'intake',
        toAgent: 'dispatch',
        version: 3,
        summary,
        createdAt: new Date('2001-01-01T00:00:00Z'),
      },
    });
    expect(handoff?.id).toMatch(UUID);
    expect(handoff?.fromAgent).toBe('intake');
    expect(handoff?.toAgent).toBe('dispatch');
    expect(handoff?.version).toBe(3);
    expect(handoff?.summary).toEqual(summary);
    const createdMs = handoff!.createdAt!.getTime();
    expect(createdMs).toBeGreaterThanOrEqual(before - 1_000);
    expect(createdMs).toBeLessThanOrEqual(Date.now() + 1_000);

    // What was stored reads back the same through List and GetLatest.
    const { handoffs } = await gw.client.handoffs.listHandoffs({ clientId });
    expect(handoffs).toEqual([handoff]);
    const latest = await gw.client.handoffs.getLatestHandoff({ clientId, toAgent: 'dispatch' });
    expect(latest.handoff).toEqual(handoff);
  });

  it('takes agent names of 128 characters, emoji included, and stores them intact', async () => {
    const clientId = await newClient();
    const fromAgent = '\u{1F527}'.repeat(128); // 128 characters, 256 UTF-16 units
    const toAgent = `dispatch-${'é'.repeat(119)}`;
    const { handoff } = await gw.client.handoffs.appendHandoff({
      clientId,
      handoff: { fromAgent, toAgent, version: 1, summary: { ok: true } },
    });
    expect(handoff?.fromAgent).toBe(fromAgent);
    const latest = await gw.client.handoffs.getLatestHandoff({ clientId, toAgent });
    expect(latest.handoff?.fromAgent).toBe(fromAgent);
    const tooLong = await errorOf(
      gw.client.handoffs.appendHandoff({
        clientId,
        handoff: { fromAgent: `${fromAgent}x`, toAgent, version: 1, summary: {} },
      }),
    );
    expect(tooLong.code).toBe(Status.INVALID_ARGUMENT);
    expect(tooLong.details).toContain('from_agent must be at most 128 characters');
  });

  it('lists newest first and filters by from_agent, to_agent and both', async () => {
    const clientId = await newClient();
    const pairs = [
      ['a', 'b'],
      ['a', 'c'],
      ['b', 'c'],
      ['a', 'b'],
      ['c', 'a'],
      ['b', 'c'],
      ['a', 'c'],
      ['a', 'b'],
    ] as const;
    const appended: Handoff[] = [];
    for (const [i, [from, to]] of pairs.entries())
      appended.push(await append(clientId, from, to, i));
    const newestFirst = [...appended].reverse();
    const ids = (hs: Handoff[]) => hs.map((h) => h.id);

    const all = await gw.client.handoffs.listHandoffs({ clientId });
    expect(all.handoffs).toEqual(newestFirst);
    expect(all.nextPageToken).toBe('');

    const fromA = await gw.client.handoffs.listHandoffs({ clientId, fromAgent: 'a' });
    expect(ids(fromA.handoffs)).toEqual(ids(newestFirst.filter((h) => h.fromAgent === 'a')));
    expect(fromA.handoffs).toHaveLength(5);

    const toC = await gw.client.handoffs.listHandoffs({ clientId, toAgent: 'c' });
    expect(ids(toC.handoffs)).toEqual(ids(newestFirst.filter((h) => h.toAgent === 'c')));
    expect(toC.handoffs).toHaveLength(4);

    const aToB = await gw.client.handoffs.listHandoffs({ clientId, fromAgent: 'a', toAgent: 'b' });
    expect(ids(aToB.handoffs)).toEqual([appended[7]!.id, appended[3]!.id, appended[0]!.id]);

    const none = await gw.client.handoffs.listHandoffs({ clientId, fromAgent: 'c', toAgent: 'b' });
    expect(none.handoffs).toEqual([]);
    expect(none.nextPageToken).toBe('');
  });

  it('filters by time range: created_after inclusive, created_before exclusive', async () => {
    const clientId = await newClient();
    const appended: Handoff[] = [];
    for (let i = 0; i < 6; i++) appended.push(await append(clientId, 'a', 'b', i));
    const at = (i: number) => appended[i]!.createdAt!;
    const ids = (hs: Handoff[]) => hs.map((h) => h.id);

    const range = await gw.client.handoffs.listHandoffs({
      clientId,
      createdAfter: at(1),
      createdBefore: at(4),
    });
    expect(ids(range.handoffs)).toEqual([appended[3]!.id, appended[2]!.id, appended[1]!.id]);

    const after = await gw.client.handoffs.listHandoffs({ clientId, createdAfter: at(4) });
    expect(ids(after.handoffs)).toEqual([appended[5]!.id, appended[4]!.id]);

    const before = await gw.client.handoffs.listHandoffs({ clientId, createdBefore: at(1) });
    expect(ids(before.handoffs)).toEqual([appended[0]!.id]);

    // One millisecond past a handoff's created_at excludes it from created_after.
    const justAfter = await gw.client.handoffs.listHandoffs({
      clientId,
      createdAfter: new Date(at(5).getTime() + 1),
    });
    expect(justAfter.handoffs).toEqual([]);

    const empty = await gw.client.handoffs.listHandoffs({
      clientId,
      createdAfter: at(3),
      createdBefore: at(3),
    });
    expect(empty.handoffs).toEqual([]);

    const combined = await gw.client.handoffs.listHandoffs({
      clientId,
      fromAgent: 'a',
      toAgent: 'b',
      createdAfter: at(2),
      createdBefore: at(5),
    });
    expect(ids(combined.handoffs)).toEqual([appended[4]!.id, appended[3]!.id, appended[2]!.id]);
  });

  it('pages through 40 handoffs 6 at a time without gaps or repeats', async () => {
    const clientId = await newClient();
    const appended: Handoff[] = [];
    for (let i = 0; i < 40; i++)
      appended.push(await append(clientId, i % 3 === 0 ? 'x' : 'y', i % 2 === 0 ? 'p' : 'q', i));
    const newestFirst = [...appended].reverse();

    const all = await listAll({ clientId });
    expect(all).toHaveLength(40);
    expect(new Set(all.map((h) => h.id)).size).toBe(40);
    expect(all).toEqual(newestFirst);

    // Paging keeps the filters: 14 handoffs from x (i = 0, 3, …, 39).
    const fromX = await listAll({ clientId, fromAgent: 'x' });
    expect(fromX.map((h) => h.id)).toEqual(
      newestFirst.filter((h) => h.fromAgent === 'x').map((h) => h.id),
    );
    expect(fromX).toHaveLength(14);

    // Paging within a time range, with both agent filters: y→q among i in [5, 35).
    const window = await listAll({
      clientId,
      fromAgent: 'y',
      toAgent: 'q',
      createdAfter: appended[5]!.createdAt,
      createdBefore: appended[35]!.createdAt,
    });
    const expected = newestFirst.filter((h) => {
      const n = (h.summary as { n: number }).n;
      return n >= 5 && n < 35 && h.fromAgent === 'y' && h.toAgent === 'q';
    });
    expect(window.map((h) => h.id)).toEqual(expected.map((h) => h.id));
    expect(window).toHaveLength(10);

    // A token is bound to the filters it was issued for.
    const first = await gw.client.handoffs.listHandoffs({ clientId, pageSize: 6 });
    const misuse = await errorOf(
      gw.client.handoffs.listHandoffs({
        clientId,
        pageSize: 6,
        fromAgent: 'x',
        pageToken: first.nextPageToken,
      }),
    );
    expect(misuse.code).toBe(Status.INVALID_ARGUMENT);
  });

  it('returns the newest handoff to an agent, and NOT_FOUND when there is none', async () => {
    const clientId = await newClient();
    const missingEmpty = await errorOf(
      gw.client.handoffs.getLatestHandoff({ clientId, toAgent: 'billing' }),
    );
    expect(missingEmpty.code).toBe(Status.NOT_FOUND);

    await append(clientId, 'intake', 'billing', 0);
    const second = await append(clientId, 'dispatch', 'billing', 1);
    const other = await append(clientId, 'billing', 'intake', 2);

    const latest = await gw.client.handoffs.getLatestHandoff({ clientId, toAgent: 'billing' });
    expect(latest.handoff).toEqual(second);
    const latestIntake = await gw.client.handoffs.getLatestHandoff({ clientId, toAgent: 'intake' });
    expect(latestIntake.handoff).toEqual(other);

    const missing = await errorOf(
      gw.client.handoffs.getLatestHandoff({ clientId, toAgent: 'dispatch' }),
    );
    expect(missing.code).toBe(Status.NOT_FOUND);
    expect(missing.details).toContain('dispatch');
  });

  it('lists a batch, appended in one statement at one created_at, newest first in reverse append order', async () => {
    const clientId = await newClient();
    const items = Array.from({ length: 12 }, (_, n) => ({
      fromAgent: 'intake',
      toAgent: n % 2 === 0 ? 'billing' : 'dispatch',
      version: 1,
      summary: { n },
    }));
    const { handoffs } = await gw.client.handoffs.batchAppendHandoffs({
      clientId,
      handoffs: items,
    });
    expect(new Set(handoffs.map((h) => h.createdAt!.getTime())).size).toBe(1);
    const listed = await listAll({ clientId });
    expect(listed.map((h) => h.summary)).toEqual(items.map((h) => h.summary).reverse());
    // The latest to an agent is the last one the batch gave it, not any of the batch.
    const latest = await gw.client.handoffs.getLatestHandoff({ clientId, toAgent: 'billing' });
    expect(latest.handoff?.summary).toEqual({ n: 10 });
  });

  it('rejects invalid handoffs and unknown clients', async () => {
    const clientId = await newClient();
    const noHandoff = await errorOf(gw.client.handoffs.appendHandoff({ clientId }));
    expect(noHandoff.code).toBe(Status.INVALID_ARGUMENT);
    const noFrom = await errorOf(
      gw.client.handoffs.appendHandoff({
        clientId,
        handoff: { fromAgent: '', toAgent: 'b', summary: {} },
      }),
    );
    expect(noFrom.code).toBe(Status.INVALID_ARGUMENT);
    const negative = await errorOf(
      gw.client.handoffs.appendHandoff({
        clientId,
        handoff: { fromAgent: 'a', toAgent: 'b', version: -1, summary: {} },
      }),
    );
    expect(negative.code).toBe(Status.INVALID_ARGUMENT);
    const unknown = await errorOf(
      gw.client.handoffs.appendHandoff({
        clientId: freshClientId('nobody'),
        handoff: { fromAgent: 'a', toAgent: 'b', summary: {} },
      }),
    );
    expect(unknown.code).toBe(Status.NOT_FOUND);
    const { handoffs } = await gw.client.handoffs.listHandoffs({ clientId });
    expect(handoffs).toEqual([]);
  });

  it('has indexes on (from_agent, to_agent) and (created_at) that the agent-filtered list can use', async () => {
    const clientId = await newClient();
    for (let i = 0; i < 3; i++) await append(clientId, 'a', 'b', i);
    const { tenant } = await gw.client.tenants.getTenant({ clientId });
    const url = topology.shards.find((s) => s.name === tenant!.shard)!.url;
    const schema = tenant!.schema;

    await withPg(url, async (pg) => {
      const { rows } = await pg.query<{ indexdef: string }>(
        `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'handoffs'`,
        [schema],
      );
      const columnsOf = rows.map((r) => /\((.*)\)$/.exec(r.indexdef)?.[1]);
      expect(columnsOf).toContain('from_agent, to_agent');
      expect(columnsOf).toContain('created_at');

      // The gateway's own list query text, planned with the values a caller would bind.
      await pg.query('SET enable_seqscan = off');
      const { handoffs } = await import('../../src/shards/handoffs.js');
      const query = handoffs.listQuery(pg.escapeIdentifier(schema), {
        fromAgent: 'a',
        toAgent: 'b',
        limit: 51,
      });
      const plan = await pg.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${query.text}`, query.values);
      const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
      // Both agent filters become the index condition, not a filter over every row.
      expect(text).toMatch(/Index (Only )?Scan|Bitmap Index Scan/);
      expect(text).toContain(`Index Cond: ((from_agent = 'a'::text) AND (to_agent = 'b'::text))`);
      expect(text).not.toContain('Seq Scan');
    });
  });
});
