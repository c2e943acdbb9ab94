import fc from 'fast-check';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePageToken } from '../../src/api/page-token.js';
import {
  AppendHandoffRequest,
  BatchAppendHandoffsRequest,
  type GetLatestHandoffRequest,
  type Handoff,
  type ListHandoffsRequest,
  type WatchHandoffsRequest,
} from '../../src/gen/shardgate/v1/handoff.js';
import {
  PatchStateRequest,
  PutStateRequest,
  type GetStateRequest,
  type State,
} from '../../src/gen/shardgate/v1/state.js';
import {
  dateArb,
  hostileClientId,
  hostileString,
  int32Arb,
  int64Arb,
  jsonDocumentArb,
  pageTokenArb,
  printableString,
  requestArb,
  validJsonDocumentArb,
  type PageTokenCase,
} from '../support/arbitraries.js';
import {
  asStored,
  isAgent,
  isClientId,
  isTimestamp,
  isUuid,
  jsonProblem,
  mergePatch,
} from '../support/fuzz-contract.js';
import {
  createFuzzWorld,
  fuzz,
  invalid,
  notFound,
  OK,
  onTheWire,
  tenantIdArb,
  tenantOutcome,
  type Expected,
  type FuzzWorld,
} from '../support/fuzz-harness.js';

const validAgent = fc.oneof(
  { arbitrary: fc.constantFrom('intake', 'dispatch'), weight: 2 },
  { arbitrary: printableString(1, 128), weight: 1 },
);
const hostileAgent = hostileString([128]);
const validDate = dateArb.filter(isTimestamp);

/**
 * ListHandoffs' order per its contract (AIP-132): `created_at`, then `asc` (the default) or `desc`
 * in any case, spaces insignificant; empty is newest first; anything else undefined (invalid).
 */
function orderOf(orderBy: string): 'newest-first' | 'oldest-first' | undefined {
  const words = orderBy.split(/\s+/).filter((w) => w !== '');
  if (words.length === 0) return 'newest-first';
  if (words[0] !== 'created_at' || words.length > 2) return undefined;
  const keyword = (words[1] ?? 'asc').toLowerCase();
  return keyword === 'asc' ? 'oldest-first' : keyword === 'desc' ? 'newest-first' : undefined;
}
const validOrderBy = fc.constantFrom(
  '',
  'created_at',
  'created_at asc',
  'created_at desc',
  '  created_at \t DESC  ',
  'created_at Asc',
);
const hostileOrderBy = fc.oneof(
  fc.constantFrom(
    'create_time',
    'created_at sideways',
    'created_at desc, id desc',
    'CREATED_AT',
    'summary',
    'id',
    'created_at asc desc',
    'created_at\u0000',
    '-created_at',
  ),
  hostileString([64]),
);
/** Documents for a Struct field: valid ones, and anything at all (absent included). */
const validDocument = validJsonDocumentArb;
const hostileDocument = fc.option(jsonDocumentArb, { nil: undefined, freq: 10 });
const validRequestId = fc.oneof(fc.constant(''), fc.uuid());

/** Handoffs: entirely valid ones, and ones valid but for a few fields. */
const handoffValid = {
  id: fc.constant(''),
  fromAgent: validAgent,
  toAgent: validAgent,
  version: fc.nat(1000),
  summary: validDocument,
};
const handoffArbs = {
  valid: fc.record(handoffValid) as fc.Arbitrary<Handoff>,
  mixed: requestArb<Handoff>(handoffValid, {
    fromAgent: hostileAgent,
    toAgent: hostileAgent,
    version: int32Arb,
    summary: hostileDocument,
    // Output-only: ignored whatever they hold.
    id: hostileString([36]),
    createdAt: dateArb,
  }),
};

function handoffProblems(h: Handoff, field: string): string[] {
  const w = onTheWire(h);
  return [
    ...(w.version < 0 ? [`${field}.version`] : []),
    ...(isAgent(w.fromAgent) ? [] : [`${field}.from_agent`]),
    ...(isAgent(w.toAgent) ? [] : [`${field}.to_agent`]),
    ...(w.summary === undefined || jsonProblem(w.summary) ? [`${field}.summary`] : []),
  ];
}

