import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Handoff } from '../../src/gen/shardgate/v1/handoff.js';
import { handoffs as handoffQueries, type HandoffQuery } from '../../src/shards/handoffs.js';
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
    orderBy?: string;
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

  /**
   * The plan of the gateway's own list query text, with the values a caller would bind. A few
   * rows would be read sequentially, so sequential scans are off (and with `ordered`, full sorts
   * too): what matters is which indexes the query can use, and whether they give its order.
   */
  async function explainList(clientId: string, q: HandoffQuery, ordered = false): Promise<string> {
    const { tenant } = await gw.client.tenants.getTenant({ clientId });
    const url = topology.shards.find((s) => s.name === tenant!.shard)!.url;
    return withPg(url, async (pg) => {
      await pg.query('SET enable_seqscan = off');
      if (ordered) await pg.query('SET enable_sort = off');
      const query = handoffQueries.listQuery(pg.escapeIdentifier(tenant!.schema), q);
      const plan = await pg.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${query.text}`, query.values);
      return plan.rows.map((r) => r['QUERY PLAN']).join('\n');
    });
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

  it('pages oldest first with order_by "created_at": 40 handoffs in append order, filters kept, no gaps or repeats', async () => {
    const clientId = await newClient();
    const appended: Handoff[] = [];
    for (let i = 0; i < 40; i++)
      appended.push(await append(clientId, i % 3 === 0 ? 'x' : 'y', i % 2 === 0 ? 'p' : 'q', i));
    const ids = (hs: Handoff[]) => hs.map((h) => h.id);

    const oldestFirst = await listAll({ clientId, orderBy: 'created_at' });
    expect(oldestFirst).toHaveLength(40);
    expect(new Set(ids(oldestFirst)).size).toBe(40);
    expect(oldestFirst).toEqual(appended);
    // "created_at asc" is the same order; the default and "created_at desc" are its reverse.
    expect(await listAll({ clientId, orderBy: 'created_at asc' })).toEqual(appended);
    const newestFirst = [...appended].reverse();
    expect(await listAll({ clientId })).toEqual(newestFirst);
    expect(await listAll({ clientId, orderBy: 'created_at desc' })).toEqual(newestFirst);

    // With to_agent (the index handoffs_to_agent_latest_idx, read backward): 20 to q.
    const toQ = await listAll({ clientId, toAgent: 'q', orderBy: 'created_at' });
    expect(ids(toQ)).toEqual(ids(appended.filter((h) => h.toAgent === 'q')));
    expect(toQ).toHaveLength(20);

    // Within a time range, with both agent filters: y→q among i in [5, 35).
    const window = await listAll({
      clientId,
      fromAgent: 'y',
      toAgent: 'q',
      createdAfter: appended[5]!.createdAt,
      createdBefore: appended[35]!.createdAt,
      orderBy: ' created_at  ASC ',
    });
    const expected = appended.filter((h) => {
      const n = (h.summary as { n: number }).n;
      return n >= 5 && n < 35 && h.fromAgent === 'y' && h.toAgent === 'q';
    });
    expect(ids(window)).toEqual(ids(expected));
    expect(window).toHaveLength(10);

    // Only a time range: i in [12, 30), 18 handoffs, three pages.
    const range = await listAll({
      clientId,
      createdAfter: appended[12]!.createdAt,
      createdBefore: appended[30]!.createdAt,
      orderBy: 'created_at',
    });
    expect(ids(range)).toEqual(ids(appended.slice(12, 30)));
  });

  it('takes order_by as AIP-132 writes it and refuses anything else with INVALID_ARGUMENT naming the accepted values', async () => {
    const clientId = await newClient();
    const first = await append(clientId, 'a', 'b', 0);
    const second = await append(clientId, 'a', 'b', 1);
    const listed = async (orderBy: string) =>
      (await gw.client.handoffs.listHandoffs({ clientId, orderBy })).handoffs.map((h) => h.id);

    for (const orderBy of ['created_at', 'created_at asc', 'created_at ASC', '\tcreated_at   Asc '])
      expect(await listed(orderBy), orderBy).toEqual([first.id, second.id]);
    for (const orderBy of ['', '   ', 'created_at desc', 'created_at DESC', ' created_at\tdesc'])
      expect(await listed(orderBy), orderBy).toEqual([second.id, first.id]);

    for (const orderBy of [
      'summary',
      'created_at sideways',
      'create_time',
      'create_time desc',
      'CREATED_AT',
      'created_at desc, id desc',
      'created_at,',
      'created_at asc desc',
      '-created_at',
      'id',
    ]) {
      const error = await errorOf(gw.client.handoffs.listHandoffs({ clientId, orderBy }));
      expect(error.code, orderBy).toBe(Status.INVALID_ARGUMENT);
      expect(error.details).toBe(
        'order_by must be empty or "created_at desc" (newest first), or "created_at" or ' +
          '"created_at asc" (oldest first)',
      );
    }
  });

  it('binds a page token to its order: a newest-first token used oldest first (or back) is INVALID_ARGUMENT', async () => {
    const clientId = await newClient();
    for (let i = 0; i < 4; i++) await append(clientId, 'a', 'b', i);
    const newest = await gw.client.handoffs.listHandoffs({ clientId, pageSize: 2 });
    const oldest = await gw.client.handoffs.listHandoffs({
      clientId,
      pageSize: 2,
      orderBy: 'created_at',
    });
    expect(newest.nextPageToken).not.toBe('');
    expect(oldest.nextPageToken).not.toBe('');

    const misuses = [
      { orderBy: 'created_at', pageToken: newest.nextPageToken },
      { orderBy: 'created_at asc', pageToken: newest.nextPageToken },
      { orderBy: '', pageToken: oldest.nextPageToken },
      { orderBy: 'created_at desc', pageToken: oldest.nextPageToken },
    ];
    for (const misuse of misuses) {
      const error = await errorOf(
        gw.client.handoffs.listHandoffs({ clientId, pageSize: 2, ...misuse }),
      );
      expect(error.code, misuse.orderBy).toBe(Status.INVALID_ARGUMENT);
      expect(error.details).toContain('page_token was issued for different filters');
    }

    // The same order, written another way, takes the token: the order is compared normalised.
    const newestRest = await gw.client.handoffs.listHandoffs({
      clientId,
      pageSize: 2,
      orderBy: 'created_at DESC',
      pageToken: newest.nextPageToken,
    });
    expect([...newest.handoffs, ...newestRest.handoffs].map((h) => h.summary?.['n'])).toEqual([
      3, 2, 1, 0,
    ]);
    const oldestRest = await gw.client.handoffs.listHandoffs({
      clientId,
      pageSize: 2,
      orderBy: ' created_at Asc',
      pageToken: oldest.nextPageToken,
    });
    expect([...oldest.handoffs, ...oldestRest.handoffs].map((h) => h.summary?.['n'])).toEqual([
      0, 1, 2, 3,
    ]);
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

  it('lists a batch, appended in one statement at one created_at, newest first in reverse append order and oldest first in append order', async () => {
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
    // Oldest first, 6 a page across one created_at: exactly the batch's order, paged by id.
    const oldestFirst = await listAll({ clientId, orderBy: 'created_at' });
    expect(oldestFirst.map((h) => h.id)).toEqual(handoffs.map((h) => h.id));
    expect(oldestFirst.map((h) => h.summary)).toEqual(items.map((h) => h.summary));
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
    });

    const text = await explainList(clientId, { fromAgent: 'a', toAgent: 'b', limit: 51 });
    // Both agent filters become the index condition, not a filter over every row.
    expect(text).toMatch(/Index (Only )?Scan|Bitmap Index Scan/);
    expect(text).toContain(`Index Cond: ((from_agent = 'a'::text) AND (to_agent = 'b'::text))`);
    expect(text).not.toContain('Seq Scan');
  });

  it('lists oldest first from indexes too: to_agent reads handoffs_to_agent_latest_idx backward, no filter handoffs_created_idx', async () => {
    const clientId = await newClient();
    const appended: Handoff[] = [];
    for (let i = 0; i < 3; i++) appended.push(await append(clientId, 'a', 'b', i));
    const after = { createdAt: appended[0]!.createdAt!, id: appended[0]!.id };
    const fullSort = /(^|->)\s*Sort\s+\(/m; // a plan node; an Incremental Sort on a presorted key is fine
    const uuid = `'${after.id}'::uuid`;

    // With to_agent: the index, read backward, gives (created_at, id) ascending with no sort,
    // and a page token's keyset is part of the index condition.
    for (const withToken of [false, true]) {
      const text = await explainList(
        clientId,
        { toAgent: 'b', order: 'oldest-first', limit: 51, ...(withToken ? { after } : {}) },
        true,
      );
      expect(text).toContain('Index Scan Backward using handoffs_to_agent_latest_idx');
      expect(text).toMatch(/Index Cond: \(+to_agent = 'b'::text\)/);
      if (withToken) expect(text).toMatch(/Index Cond: .*ROW\(created_at, id\) > ROW\(/);
      if (withToken) expect(text).toContain(uuid);
      expect(text).not.toMatch(fullSort);
      expect(text).not.toContain('Seq Scan');
    }
    // Newest first reads the same index forward.
    const newestToB = await explainList(clientId, { toAgent: 'b', limit: 51 }, true);
    expect(newestToB).toMatch(/Index Scan using handoffs_to_agent_latest_idx/);
    expect(newestToB).not.toMatch(fullSort);

    // Without filters: handoffs_created_idx in created_at order, ties sorted by id as they come;
    // a page token's created_at bounds the index scan.
    for (const withToken of [false, true]) {
      const text = await explainList(
        clientId,
        { order: 'oldest-first', limit: 51, ...(withToken ? { after } : {}) },
        true,
      );
      expect(text).toMatch(/Index Scan using handoffs_created_idx/);
      expect(text).not.toMatch(fullSort);
      expect(text).not.toContain('Seq Scan');
      if (withToken) expect(text).toMatch(/Index Cond: \(created_at >= /);
    }
  });
});
