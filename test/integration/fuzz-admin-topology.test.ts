import { createServer } from 'node:net';
import fc from 'fast-check';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePageToken } from '../../src/api/page-token.js';
import { freshClientId } from '../support/harness.js';
import {
  MoveState,
  type AddShardRequest,
  type ListMovesRequest,
  type MoveTenantRequest,
  type RebalanceRequest,
  type SetShardWeightRequest,
} from '../../src/gen/shardgate/v1/admin.js';
import {
  hostileClientId,
  hostileString,
  int32Arb,
  pageTokenArb,
  requestArb,
  shardNameArb,
  SQL_FRAGMENTS,
  uuidArb,
  validClientId,
} from '../support/arbitraries.js';
import {
  hasControlCharacters,
  isClientId,
  isShardName,
  isTimestamp,
  isUuid,
} from '../support/fuzz-contract.js';
import {
  createFuzzWorld,
  failedPrecondition,
  fuzz,
  invalid,
  notFound,
  OK,
  onTheWire,
  type Expected,
  type FuzzWorld,
  type Outcome,
} from '../support/fuzz-harness.js';

const unavailable: Expected = { code: Status.UNAVAILABLE };

/** A loopback port that was free a moment ago (nothing listens there). */
function closedLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

/** Reads a server stream to its end within 10 s (streams get no default deadline). */
async function drain(stream: AsyncIterable<unknown>): Promise<unknown[]> {
  const items: unknown[] = [];
  for await (const item of stream) items.push(item);
  return items;
}

