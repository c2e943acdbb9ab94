import { randomUUID } from 'node:crypto';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Benchmark, KnowledgeEntry } from '../../src/gen/shardgate/v1/shared.js';
import {
  createTestTopology,
  errorOf,
  freshClientId,
  startTestGateway,
  statusOf,
  uniqueSuffix,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const pad = (i: number): string => String(i).padStart(2, '0');

/** Newest first, ties broken by id descending: the order the API promises. */
function newestFirst(a: KnowledgeEntry, b: KnowledgeEntry): number {
  const dt = b.createdAt!.getTime() - a.createdAt!.getTime();
  return dt !== 0 ? dt : a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

describe('SharedService', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(topology);
  });
  afterAll(async () => gw?.close());

  const putBenchmark = async (b: Partial<Benchmark>): Promise<Benchmark> =>
    (await gw.client.shared.putBenchmark({ benchmark: b })).benchmark!;
  const addEntry = async (e: Partial<KnowledgeEntry>): Promise<KnowledgeEntry> =>
    (await gw.client.shared.addKnowledgeEntry({ entry: e })).entry!;

  async function listAllBenchmarks(request: {
    industry?: string;
    metric?: string;
    pageSize?: number;
  }): Promise<{ items: Benchmark[]; pageSizes: number[] }> {
    const items: Benchmark[] = [];
    const pageSizes: number[] = [];
    let pageToken = '';
    do {
      const res = await gw.client.shared.listBenchmarks({ ...request, pageToken });
      items.push(...res.benchmarks);
      pageSizes.push(res.benchmarks.length);
      pageToken = res.nextPageToken;
    } while (pageToken !== '');
    return { items, pageSizes };
  }

  async function listAllEntries(request: {
    topic?: string;
    agent?: string;
    pageSize?: number;
  }): Promise<{ items: KnowledgeEntry[]; pageSizes: number[] }> {
    const items: KnowledgeEntry[] = [];
    const pageSizes: number[] = [];
    let pageToken = '';
    do {
      const res = await gw.client.shared.listKnowledgeEntries({ ...request, pageToken });
      items.push(...res.entries);
      pageSizes.push(res.entries.length);
      pageToken = res.nextPageToken;
    } while (pageToken !== '');
    return { items, pageSizes };
  }

  describe('benchmarks', () => {
    it('puts, gets, and replaces on a second put of the same industry and metric (one row)', async () => {
      const industry = `hvac-${uniqueSuffix()}`;
      const first = await putBenchmark({
        industry,
        metric: 'first_time_fix_rate',
        value: 0.78,
        unit: 'ratio',
        source: 'ACCA survey 2024',
        updatedAt: new Date('2000-01-01T00:00:00Z'), // ignored
      });
      expect(first).toEqual({
        industry,
        metric: 'first_time_fix_rate',
        value: 0.78,
        unit: 'ratio',
        source: 'ACCA survey 2024',
        updatedAt: first.updatedAt,
      });
      expect(Math.abs(first.updatedAt!.getTime() - Date.now())).toBeLessThan(60_000);
      expect(
        (await gw.client.shared.getBenchmark({ industry, metric: 'first_time_fix_rate' }))
          .benchmark,
      ).toEqual(first);

      await sleep(5);
      const second = await putBenchmark({
        industry,
        metric: 'first_time_fix_rate',
        value: -1.25e-7,
      });
      expect(second).toEqual({
        industry,
        metric: 'first_time_fix_rate',
        value: -1.25e-7,
        unit: '',
        source: '',
        updatedAt: second.updatedAt,
      });
      expect(second.updatedAt!.getTime()).toBeGreaterThan(first.updatedAt!.getTime());
      expect(
        (await gw.client.shared.getBenchmark({ industry, metric: 'first_time_fix_rate' }))
          .benchmark,
      ).toEqual(second);

      const rows = await withPg(
        topology.catalogUrl,
        async (db) =>
          (
            await db.query(
              'SELECT metric, value, unit FROM shared.benchmarks WHERE industry = $1',
              [industry],
            )
          ).rows,
      );
      expect(rows).toEqual([{ metric: 'first_time_fix_rate', value: -1.25e-7, unit: '' }]);
    });

    it('returns NOT_FOUND for an unknown metric or industry', async () => {
      const industry = `plumbing-${uniqueSuffix()}`;
      await putBenchmark({ industry, metric: 'avg_ticket', value: 310, unit: 'usd' });
      const missingMetric = await errorOf(
        gw.client.shared.getBenchmark({ industry, metric: 'avg_tickets' }),
      );
      expect(missingMetric.code).toBe(Status.NOT_FOUND);
      expect(missingMetric.details).toContain('avg_tickets');
      expect(
        await statusOf(
          gw.client.shared.getBenchmark({ industry: `${industry}x`, metric: 'avg_ticket' }),
        ),
      ).toBe(Status.NOT_FOUND);
    });

    it('lists one industry, one metric, or both, in order, with paging', async () => {
      const sfx = uniqueSuffix();
      const [indA, indB, indC] = ['a', 'b', 'c'].map((x) => `bench${sfx}${x}`) as [
        string,
        string,
        string,
      ];
      const metricOnly = `shared.metric.${sfx}`;
      // Put out of order, and concurrently, to show the order comes from the listing.
      const put = [
        ...Array.from({ length: 13 }, (_, i) => ({
          industry: indA,
          metric: `m${pad(12 - i)}`,
          value: i,
        })),
        { industry: indC, metric: metricOnly, value: 3 },
        { industry: indA, metric: metricOnly, value: 1 },
        { industry: indB, metric: metricOnly, value: 2 },
        { industry: indB, metric: 'm00', value: 20 },
      ];
      await Promise.all(put.map((b) => putBenchmark({ ...b, unit: 'count' })));

      const a = await listAllBenchmarks({ industry: indA, pageSize: 5 });
      expect(a.pageSizes).toEqual([5, 5, 4]);
      expect(a.items.map((b) => b.metric)).toEqual([
        ...Array.from({ length: 13 }, (_, i) => `m${pad(i)}`),
        metricOnly,
      ]);
      expect(a.items.map((b) => b.value)).toEqual([
        ...Array.from({ length: 13 }, (_, i) => 12 - i),
        1,
      ]);
      expect(a.items.every((b) => b.industry === indA && b.unit === 'count')).toBe(true);

      const byMetric = await listAllBenchmarks({ metric: metricOnly, pageSize: 1 });
      expect(byMetric.pageSizes).toEqual([1, 1, 1]);
      expect(byMetric.items.map((b) => [b.industry, b.value])).toEqual([
        [indA, 1],
        [indB, 2],
        [indC, 3],
      ]);

      const both = await gw.client.shared.listBenchmarks({ industry: indB, metric: 'm00' });
      expect(both.benchmarks.map((b) => [b.industry, b.metric, b.value])).toEqual([
        [indB, 'm00', 20],
      ]);
      expect(both.nextPageToken).toBe('');

      const none = await gw.client.shared.listBenchmarks({ industry: `bench${sfx}z` });
      expect(none).toEqual({ benchmarks: [], nextPageToken: '' });
    });

    it('pages over all benchmarks without gaps or repeats, in the database order', async () => {
      const sfx = uniqueSuffix();
      await Promise.all(
        Array.from({ length: 9 }, (_, i) =>
          putBenchmark({ industry: `all${sfx}`, metric: `k${i}`, value: i }),
        ),
      );
      const { items } = await listAllBenchmarks({ pageSize: 4 });
      const truth = await withPg(
        topology.catalogUrl,
        async (db) =>
          (
            await db.query<{ industry: string; metric: string }>(
              'SELECT industry, metric FROM shared.benchmarks ORDER BY industry, metric',
            )
          ).rows,
      );
      expect(items.map((b) => ({ industry: b.industry, metric: b.metric }))).toEqual(truth);
      expect(items.filter((b) => b.industry === `all${sfx}`)).toHaveLength(9);
    });

    it('rejects a page token used with other filters', async () => {
      const industry = `tok${uniqueSuffix()}`;
      await Promise.all(
        [1, 2, 3].map((i) => putBenchmark({ industry, metric: `m${i}`, value: i })),
      );
      const first = await gw.client.shared.listBenchmarks({ industry, pageSize: 1 });
      expect(first.nextPageToken).not.toBe('');
      for (const changed of [{ industry: `${industry}x` }, {}, { industry, metric: 'm2' }]) {
        const err = await errorOf(
          gw.client.shared.listBenchmarks({
            ...changed,
            pageSize: 1,
            pageToken: first.nextPageToken,
          }),
        );
        expect(err.code).toBe(Status.INVALID_ARGUMENT);
        expect(err.details).toContain('page_token');
      }
    });
    // Regression: unfiltered ListBenchmarks, ListKnowledgeEntries and ListTenants all had the
    // filters [null, null], so their tokens shared a fingerprint and ListTenants took a
    // benchmark token as its own.
    it("rejects another RPC's page token", async () => {
      const industry = `cross${uniqueSuffix()}`;
      await Promise.all([1, 2].map((i) => putBenchmark({ industry, metric: `m${i}`, value: i })));
      await Promise.all(
        [1, 2].map((i) => addEntry({ topic: `cross.${industry}`, agent: 'a', content: `${i}` })),
      );
      await Promise.all(
        [1, 2].map(() => gw.client.tenants.createTenant({ clientId: freshClientId('cross') })),
      );
      const benchmarkToken = (await gw.client.shared.listBenchmarks({ pageSize: 1 })).nextPageToken;
      const knowledgeToken = (await gw.client.shared.listKnowledgeEntries({ pageSize: 1 }))
        .nextPageToken;
      const tenantToken = (await gw.client.tenants.listTenants({ pageSize: 1 })).nextPageToken;
      const misuses = [
        () => gw.client.tenants.listTenants({ pageSize: 1, pageToken: benchmarkToken }),
        () => gw.client.tenants.listTenants({ pageSize: 1, pageToken: knowledgeToken }),
        () => gw.client.shared.listBenchmarks({ pageSize: 1, pageToken: knowledgeToken }),
        () => gw.client.shared.listBenchmarks({ pageSize: 1, pageToken: tenantToken }),
        () => gw.client.shared.listKnowledgeEntries({ pageSize: 1, pageToken: benchmarkToken }),
        () => gw.client.shared.listKnowledgeEntries({ pageSize: 1, pageToken: tenantToken }),
      ];
      for (const misuse of misuses) {
        const err = await errorOf(misuse());
        expect(err.code).toBe(Status.INVALID_ARGUMENT);
        expect(err.details).toContain('page_token');
      }
    });
  });

  describe('knowledge entries', () => {
    it('gives entries added one after another increasing ids, so ties in created_at keep their order', async () => {
      const topic = `order.${randomUUID().slice(0, 8)}`;
      const added: KnowledgeEntry[] = [];
      for (let i = 0; i < 20; i++)
        added.push(await addEntry({ topic, agent: 'a', content: `${i}` }));
      const ids = added.map((e) => e.id);
      expect([...ids].sort()).toEqual(ids);
      const { entries } = await gw.client.shared.listKnowledgeEntries({ topic, pageSize: 50 });
      expect(entries.map((e) => e.content)).toEqual(added.map((e) => e.content).reverse());
    });

    it('adds an entry with a server id and created_at, and lists newest first', async () => {
      const topic = `dispatch.${uniqueSuffix()}`;
      const content = 'Line one\n\tindented — ünïcödé ✓\r\nlast';
      const first = await addEntry({ topic, agent: 'Scheduler Agent #1', content, id: 'ignored' });
      expect(first.id).toMatch(UUID);
      expect(first).toEqual({
        id: first.id,
        topic,
        agent: 'Scheduler Agent #1',
        content,
        createdAt: first.createdAt,
      });
      await sleep(5);
      const second = await addEntry({ topic, agent: 'billing', content: 'second' });
      await sleep(5);
      const third = await addEntry({ topic, agent: 'Scheduler Agent #1', content: 'third' });
      expect(second.createdAt!.getTime()).toBeGreaterThan(first.createdAt!.getTime());
      expect(third.createdAt!.getTime()).toBeGreaterThan(second.createdAt!.getTime());

      const all = await gw.client.shared.listKnowledgeEntries({ topic });
      expect(all).toEqual({ entries: [third, second, first], nextPageToken: '' });
      const byAgent = await gw.client.shared.listKnowledgeEntries({
        topic,
        agent: 'Scheduler Agent #1',
      });
      expect(byAgent.entries).toEqual([third, first]);
      const otherTopic = await gw.client.shared.listKnowledgeEntries({ topic: `${topic}.other` });
      expect(otherTopic.entries).toEqual([]);
    });

    it('filters by agent alone, across topics', async () => {
      const sfx = uniqueSuffix();
      const agent = `agent-${sfx}`;
      const mine = [];
      for (const topic of [`t1.${sfx}`, `t2.${sfx}`, `t3.${sfx}`]) {
        mine.push(await addEntry({ topic, agent, content: topic }));
        await addEntry({ topic, agent: `${agent}-other`, content: 'not mine' });
      }
      const { items } = await listAllEntries({ agent, pageSize: 2 });
      expect(items).toEqual([...mine].sort(newestFirst));
      expect(items.map((e) => e.topic).sort()).toEqual([`t1.${sfx}`, `t2.${sfx}`, `t3.${sfx}`]);
    });

    it('pages without gaps or repeats over entries sharing created_at', async () => {
      const topic = `burst.${uniqueSuffix()}`;
      const made = await Promise.all(
        Array.from({ length: 25 }, (_, i) =>
          addEntry({ topic, agent: i % 2 ? 'odd' : 'even', content: `n${i}` }),
        ),
      );
      const expected = [...made].sort(newestFirst);
      const one = await gw.client.shared.listKnowledgeEntries({ topic, pageSize: 1000 });
      expect(one.entries).toEqual(expected);
      expect(one.nextPageToken).toBe('');

      const paged = await listAllEntries({ topic, pageSize: 4 });
      expect(paged.pageSizes).toEqual([4, 4, 4, 4, 4, 4, 1]);
      expect(paged.items).toEqual(expected);

      const odd = await listAllEntries({ topic, agent: 'odd', pageSize: 5 });
      expect(odd.pageSizes).toEqual([5, 5, 2]);
      expect(odd.items).toEqual(expected.filter((e) => e.agent === 'odd'));

      const truth = await withPg(topology.catalogUrl, async (db) =>
        (
          await db.query<{ id: string }>(
            'SELECT id FROM shared.knowledge_entries WHERE topic = $1 ORDER BY created_at DESC, id DESC',
            [topic],
          )
        ).rows.map((r) => r.id),
      );
      expect(paged.items.map((e) => e.id)).toEqual(truth);

      const token = (await gw.client.shared.listKnowledgeEntries({ topic, pageSize: 4 }))
        .nextPageToken;
      const err = await errorOf(
        gw.client.shared.listKnowledgeEntries({
          topic,
          agent: 'odd',
          pageSize: 4,
          pageToken: token,
        }),
      );
      expect(err.code).toBe(Status.INVALID_ARGUMENT);
      expect(err.details).toContain('page_token');
    });
  });

  describe('storage', () => {
    it('keeps shared data in schema `shared` of the catalog database, in no client schema', async () => {
      const sfx = uniqueSuffix();
      // A tenant exists, so a client schema exists somewhere: shared data must not go there.
      const clientId = freshClientId('shared');
      const { tenant } = await gw.client.tenants.createTenant({ clientId });
      const industry = `where${sfx}`;
      await putBenchmark({ industry, metric: 'm', value: 42 });
      const entry = await addEntry({ topic: `where.${sfx}`, agent: 'a', content: 'c' });

      await withPg(topology.catalogUrl, async (db) => {
        const tables = await db.query(
          `SELECT table_schema, table_name FROM information_schema.tables
           WHERE table_name IN ('benchmarks', 'knowledge_entries') ORDER BY table_name`,
        );
        expect(tables.rows).toEqual([
          { table_schema: 'shared', table_name: 'benchmarks' },
          { table_schema: 'shared', table_name: 'knowledge_entries' },
        ]);
        const bench = await db.query('SELECT value FROM shared.benchmarks WHERE industry = $1', [
          industry,
        ]);
        expect(bench.rows).toEqual([{ value: 42 }]);
        const know = await db.query(
          'SELECT topic, content FROM shared.knowledge_entries WHERE id = $1',
          [entry.id],
        );
        expect(know.rows).toEqual([{ topic: `where.${sfx}`, content: 'c' }]);
        const clientSchemas = await db.query(
          `SELECT nspname FROM pg_namespace WHERE nspname LIKE 'client\\_%'`,
        );
        expect(clientSchemas.rows).toEqual([]);
      });

      for (const shard of topology.shards) {
        await withPg(shard.url, async (db) => {
          const found = await db.query(
            `SELECT table_schema FROM information_schema.tables WHERE table_name IN ('benchmarks', 'knowledge_entries')
             UNION ALL SELECT nspname FROM pg_namespace WHERE nspname = 'shared'`,
          );
          expect(found.rows).toEqual([]);
        });
      }
      // The client's own schema holds only client tables.
      const shardUrl = topology.shards.find((s) => s.name === tenant!.shard)!.url;
      const clientTables = await withPg(shardUrl, async (db) =>
        (
          await db.query<{ table_name: string }>(
            'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name',
            [tenant!.schema],
          )
        ).rows.map((r) => r.table_name),
      );
      expect(clientTables).toEqual([
        'appointments',
        'handoffs',
        'request_ids',
        'schema_migrations',
        'state',
      ]);
    });
  });
});