function requestIdProblems(requestId: string): string[] {
  return requestId === '' || isUuid(requestId) ? [] : ['request_id'];
}

function expectHandoffStored(sent: Handoff, stored: Handoff | undefined): void {
  const w = onTheWire(sent);
  expect(stored).toMatchObject({
    fromAgent: w.fromAgent,
    toAgent: w.toAgent,
    version: w.version,
    summary: asStored(w.summary),
  });
}

// Generous: a property's runs take a few seconds, more on a busy machine.
describe('fuzzing HandoffService and StateService', { timeout: 90_000 }, () => {
  let world: FuzzWorld;
  let shardDb: pg.Client;
  let schema: string;

  beforeAll(async () => {
    world = await createFuzzWorld();
    shardDb = world.shards.get(world.fuzz.shard)!;
    schema = pg.escapeIdentifier(world.fuzz.schema);
  });
  afterAll(async () => {
    await world?.close();
  });

  const clientId = (): fc.Arbitrary<string> => tenantIdArb(world);
  const clientProblems = (id: string): string[] => (isClientId(id) ? [] : ['client_id']);
  const otherwise = (r: { clientId: string }, bad: string[], then: () => Expected): Expected =>
    bad.length > 0 ? invalid(bad) : (tenantOutcome(world, r.clientId) ?? then());

  it('AppendHandoff: agents, versions, hostile and huge JSON summaries', async () => {
    await fuzz(world, {
      name: 'AppendHandoff',
      arb: requestArb<AppendHandoffRequest>(
        { clientId: clientId(), handoff: handoffArbs.valid, requestId: validRequestId },
        {
          clientId: hostileClientId,
          handoff: fc.option(handoffArbs.mixed, { nil: undefined, freq: 8 }),
          requestId: hostileString([36]),
        },
      ),
      encode: (r) => AppendHandoffRequest.encode(r).finish(),
      expected: (r) => {
        const bad = r.handoff ? handoffProblems(r.handoff, 'handoff') : ['handoff'];
        bad.push(...clientProblems(r.clientId), ...requestIdProblems(r.requestId));
        return otherwise(r, bad, () => OK);
      },
      call: (r) => world.gw.client.handoffs.appendHandoff(r),
      writes: true,
      onOk: (r, res) => expectHandoffStored(r.handoff!, (res as { handoff?: Handoff }).handoff),
      numRuns: 100,
    });
  });

  it('BatchAppendHandoffs: empty, oversized and hostile batches are refused whole', async () => {
    const items = (h: fc.Arbitrary<Handoff>): fc.Arbitrary<Handoff[]> =>
      fc.array(h, { minLength: 1, maxLength: 3 });
    const plain: Handoff = { id: '', fromAgent: 'a', toAgent: 'b', version: 0, summary: {} };
    await fuzz(world, {
      name: 'BatchAppendHandoffs',
      arb: requestArb<BatchAppendHandoffsRequest>(
        { clientId: clientId(), handoffs: items(handoffArbs.valid), requestId: validRequestId },
        {
          clientId: hostileClientId,
          handoffs: fc.oneof(
            items(fc.oneof(handoffArbs.valid, handoffArbs.mixed)),
            fc.constant<Handoff[]>([]),
            fc.constantFrom(1000, 1001).map((n) => Array<Handoff>(n).fill(plain)),
          ),
          requestId: hostileString([36]),
        },
      ),
      encode: (r) => BatchAppendHandoffsRequest.encode(r).finish(),
      expected: (r) => {
        const bad =
          r.handoffs.length === 0 || r.handoffs.length > 1000
            ? ['handoffs']
            : r.handoffs.flatMap((h, i) => handoffProblems(h, `handoffs[${i}]`));
        bad.push(...clientProblems(r.clientId), ...requestIdProblems(r.requestId));
        return otherwise(r, bad, () => OK);
      },
      call: (r) => world.gw.client.handoffs.batchAppendHandoffs(r),
      writes: true,
      onOk: (r, res) => {
        const stored = (res as { handoffs: Handoff[] }).handoffs;
        expect(stored).toHaveLength(r.handoffs.length);
        r.handoffs.forEach((h, i) => expectHandoffStored(h, stored[i]));
      },
      numRuns: 60,
    });
  });

  it('ListHandoffs: agents, time ranges, page sizes and page tokens', async () => {
    type Filters = Omit<ListHandoffsRequest, 'pageToken'>;
    // The listing's filters as page-token.ts fingerprints them: public, so a forger knows them.
    // Oldest first joins them; newest first (the default) leaves them as they were before it.
    const filtersOf = (r: Filters): unknown[] => [
      r.clientId,
      r.fromAgent === '' ? undefined : r.fromAgent,
      r.toAgent === '' ? undefined : r.toAgent,
      r.createdAfter?.getTime(),
      r.createdBefore?.getTime(),
      ...(orderOf(r.orderBy) === 'oldest-first' ? ['oldest-first'] : []),
    ];
    const oldestFirst = await world.gw.client.handoffs.listHandoffs({
      clientId: world.fuzz.clientId,
      pageSize: 1,
      orderBy: 'created_at',
    });
    const issued = {
      'fuzz, no filters': world.fuzz.tokens.handoffs,
      'fuzz, no filters, oldest first': oldestFirst.nextPageToken,
      'canary, no filters': world.canary.tokens.handoffs,
      'fuzz appointments': world.fuzz.tokens.appointments,
    };
    const tokenProblem = (t: PageTokenCase, r: Filters): boolean => {
      switch (t.origin) {
        case 'none':
          return false;
        case 'forged':
          return true;
        case 'issued':
          return !(
            t.issuedFor ===
              (orderOf(r.orderBy) === 'oldest-first'
                ? 'fuzz, no filters, oldest first'
                : 'fuzz, no filters') &&
            r.clientId === world.fuzz.clientId &&
            r.fromAgent === '' &&
            r.toAgent === '' &&
            !r.createdAfter &&
            !r.createdBefore
          );
        case 'cursor': {
          const [at, id] = t.cursor!;
          const date = new Date(typeof at === 'number' ? at : Number.NaN);
          return !(isTimestamp(date) && typeof id === 'string' && isUuid(id));
        }
      }
    };
    const optionalAgent = fc.oneof(fc.constant(''), validAgent);
    const filters = requestArb<Filters>(
      {
        clientId: clientId(),
        pageSize: fc.constantFrom(0, 1, 2, 1000),
        fromAgent: optionalAgent,
        toAgent: optionalAgent,
        createdAfter: fc.option(validDate, { nil: undefined }),
        createdBefore: fc.option(validDate, { nil: undefined }),
        orderBy: validOrderBy,
      },
      {
        clientId: hostileClientId,
        pageSize: int32Arb,
        fromAgent: hostileAgent,
        toAgent: hostileAgent,
        createdAfter: dateArb,
        createdBefore: dateArb,
        orderBy: hostileOrderBy,
      },
    );
    await fuzz(world, {
      name: 'ListHandoffs',
      arb: filters.chain((r) =>
        pageTokenArb(issued, (cursor) => encodePageToken(filtersOf(onTheWire(r)), cursor)).map(
          (token) => ({
            ...r,
            token,
          }),
        ),
      ),
      expected: (r) => {
        const w = onTheWire(r);
        const bad: string[] = [];
        if (r.pageSize < 0) bad.push('page_size');
        if (w.fromAgent !== '' && !isAgent(w.fromAgent)) bad.push('from_agent');
        if (w.toAgent !== '' && !isAgent(w.toAgent)) bad.push('to_agent');
        if (r.createdAfter && !isTimestamp(r.createdAfter)) bad.push('created_after');
        if (r.createdBefore && !isTimestamp(r.createdBefore)) bad.push('created_before');
        if (!orderOf(w.orderBy)) bad.push('order_by');
        if (bad.length === 0 && tokenProblem(r.token, w)) bad.push('page_token');
        return otherwise(r, [...bad, ...clientProblems(r.clientId)], () => OK);
      },
      call: (r) => world.gw.client.handoffs.listHandoffs({ ...r, pageToken: r.token.token }),
      numRuns: 100,
    });
  });

  it('GetLatestHandoff: hostile agent names', async () => {
    await fuzz(world, {
      name: 'GetLatestHandoff',
      arb: requestArb<GetLatestHandoffRequest>(
        { clientId: clientId(), toAgent: validAgent },
        { clientId: hostileClientId, toAgent: hostileAgent },
      ),
      expected: async (r) => {
        const toAgent = onTheWire(r.toAgent);
        const bad = [...(isAgent(toAgent) ? [] : ['to_agent']), ...clientProblems(r.clientId)];
        const found =
          bad.length === 0 &&
          (await shardDb.query(`SELECT 1 FROM ${schema}.handoffs WHERE to_agent = $1`, [toAgent]))
            .rowCount! > 0;
        return otherwise(r, bad, () => (found ? OK : notFound));
      },
      call: (r) => world.gw.client.handoffs.getLatestHandoff(r),
      numRuns: 80,
    });
  });

  it('WatchHandoffs: hostile ids and agents end the stream at once; valid ones subscribe', async () => {
    /** Opens the watch; resolves once the gateway confirms the subscription, then cancels it. */
    function watch(r: WatchHandoffsRequest): Promise<unknown> {
      const controller = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      return new Promise((resolve, reject) => {
        const stream = world.gw.client.handoffs.watchHandoffs(r, {
          signal: controller.signal,
          onHeader: (header) => {
            if (header.get('shardgate-watch') === 'subscribed') resolve('subscribed');
          },
        });
        (async () => {
          for await (const _ of stream) void _;
        })().then(
          () => reject(new Error('the watch ended without an error or a subscription')),
          (err: unknown) => reject(err),
        );
        // Streams get no default deadline: a watch that neither fails nor subscribes is a hang.
        timer = setTimeout(() => reject(new Error('the watch hung for 10 s')), 10_000);
      }).finally(() => {
        clearTimeout(timer);
        controller.abort();
      });
    }
    await fuzz(world, {
      name: 'WatchHandoffs',
      arb: requestArb<WatchHandoffsRequest>(
        { clientId: clientId(), toAgent: fc.oneof(fc.constant(''), validAgent) },
        { clientId: hostileClientId, toAgent: hostileAgent },
      ),
      expected: (r) => {
        const toAgent = onTheWire(r.toAgent);
        const bad = [
          ...(toAgent === '' || isAgent(toAgent) ? [] : ['to_agent']),
          ...clientProblems(r.clientId),
        ];
        return otherwise(r, bad, () => OK);
      },
      call: watch,
      numRuns: 60,
    });
  });

  /** The fuzz tenant's state, read behind the gateway's back. */
  async function currentState(): Promise<{ document: unknown; version: number }> {
    const res = await shardDb.query<{ document: unknown; version: string }>(
      `SELECT document, version FROM ${schema}.state`,
    );
    return { document: res.rows[0]!.document, version: Number(res.rows[0]!.version) };
  }
  /** expected_version: none or the current one (valid), or any int64 (mostly stale). */
  const CURRENT = -0.5; // a marker `prepare` replaces with the current version before the call
  const expectedVersion = {
    valid: fc.constantFrom(undefined, CURRENT),
    hostile: fc.oneof(int64Arb, fc.constantFrom(2 ** 60, -(2 ** 60))),
  };
  const withCurrentVersion = async <R extends { expectedVersion?: number }>(r: R): Promise<R> =>
    r.expectedVersion === CURRENT ? { ...r, expectedVersion: (await currentState()).version } : r;
  const versionProblems = (v: number | undefined): string[] =>
    v !== undefined && (v < 0 || v > Number.MAX_SAFE_INTEGER) ? ['expected_version'] : [];
  const aborted: Expected = { code: Status.ABORTED };

  it('GetState: hostile client ids', async () => {
    await fuzz(world, {
      name: 'GetState',
      arb: fc.oneof(clientId(), hostileClientId).map((id): GetStateRequest => ({ clientId: id })),
      expected: (r) => otherwise(r, clientProblems(r.clientId), () => OK),
      call: (r) => world.gw.client.state.getState(r),
      onOk: async (_r, res) =>
        expect((res as { state?: State }).state?.document).toEqual((await currentState()).document),
      numRuns: 50,
    });
  });

  it('PutState: hostile documents and expected versions', async () => {
    await fuzz(world, {
      name: 'PutState',
      arb: requestArb<PutStateRequest>(
        {
          clientId: clientId(),
          document: validDocument,
          expectedVersion: expectedVersion.valid,
        },
        {
          clientId: hostileClientId,
          document: hostileDocument,
          expectedVersion: expectedVersion.hostile,
        },
      ),
      prepare: withCurrentVersion,
      encode: (r) => PutStateRequest.encode(r).finish(),
      expected: async (r) => {
        const doc = onTheWire(r.document);
        const bad = [
          ...(doc === undefined || jsonProblem(doc) ? ['document'] : []),
          ...versionProblems(r.expectedVersion),
          ...clientProblems(r.clientId),
        ];
        const { version } = await currentState();
        return otherwise(r, bad, () =>
          r.expectedVersion !== undefined && r.expectedVersion !== version ? aborted : OK,
        );
      },
      call: (r) => world.gw.client.state.putState(r),
      writes: true,
      onOk: (r, res) =>
        expect((res as { state?: State }).state?.document).toEqual(asStored(onTheWire(r.document))),
      numRuns: 100,
    });
  });

  it('PatchState: hostile patches, and patches that would make the document too big', async () => {
    await fuzz(world, {
      name: 'PatchState',
      arb: requestArb<PatchStateRequest>(
        { clientId: clientId(), patch: validDocument, expectedVersion: expectedVersion.valid },
        {
          clientId: hostileClientId,
          patch: hostileDocument,
          expectedVersion: expectedVersion.hostile,
        },
      ),
      prepare: withCurrentVersion,
      encode: (r) => PatchStateRequest.encode(r).finish(),
      expected: async (r) => {
        const patch = onTheWire(r.patch);
        const bad = [
          ...(patch === undefined || jsonProblem(patch) ? ['patch'] : []),
          ...versionProblems(r.expectedVersion),
          ...clientProblems(r.clientId),
        ];
        const current = await currentState();
        return otherwise(r, bad, () => {
          if (r.expectedVersion !== undefined && r.expectedVersion !== current.version)
            return aborted;
          // The merged document must itself be valid; the message names "the patched document".
          return jsonProblem(mergePatch(current.document, asStored(patch)))
            ? invalid(['patch'])
            : OK;
        });
      },
      call: (r) => world.gw.client.state.patchState(r),
      writes: true,
      numRuns: 100,
    });
  });

  // Found by fuzzing: summaries of up to 256 KiB are accepted one by one, but a default page of
  // them exceeded the 4 MiB message limit, and every listing failed RESOURCE_EXHAUSTED.
  it('ListHandoffs: pages of big summaries stay under the message limit', async () => {
    const clientId = world.fuzz.clientId;
    const toAgent = `big-${Date.now()}`;
    const summary = { blob: 'é'.repeat(120 * 1024) }; // 240 KiB of UTF-8
    for (let i = 0; i < 20; i++) {
      await world.gw.client.handoffs.appendHandoff({
        clientId,
        handoff: { id: '', fromAgent: 'a', toAgent, version: i, summary },
        requestId: '',
      });
    }
    const versions: number[] = [];
    let pageToken = '';
    do {
      const page = await world.gw.client.handoffs.listHandoffs({
        clientId,
        toAgent,
        fromAgent: '',
        pageSize: 0,
        pageToken,
      });
      expect(page.handoffs.length).toBeGreaterThan(0);
      versions.push(...page.handoffs.map((h) => h.version));
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    expect(versions.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });
});
