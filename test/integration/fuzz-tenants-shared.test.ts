import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePageToken } from '../../src/api/page-token.js';
import type {
  AddKnowledgeEntryRequest,
  Benchmark,
  GetBenchmarkRequest,
  KnowledgeEntry,
  ListBenchmarksRequest,
  ListKnowledgeEntriesRequest,
  PutBenchmarkRequest,
} from '../../src/gen/shardgate/v1/shared.js';
import {
  TenantStatus,
  type ListTenantsRequest,
  type Tenant,
} from '../../src/gen/shardgate/v1/tenant.js';
import {
  dateArb,
  doubleArb,
  hostileClientId,
  hostileString,
  int32Arb,
  NEAR_MISS_CLIENT_IDS,
  pageTokenArb,
  printableString,
  repeated,
  requestArb,
  shardNameArb,
  validClientId,
  type PageTokenCase,
} from '../support/arbitraries.js';
import {
  isAgent,
  isClientId,
  isKey,
  isLongText,
  isShardName,
  isText,
  isTimestamp,
  isUuid,
} from '../support/fuzz-contract.js';
import {
  createFuzzWorld,
  fuzz,
  invalid,
  notFound,
  OK,
  onTheWire,
  type Expected,
  type FuzzWorld,
} from '../support/fuzz-harness.js';

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** A keyset string a listing could have issued: no control characters (all ids and keys). */
const isCursorText = (v: unknown): boolean => typeof v === 'string' && !CONTROL.test(v);

function tokenProblem(
  t: PageTokenCase,
  sameQuery: (issuedFor: string) => boolean,
  cursorOk: (c: unknown[]) => boolean,
): boolean {
  switch (t.origin) {
    case 'none':
      return false;
    case 'forged':
      return true;
    case 'issued':
      return !sameQuery(t.issuedFor!);
    case 'cursor':
      return !cursorOk(t.cursor!);
  }
}
const timeAndId = ([at, id]: unknown[]): boolean =>
  isTimestamp(new Date(typeof at === 'number' ? at : Number.NaN)) &&
  typeof id === 'string' &&
  isUuid(id);