// Generous: a property's runs take a few seconds, more on a busy machine.
describe('fuzzing AdminService: topology, placement and moves', { timeout: 90_000 }, () => {
  let world: FuzzWorld;
  let shardNames: string[];
  /** A loopback port nothing listens on: every DSN the fuzz makes points there. */
  let closedPort: number;
  /** Highest audit event id before the current call. */
  let auditMark = '0';

  beforeAll(async () => {
    world = await createFuzzWorld();
    shardNames = world.topology.shards.map((s) => s.name);
    closedPort = await closedLoopbackPort();
    // Every shard must hold a tenant, so RemoveShard of a real shard is always refused.
    const held = new Set([world.fuzz.shard, world.canary.shard]);
    while (held.size < shardNames.length) {
      const { tenant } = await world.gw.client.tenants.createTenant({
        clientId: freshClientId('hold'),
      });
      held.add(tenant!.shard);
    }
  });
  afterAll(async () => {
    await world?.close();
  });

  const markAudit = async <R>(r: R): Promise<R> => {
    const res = await world.catalog.query<{ id: string }>(
      'SELECT coalesce(max(id), 0)::text AS id FROM shardgate.audit_events',
    );
    auditMark = res.rows[0]!.id;
    return r;
  };
  /** An audited call, accepted or refused, leaves exactly one event with the caller's status. */
  const expectAudited =
    (method: string) =>
    async (_r: unknown, outcome: Outcome): Promise<void> => {
      const res = await world.catalog.query<{ method: string; outcome: string }>(
        'SELECT method, outcome FROM shardgate.audit_events WHERE id > $1::bigint ORDER BY id',
        [auditMark],
      );
      expect(res.rows).toEqual([
        { method: `shardgate.v1.AdminService/${method}`, outcome: Status[outcome.code] },
      ]);
    };

  const shardName = (): fc.Arbitrary<string> =>
    fc.oneof(shardNameArb(), fc.constantFrom(...shardNames));
  const nameProblems = (name: string): string[] => (isShardName(onTheWire(name)) ? [] : ['name']);
  const weightProblems = (w: number, zeroOk: boolean): string[] =>
    (w === 0 && zeroOk) || (w >= 1 && w <= 10_000) ? [] : ['weight'];

  it('GetTopology and Locate: hostile client ids', async () => {
    await fuzz(world, {
      name: 'Locate',
      arb: fc.oneof(
        fc.constantFrom(world.fuzz.clientId, world.canary.clientId),
        validClientId,
        hostileClientId,
      ),
      expected: (clientId) => {
        if (!isClientId(onTheWire(clientId))) return invalid(['client_id']);
        return [world.fuzz.clientId, world.canary.clientId].includes(clientId) ? OK : notFound;
      },
      call: async (clientId) => {
        const { shards } = await world.gw.client.admin.getTopology({});
        expect(shards.map((s) => s.name)).toEqual(shardNames);
        return world.gw.client.admin.locate({ clientId });
      },
      numRuns: 50,
    });
  });

  it('AddShard: hostile names and DSNs (all on a closed loopback port), hostile weights', async () => {
    const at = `127.0.0.1:${closedPort}`;
    const part = fc.oneof(
      fc.stringMatching(/^[a-z]{1,8}$/),
      hostileString().map((s) => encodeURIComponent(onTheWire(s.slice(0, 200)))),
    );
    const validDsn = fc
      .tuple(part, part, part, fc.constantFrom('postgres', 'postgresql'))
      .map(([user, password, db, scheme]) => `${scheme}://${user}:${password}@${at}/${db}`);
    const hostileDsn = fc.oneof(
      hostileString(),
      fc.constantFrom(
        '',
        'postgres://',
        'postgres:///shard',
        `postgres://@/shard`,
        'postgres://[::1',
        `postgres://127.0.0.1:99999/shard`,
        `postgres://%ff@${at}/shard`,
        `postgres://u:%E0%A4%A@${at}/shard`,
        `postgres://u@${at}/sh%00ard`,
        `postgres://127.0.0.1:5\n432/shard`,
        `postgres://u@${at}/shard\u0000`,
        `mysql://${at}/shard`,
        `POSTGRES://${at}/shard`,
        ` postgres://${at}/shard`,
        `postgres:/${at}/shard`,
      ),
      fc
        .constantFrom(...SQL_FRAGMENTS)
        .map((s) => `postgres://u@${at}/${s.replaceAll('/', '').replaceAll('?', '')}`),
    );
    /** The contract for a DSN, and the only DSNs that may be probed: those to the closed port. */
    const dsnOk = (dsn: string): boolean => {
      if (!/^postgres(ql)?:\/\//.test(dsn) || hasControlCharacters(dsn)) return false;
      let url: URL;
      try {
        url = new URL(dsn);
        const parts = [url.username, url.password, url.pathname].map(decodeURIComponent);
        if (parts.some(hasControlCharacters)) return false;
      } catch {
        return false;
      }
      if (url.hostname === '') return false;
      expect(url.host, 'the fuzz must only make DSNs to the closed port').toBe(at);
      return true;
    };
    await fuzz<AddShardRequest>(world, {
      name: 'AddShard',
      arb: requestArb<AddShardRequest>(
        {
          name: fc.oneof(shardName(), fc.constant('zz-new')),
          dsn: validDsn,
          weight: fc.constantFrom(0, 1, 100, 10_000),
        },
        { name: shardNameArb(), dsn: hostileDsn, weight: int32Arb },
      ),
      prepare: markAudit,
      expected: (r) => {
        const bad = [
          ...nameProblems(r.name),
          ...(dsnOk(onTheWire(r.dsn)) ? [] : ['dsn']),
          ...weightProblems(r.weight, true),
        ];
        // A well-formed DSN is probed; nothing answers on the closed port.
        return bad.length > 0 ? invalid(bad) : unavailable;
      },
      call: (r) => world.gw.client.admin.addShard(r),
      after: expectAudited('AddShard'),
      numRuns: 120,
    });
  });

  it('DrainShard, RemoveShard, SetShardWeight: hostile names and weights', async () => {
    type Req = SetShardWeightRequest & { rpc: 'drain' | 'remove' | 'weight' };
    await fuzz(world, {
      name: 'DrainShard/RemoveShard/SetShardWeight',
      arb: fc
        .record({
          rpc: fc.constantFrom('drain', 'remove', 'weight'),
          name: shardName(),
          weight: fc.oneof(fc.constant(100), int32Arb),
        })
        // Draining a real shard would start moving tenants: only weights and refused removals.
        .filter((r: Req) => r.rpc !== 'drain' || !shardNames.includes(r.name))
        .filter(
          (r: Req) =>
            r.rpc !== 'weight' ||
            !shardNames.includes(r.name) ||
            r.weight === 100 ||
            r.weight < 1 ||
            r.weight > 10_000,
        ),
      prepare: markAudit,
      expected: (r: Req) => {
        const bad = [
          ...nameProblems(r.name),
          ...(r.rpc === 'weight' ? weightProblems(r.weight, false) : []),
        ];
        if (bad.length > 0) return invalid(bad);
        if (!shardNames.includes(r.name)) return notFound;
        // Every shard holds a tenant (see beforeAll), so none can be removed.
        return r.rpc === 'remove' ? failedPrecondition : OK;
      },
      call: (r: Req) =>
        r.rpc === 'drain'
          ? world.gw.client.admin.drainShard(r)
          : r.rpc === 'remove'
            ? world.gw.client.admin.removeShard(r)
            : world.gw.client.admin.setShardWeight(r),
      writes: true,
      after: (r: Req, outcome) =>
        expectAudited(
          { drain: 'DrainShard', remove: 'RemoveShard', weight: 'SetShardWeight' }[r.rpc],
        )(r, outcome),
      numRuns: 100,
    });
  });

  it('PlanRebalance and Rebalance: hostile limits plan and move nothing', async () => {
    type Req = RebalanceRequest & { rpc: 'plan' | 'rebalance' };
    await fuzz(world, {
      name: 'PlanRebalance/Rebalance',
      arb: fc.record({
        rpc: fc.constantFrom('plan', 'rebalance'),
        maxConcurrentMoves: fc.oneof(fc.integer({ min: 0, max: 16 }), int32Arb),
        limit: fc.oneof(fc.nat(10), int32Arb),
      }),
      prepare: markAudit,
      expected: (r: Req) => {
        const bad = [
          ...(r.rpc === 'rebalance' && (r.maxConcurrentMoves < 0 || r.maxConcurrentMoves > 16)
            ? ['max_concurrent_moves']
            : []),
          ...(r.limit < 0 ? ['limit'] : []),
        ];
        return bad.length > 0 ? invalid(bad) : OK;
      },
      call: async (r: Req) => {
        if (r.rpc === 'plan') {
          const { moves } = await world.gw.client.admin.planRebalance({ limit: r.limit });
          return moves;
        }
        return drain(world.gw.client.admin.rebalance(r, { signal: AbortSignal.timeout(10_000) }));
      },
      // Every tenant is where the ring puts it: the plan is empty and nothing moves.
      onOk: (_r, moves) => expect(moves).toEqual([]),
      after: async (r: Req, outcome) => {
        if (r.rpc === 'rebalance') await expectAudited('Rebalance')(r, outcome);
      },
      numRuns: 60,
    });
  });

  it('MoveTenant: hostile clients and target shards start no move', async () => {
    await fuzz<MoveTenantRequest>(world, {
      name: 'MoveTenant',
      arb: requestArb<MoveTenantRequest>(
        {
          clientId: fc.oneof(fc.constant(world.fuzz.clientId), validClientId),
          // Never the other real shard: that move would be valid and really run.
          toShard: fc.oneof(fc.constant(world.fuzz.shard), shardNameArb()),
        },
        { clientId: hostileClientId, toShard: shardNameArb() },
      ).filter((r) => !(shardNames.includes(r.toShard) && r.toShard !== world.fuzz.shard)),
      prepare: markAudit,
      expected: (r) => {
        const bad = [
          ...(isClientId(onTheWire(r.clientId)) ? [] : ['client_id']),
          ...(isShardName(onTheWire(r.toShard)) ? [] : ['to_shard']),
        ];
        if (bad.length > 0) return invalid(bad);
        if (r.clientId !== world.fuzz.clientId) return notFound;
        return r.toShard === world.fuzz.shard ? failedPrecondition : notFound;
      },
      call: (r) =>
        drain(world.gw.client.admin.moveTenant(r, { signal: AbortSignal.timeout(10_000) })),
      after: expectAudited('MoveTenant'),
      numRuns: 80,
    });
  });

  it('ListMoves, GetMove, CancelMove: hostile ids, states and page tokens', async () => {
    type Req = Omit<ListMovesRequest, 'pageToken'> & { rpc: 'list' | 'get' | 'cancel'; id: string };
    const filters = requestArb<Req>(
      {
        rpc: fc.constantFrom('list', 'list', 'get', 'cancel'),
        id: fc.uuid(),
        pageSize: fc.constantFrom(0, 1, 1000),
        clientId: fc.oneof(fc.constant(''), fc.constant(world.fuzz.clientId)),
        state: fc.integer({ min: 0, max: 4 }) as fc.Arbitrary<MoveState>,
      },
      {
        id: uuidArb(),
        pageSize: int32Arb,
        clientId: hostileClientId,
        state: int32Arb as fc.Arbitrary<MoveState>,
      },
    );
    const stateName = (s: number): string | undefined =>
      ({ 1: 'running', 2: 'succeeded', 3: 'failed', 4: 'cancelled' })[s as 1 | 2 | 3 | 4];
    await fuzz(world, {
      name: 'ListMoves/GetMove/CancelMove',
      arb: filters.chain((r) =>
        pageTokenArb({ appointments: world.fuzz.tokens.appointments }, (cursor) =>
          encodePageToken(
            [
              'ListMoves',
              r.clientId === '' ? undefined : onTheWire(r.clientId),
              stateName(r.state),
            ],
            cursor,
          ),
        ).map((token) => ({ ...r, token })),
      ),
      prepare: markAudit,
      expected: (r) => {
        if (r.rpc !== 'list') return isUuid(onTheWire(r.id)) ? notFound : invalid(['id']);
        const w = onTheWire(r);
        const bad: string[] = [];
        if (r.pageSize < 0) bad.push('page_size');
        if (w.clientId !== '' && !isClientId(w.clientId)) bad.push('client_id');
        if (r.state !== 0 && !stateName(r.state)) bad.push('state');
        const t = r.token;
        const tokenBad =
          t.origin === 'forged' ||
          t.origin === 'issued' ||
          (t.origin === 'cursor' &&
            !(
              isTimestamp(new Date(typeof t.cursor![0] === 'number' ? t.cursor![0] : Number.NaN)) &&
              typeof t.cursor![1] === 'string' &&
              isUuid(t.cursor![1])
            ));
        if (bad.length === 0 && tokenBad) bad.push('page_token');
        return bad.length > 0 ? invalid(bad) : OK;
      },
      call: (r) =>
        r.rpc === 'list'
          ? world.gw.client.admin.listMoves({ ...r, pageToken: r.token.token })
          : r.rpc === 'get'
            ? world.gw.client.admin.getMove({ id: r.id })
            : world.gw.client.admin.cancelMove({ id: r.id }),
      onOk: (_r, res) => expect((res as { moves: unknown[] }).moves).toEqual([]),
      after: async (r, outcome) => {
        if (r.rpc === 'cancel') await expectAudited('CancelMove')(r, outcome);
      },
      numRuns: 100,
    });
  });
});