// Generous: a property's runs take a few seconds, more on a busy machine.
describe('fuzzing TenantService and SharedService', { timeout: 90_000 }, () => {
  let world: FuzzWorld;
  /** What the directory holds, kept up to date from successful calls. */
  const tenants = new Map<string, TenantStatus>();
  /** Tenants this file churns and reactivates (never the canary). */
  const lifecycle: string[] = [];
  const issued: Record<string, string> = {};

  beforeAll(async () => {
    world = await createFuzzWorld();
    tenants.set(world.fuzz.clientId, TenantStatus.TENANT_STATUS_ACTIVE);
    tenants.set(world.canary.clientId, TenantStatus.TENANT_STATUS_ACTIVE);
    for (let i = 0; i < 3; i++) {
      const { tenant } = await world.gw.client.tenants.createTenant({
        clientId: `life-${i}-${world.fuzz.clientId}`,
      });
      lifecycle.push(tenant!.clientId);
      tenants.set(tenant!.clientId, tenant!.status);
    }
    issued['tenants, no filters'] = (
      await world.gw.client.tenants.listTenants({ pageSize: 1 })
    ).nextPageToken;
    for (const industry of ['fuzz-a', 'fuzz-b']) {
      await world.gw.client.shared.putBenchmark({
        benchmark: { industry, metric: 'm', value: 1, unit: '', source: '' },
      });
      await world.gw.client.shared.addKnowledgeEntry({
        entry: { topic: 'fuzz', agent: 'seed', content: industry },
        requestId: '',
      });
    }
    issued['benchmarks, no filters'] = (
      await world.gw.client.shared.listBenchmarks({ pageSize: 1 })
    ).nextPageToken;
    issued['knowledge, no filters'] = (
      await world.gw.client.shared.listKnowledgeEntries({ pageSize: 1 })
    ).nextPageToken;
    issued['appointments of the fuzz tenant'] = world.fuzz.tokens.appointments;
  });
  afterAll(async () => {
    await world?.close();
  });

  const tenantId = (): fc.Arbitrary<string> =>
    fc.oneof(
      { arbitrary: fc.constantFrom(world.fuzz.clientId, ...lifecycle), weight: 3 },
      { arbitrary: validClientId, weight: 1 },
      { arbitrary: hostileClientId, weight: 2 },
    );
  const learn = (res: unknown): void => {
    const t = (res as { tenant?: Tenant }).tenant!;
    tenants.set(t.clientId, t.status);
  };

  it('CreateTenant: hostile client ids create nothing; valid ones create exactly one tenant', async () => {
    await fuzz(world, {
      name: 'CreateTenant',
      arb: fc
        .oneof(
          { arbitrary: tenantId(), weight: 3 },
          { arbitrary: fc.constantFrom(...NEAR_MISS_CLIENT_IDS, repeated(56)), weight: 2 },
        )
        .map((clientId) => ({ clientId })),
      expected: (r) => (isClientId(onTheWire(r.clientId)) ? OK : invalid(['client_id'])),
      call: (r) => world.gw.client.tenants.createTenant(r),
      writes: true,
      onOk: (r, res) => {
        const { tenant, created } = res as { tenant?: Tenant; created: boolean };
        expect({ clientId: tenant?.clientId, created }).toEqual({
          clientId: r.clientId,
          created: !tenants.has(r.clientId),
        });
        learn(res);
      },
      numRuns: 40,
    });
  });

  it('GetTenant, ChurnTenant and ReactivateTenant: hostile ids, every lifecycle state', async () => {
    const { ACTIVE, CHURNED } = {
      ACTIVE: TenantStatus.TENANT_STATUS_ACTIVE,
      CHURNED: TenantStatus.TENANT_STATUS_CHURNED,
    };
    await fuzz(world, {
      name: 'GetTenant/ChurnTenant/ReactivateTenant',
      arb: fc.record({
        rpc: fc.constantFrom('get', 'churn', 'reactivate'),
        clientId: tenantId().filter((id) => id !== world.fuzz.clientId),
      }),
      expected: (r) => {
        if (!isClientId(onTheWire(r.clientId))) return invalid(['client_id']);
        const status = tenants.get(r.clientId);
        if (status === undefined) return notFound;
        // Churning a churned tenant and reactivating an active one are no-ops.
        return OK;
      },
      call: (r) =>
        r.rpc === 'get'
          ? world.gw.client.tenants.getTenant(r)
          : r.rpc === 'churn'
            ? world.gw.client.tenants.churnTenant(r)
            : world.gw.client.tenants.reactivateTenant(r),
      writes: true,
      onOk: (r, res) => {
        const before = tenants.get(r.clientId);
        const after = (res as { tenant?: Tenant }).tenant?.status;
        expect(after).toBe(r.rpc === 'get' ? before : r.rpc === 'churn' ? CHURNED : ACTIVE);
        learn(res);
      },
      numRuns: 80,
    });
  });

  it('ListTenants: statuses, shard names, page sizes and page tokens', async () => {
    type Filters = Omit<ListTenantsRequest, 'pageToken'>;
    const statusName = (s: TenantStatus): string | undefined =>
      ({ 1: 'provisioning', 2: 'active', 3: 'churned' })[s as 1 | 2 | 3];
    const filters = requestArb<Filters>(
      {
        pageSize: fc.constantFrom(0, 1, 1000),
        status: fc.constantFrom(0, 1, 2, 3),
        shard: fc.constantFrom('', ...world.topology.shards.map((s) => s.name)),
      },
      { pageSize: int32Arb, status: int32Arb, shard: shardNameArb() },
    );
    await fuzz(world, {
      name: 'ListTenants',
      arb: filters.chain((r) =>
        pageTokenArb(issued, (cursor) =>
          encodePageToken(
            [statusName(r.status), r.shard === '' ? undefined : onTheWire(r.shard)],
            cursor,
          ),
        ).map((token) => ({ ...r, token })),
      ),
      expected: (r) => {
        const shard = onTheWire(r.shard);
        const bad: string[] = [];
        if (r.pageSize < 0) bad.push('page_size');
        if (r.status !== 0 && !statusName(r.status)) bad.push('status');
        if (shard !== '' && !isShardName(shard)) bad.push('shard');
        const sameQuery = (q: string): boolean =>
          q === 'tenants, no filters' && r.status === 0 && shard === '';
        const cursorOk = ([after]: unknown[]): boolean => isCursorText(after);
        if (bad.length === 0 && tokenProblem(r.token, sameQuery, cursorOk)) bad.push('page_token');
        return bad.length > 0 ? invalid(bad) : OK;
      },
      call: (r) => world.gw.client.tenants.listTenants({ ...r, pageToken: r.token.token }),
      numRuns: 100,
    });
  });

  const industry = fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,15}$/);
  const metric = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,15}$/);
  const benchmarkValid = {
    industry: fc.oneof(industry, fc.constantFrom('fuzz-a', 'fuzz-b', `i${repeated(63)}`)),
    metric: fc.oneof(metric, fc.constantFrom('m', `m${repeated(127, '.')}`)),
    value: fc.double({ noNaN: true, noDefaultInfinity: true }),
    unit: printableString(0, 32),
    source: printableString(0, 500),
  };
  const benchmarkHostile = {
    industry: fc.oneof(hostileString([64]), fc.constantFrom('a.b', 'A', '-a', '_a')),
    metric: fc.oneof(hostileString([128]), fc.constantFrom('A', '.a', 'a b')),
    value: doubleArb,
    unit: hostileString([32]),
    source: hostileString([500]),
    updatedAt: dateArb, // output-only: ignored
  };
  const benchmarkProblems = (b: Benchmark): string[] => {
    const w = onTheWire(b);
    return [
      ...(Number.isFinite(w.value) ? [] : ['benchmark.value']),
      ...(isKey(w.industry, 64, false) ? [] : ['benchmark.industry']),
      ...(isKey(w.metric, 128) ? [] : ['benchmark.metric']),
      ...(isText(w.unit, 0, 32) ? [] : ['benchmark.unit']),
      ...(isText(w.source, 0, 500) ? [] : ['benchmark.source']),
    ];
  };

  it('PutBenchmark: hostile keys, texts and non-finite values', async () => {
    await fuzz(world, {
      name: 'PutBenchmark',
      arb: fc
        .option(requestArb<Omit<Benchmark, 'updatedAt'>>(benchmarkValid, benchmarkHostile), {
          nil: undefined,
          freq: 10,
        })
        .map((benchmark): PutBenchmarkRequest => ({ benchmark })),
      expected: (r) => {
        const bad = r.benchmark ? benchmarkProblems(r.benchmark) : ['benchmark'];
        return bad.length > 0 ? invalid(bad) : OK;
      },
      call: (r) => world.gw.client.shared.putBenchmark(r),
      writes: true,
      onOk: (r, res) => {
        const w = onTheWire(r.benchmark!);
        expect((res as { benchmark?: Benchmark }).benchmark).toMatchObject({
          industry: w.industry,
          metric: w.metric,
          // -0 is the default of a proto3 double, so it is not sent: it arrives as 0.
          value: w.value + 0,
          unit: w.unit,
          source: w.source,
        });
      },
      numRuns: 100,
    });
  });

  it('GetBenchmark: hostile keys', async () => {
    const known = new Set(['fuzz-a/m', 'fuzz-b/m']);
    await fuzz(world, {
      name: 'GetBenchmark',
      arb: requestArb<GetBenchmarkRequest>(
        { industry: benchmarkValid.industry, metric: benchmarkValid.metric },
        { industry: benchmarkHostile.industry, metric: benchmarkHostile.metric },
      ),
      expected: async (r) => {
        const w = onTheWire(r);
        const bad = [
          ...(isKey(w.industry, 64, false) ? [] : ['industry']),
          ...(isKey(w.metric, 128) ? [] : ['metric']),
        ];
        if (bad.length > 0) return invalid(bad);
        const found =
          known.has(`${w.industry}/${w.metric}`) ||
          (
            await world.catalog.query(
              'SELECT 1 FROM shared.benchmarks WHERE industry = $1 AND metric = $2',
              [w.industry, w.metric],
            )
          ).rowCount! > 0;
        return found ? OK : notFound;
      },
      call: (r) => world.gw.client.shared.getBenchmark(r),
      numRuns: 60,
    });
  });

  it('ListBenchmarks: hostile filters and page tokens', async () => {
    type Filters = Omit<ListBenchmarksRequest, 'pageToken'>;
    const filters = requestArb<Filters>(
      {
        pageSize: fc.constantFrom(0, 1, 1000),
        industry: fc.oneof(fc.constant(''), benchmarkValid.industry),
        metric: fc.oneof(fc.constant(''), benchmarkValid.metric),
      },
      { pageSize: int32Arb, industry: benchmarkHostile.industry, metric: benchmarkHostile.metric },
    );
    await fuzz(world, {
      name: 'ListBenchmarks',
      arb: filters.chain((r) => {
        const w = onTheWire(r);
        const f = ['benchmarks', w.industry || undefined, w.metric || undefined];
        return pageTokenArb(issued, (cursor) => encodePageToken(f, cursor)).map((token) => ({
          ...r,
          token,
        }));
      }),
      expected: (r) => {
        const w = onTheWire(r);
        const bad: string[] = [];
        if (r.pageSize < 0) bad.push('page_size');
        if (w.industry !== '' && !isKey(w.industry, 64, false)) bad.push('industry');
        if (w.metric !== '' && !isKey(w.metric, 128)) bad.push('metric');
        const sameQuery = (q: string): boolean =>
          q === 'benchmarks, no filters' && w.industry === '' && w.metric === '';
        const cursorOk = ([a, b]: unknown[]): boolean => isCursorText(a) && isCursorText(b);
        if (bad.length === 0 && tokenProblem(r.token, sameQuery, cursorOk)) bad.push('page_token');
        return bad.length > 0 ? invalid(bad) : OK;
      },
      call: (r) => world.gw.client.shared.listBenchmarks({ ...r, pageToken: r.token.token }),
      numRuns: 100,
    });
  });

  const topic = fc.oneof(metric, fc.constant('fuzz'));
  const agent = fc.oneof(fc.constant('seed'), printableString(1, 128));

  it('AddKnowledgeEntry: hostile topics, agents, contents and request ids', async () => {
    const entryValid = {
      id: fc.constant(''),
      topic,
      agent,
      content: fc.oneof(
        printableString(1, 200),
        fc.constantFrom('line one\nline two\ttabbed\r\n', repeated(32 * 1024, 'é')),
      ),
    };
    const entryHostile = {
      topic: hostileString([128]),
      agent: hostileString([128]),
      content: fc.oneof(
        hostileString(),
        fc.constantFrom(repeated(64 * 1024 + 1), repeated(32 * 1024 + 1, 'é'), 'a\u0000b'),
      ),
      // Output-only: ignored whatever they hold.
      id: hostileString([36]),
      createdAt: dateArb,
    };
    await fuzz(world, {
      name: 'AddKnowledgeEntry',
      arb: requestArb<AddKnowledgeEntryRequest>(
        {
          entry: fc.record(entryValid) as fc.Arbitrary<KnowledgeEntry>,
          requestId: fc.oneof(fc.constant(''), fc.uuid()),
        },
        {
          entry: fc.option(requestArb<KnowledgeEntry>(entryValid, entryHostile), {
            nil: undefined,
            freq: 8,
          }),
          requestId: hostileString([36]),
        },
      ),
      expected: (r) => {
        const e = r.entry && onTheWire(r.entry);
        const bad = e
          ? [
              ...(isKey(e.topic, 128) ? [] : ['entry.topic']),
              ...(isAgent(e.agent) ? [] : ['entry.agent']),
              ...(isLongText(e.content, 64 * 1024) ? [] : ['entry.content']),
            ]
          : ['entry'];
        if (r.requestId !== '' && !isUuid(r.requestId)) bad.push('request_id');
        return bad.length > 0 ? invalid(bad) : OK;
      },
      call: (r) => world.gw.client.shared.addKnowledgeEntry(r),
      writes: true,
      onOk: (r, res) =>
        expect((res as { entry?: KnowledgeEntry }).entry).toMatchObject({
          topic: onTheWire(r.entry!.topic),
          agent: onTheWire(r.entry!.agent),
          content: onTheWire(r.entry!.content),
        }),
      numRuns: 100,
    });
  });

  it('ListKnowledgeEntries: hostile filters and page tokens', async () => {
    type Filters = Omit<ListKnowledgeEntriesRequest, 'pageToken'>;
    const filters = requestArb<Filters>(
      {
        pageSize: fc.constantFrom(0, 1, 1000),
        topic: fc.oneof(fc.constant(''), topic),
        agent: fc.oneof(fc.constant(''), agent),
      },
      { pageSize: int32Arb, topic: hostileString([128]), agent: hostileString([128]) },
    );
    await fuzz(world, {
      name: 'ListKnowledgeEntries',
      arb: filters.chain((r) => {
        const w = onTheWire(r);
        const f = ['knowledge', w.topic || undefined, w.agent || undefined];
        return pageTokenArb(issued, (cursor) => encodePageToken(f, cursor)).map((token) => ({
          ...r,
          token,
        }));
      }),
      expected: (r): Expected => {
        const w = onTheWire(r);
        const bad: string[] = [];
        if (r.pageSize < 0) bad.push('page_size');
        if (w.topic !== '' && !isKey(w.topic, 128)) bad.push('topic');
        if (w.agent !== '' && !isAgent(w.agent)) bad.push('agent');
        const sameQuery = (q: string): boolean =>
          q === 'knowledge, no filters' && w.topic === '' && w.agent === '';
        if (bad.length === 0 && tokenProblem(r.token, sameQuery, timeAndId)) bad.push('page_token');
        return bad.length > 0 ? invalid(bad) : OK;
      },
      call: (r) => world.gw.client.shared.listKnowledgeEntries({ ...r, pageToken: r.token.token }),
      numRuns: 100,
    });
  });

  // Found by fuzzing: entries of up to 64 KiB are accepted one by one, but a page of 1000 of them
  // exceeded the 4 MiB message limit, and the listing failed RESOURCE_EXHAUSTED.
  it('ListKnowledgeEntries: pages of big entries stay under the message limit', async () => {
    const topic = `big.${Date.now()}`;
    const content = 'x'.repeat(64 * 1024);
    for (let i = 0; i < 70; i++) {
      await world.gw.client.shared.addKnowledgeEntry({
        entry: { id: '', topic, agent: `a${i}`, content },
        requestId: '',
      });
    }
    const agents = new Set<string>();
    let pageToken = '';
    do {
      const page = await world.gw.client.shared.listKnowledgeEntries({
        topic,
        agent: '',
        pageSize: 1000,
        pageToken,
      });
      expect(page.entries.length).toBeGreaterThan(0);
      for (const e of page.entries) agents.add(e.agent);
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    expect(agents.size).toBe(70);
  });
});
