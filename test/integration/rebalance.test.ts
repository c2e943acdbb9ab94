import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import {
  MoveReason,
  MoveState,
  type Move,
  type PlannedMove,
  type RebalanceResponse,
} from '../../src/gen/shardgate/v1/admin.js';
import { freePort } from '../support/global-setup.js';
import {
  createDatabase,
  createTestTopology,
  errorOf,
  freshClientId,
  statusOf,
  startTestGateway,
  uniqueSuffix,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';
import {
  appointmentInput,
  catalogPlacements,
  countRows,
  handoffInput,
  moveTo,
  shardUrl,
  startGatewayWithFailpoints,
  strayState,
} from '../support/move-helpers.js';
import { Failpoints } from '../../src/core/failpoints.js';

/** Runs `fn` on every item with at most `limit` in flight. */
async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Everything about a client schema's structure that a move must carry over unchanged. */
async function schemaShape(url: string, schema: string): Promise<Record<string, unknown[]>> {
  return withPg(url, async (c) => {
    const rows = async (sql: string): Promise<unknown[]> => (await c.query(sql, [schema])).rows;
    return {
      indexes: await rows(
        `SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname`,
      ),
      constraints: await rows(
        `SELECT conrelid::regclass::text AS rel, conname, contype, pg_get_constraintdef(oid) AS def
         FROM pg_constraint WHERE connamespace = $1::regnamespace ORDER BY conname`,
      ),
      triggers: await rows(
        `SELECT tgrelid::regclass::text AS rel, tgname, tgenabled FROM pg_trigger t
         JOIN pg_class r ON r.oid = t.tgrelid WHERE r.relnamespace = $1::regnamespace AND NOT tgisinternal
         ORDER BY tgname`,
      ),
      functions: await rows(
        `SELECT proname FROM pg_proc WHERE pronamespace = $1::regnamespace ORDER BY proname`,
      ),
      sequences: await rows(
        `SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = $1 ORDER BY 1`,
      ),
      columns: await rows(
        `SELECT table_name, column_name, data_type, column_default, is_nullable FROM information_schema.columns
         WHERE table_schema = $1 ORDER BY table_name, ordinal_position`,
      ),
      migrations: (
        await c.query(
          `SELECT version, name, applied_at FROM "${schema}".schema_migrations ORDER BY version`,
        )
      ).rows,
    };
  });
}

/** Runs Rebalance to its end; the messages in order. */
async function rebalance(
  gw: TestGateway,
  maxConcurrentMoves: number,
): Promise<RebalanceResponse[]> {
  const seen: RebalanceResponse[] = [];
  for await (const msg of gw.client.admin.rebalance({ maxConcurrentMoves, limit: 0 }))
    seen.push(msg);
  return seen;
}

/** The last message of each move in a Rebalance stream. */
function finalMoves(stream: readonly RebalanceResponse[]): Map<string, Move> {
  const last = new Map<string, Move>();
  for (const m of stream) last.set(m.move!.clientId, m.move!);
  return last;
}

describe('rebalance across shard servers', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  /** Extra shard databases made by the tests, by shard name. */
  const extra: Record<string, string> = {};
  const allShards = (): { name: string; url: string }[] => [
    ...topology.shards,
    ...Object.entries(extra).map(([name, url]) => ({ name, url })),
  ];
  const urlOf = (shard: string): string => allShards().find((s) => s.name === shard)!.url;

  beforeAll(async () => {
    topology = await createTestTopology(3);
    gw = await startTestGateway(topology);
  });
  afterAll(async () => {
    await gw?.gateway.context.mover.idle();
    await gw?.close();
  });

  it('AddShard: ALREADY_EXISTS, INVALID_ARGUMENT and UNAVAILABLE, and a new shard bumps the epoch once', async () => {
    const [, serverA] = inject('pgServers');
    const spareUrl = await createDatabase(serverA!.adminUrl, `t_${uniqueSuffix()}_spare`);
    const before = await gw.client.admin.getTopology({});

    expect(
      await statusOf(gw.client.admin.addShard({ name: 'shard-1', dsn: spareUrl, weight: 0 })),
    ).toBe(Status.ALREADY_EXISTS);
    expect(
      await statusOf(
        gw.client.admin.addShard({ name: 'spare', dsn: 'mysql://root@127.0.0.1/x', weight: 0 }),
      ),
    ).toBe(Status.INVALID_ARGUMENT);
    expect(
      await statusOf(gw.client.admin.addShard({ name: 'spare', dsn: 'not a url', weight: 0 })),
    ).toBe(Status.INVALID_ARGUMENT);
    const deadPort = await freePort();
    expect(
      await statusOf(
        gw.client.admin.addShard({
          name: 'spare',
          dsn: `postgres://postgres@127.0.0.1:${deadPort}/x`,
          weight: 0,
        }),
      ),
    ).toBe(Status.UNAVAILABLE);
    expect(
      await statusOf(gw.client.admin.addShard({ name: 'Bad_Name', dsn: spareUrl, weight: 0 })),
    ).toBe(Status.INVALID_ARGUMENT);
    // Nothing above changed the ring.
    const unchanged = await gw.client.admin.getTopology({});
    expect(unchanged.ringEpoch).toBe(before.ringEpoch);
    expect(unchanged.shards.map((s) => s.name)).toEqual(['shard-1', 'shard-2', 'shard-3']);
  });

  // Found by fuzzing: these reached the driver, which threw a TypeError (INTERNAL) or a URIError
  // (UNAVAILABLE), dropped the newline (so port 5\n432 became 5432), or, with no host, tried its
  // default localhost:5432.
  it('AddShard: a DSN the driver would misread is INVALID_ARGUMENT and connects nowhere', async () => {
    const port = await freePort();
    for (const dsn of [
      'postgres://[::1',
      'postgres://127.0.0.1:99999/x',
      `postgres://%ff@127.0.0.1:${port}/x`,
      `postgres://127.0.0.1:${port}/x%00`,
      'postgres://127.0.0.1:5\n432/x',
      'postgres:///x',
    ]) {
      const err = await errorOf(gw.client.admin.addShard({ name: 'spare', dsn, weight: 0 }));
      expect({ dsn, code: err.code, names: err.details.includes('dsn') }).toEqual({
        dsn,
        code: Status.INVALID_ARGUMENT,
        names: true,
      });
    }
  });

  it(
    'adding a 4th equal shard plans ~1/4 of the clients onto it, Rebalance moves them intact, weights and drains re-plan, RemoveShard needs an empty shard',
    { timeout: 60_000 },
    async () => {
      // 60 clients with a little data each.
      const ids = Array.from({ length: 60 }, () => freshClientId('rb'));
      await mapLimit(ids, 8, async (clientId) => {
        await gw.client.tenants.createTenant({ clientId });
        await gw.client.appointments.createAppointment(appointmentInput(clientId, 1));
        await gw.client.handoffs.appendHandoff(handoffInput(clientId, 1));
        await gw.client.state.putState({ clientId, document: { owner: clientId } });
      });
      expect((await gw.client.admin.planRebalance({ limit: 0 })).moves).toEqual([]);
      const placedBefore = new Map(
        (await catalogPlacements(topology.catalogUrl)).map((p) => [p.clientId, p]),
      );
      const shapes = new Map<string, Record<string, unknown[]>>();
      await mapLimit(ids, 8, async (id) => {
        const p = placedBefore.get(id)!;
        shapes.set(id, await schemaShape(urlOf(p.shard), p.schema));
      });

      // The 4th shard lives on the same server as shard-1: moves between them replicate within one
      // PostgreSQL cluster.
      const [, serverA] = inject('pgServers');
      extra['shard-4'] = await createDatabase(serverA!.adminUrl, `t_${uniqueSuffix()}_s4`);
      const epoch0 = (await gw.client.admin.getTopology({})).ringEpoch;
      const added = await gw.client.admin.addShard({
        name: 'shard-4',
        dsn: extra['shard-4'],
        weight: 0,
      });
      expect(added.ringEpoch).toBe(epoch0 + 1);
      expect(added.shard).toMatchObject({ name: 'shard-4', weight: 100, tenantCount: 0 });
      expect(
        await statusOf(
          gw.client.admin.addShard({ name: 'shard-4', dsn: extra['shard-4'], weight: 0 }),
        ),
      ).toBe(Status.ALREADY_EXISTS);

      const plan = await gw.client.admin.planRebalance({ limit: 0 });
      expect(plan.ringEpoch).toBe(epoch0 + 1);
      expect(plan.moves.length).toBeGreaterThanOrEqual(6);
      expect(plan.moves.length).toBeLessThanOrEqual(24);
      for (const m of plan.moves) {
        expect(m).toMatchObject({ toShard: 'shard-4', reason: MoveReason.MOVE_REASON_RING });
        expect(m.fromShard).toBe(placedBefore.get(m.clientId)!.shard);
        expect(m.sizeBytes).toBeGreaterThan(0);
      }
      expect(plan.totalBytes).toBe(plan.moves.reduce((s, m) => s + m.sizeBytes, 0));
      const limited = await gw.client.admin.planRebalance({ limit: 2 });
      expect(limited.moves).toEqual(plan.moves.slice(0, 2));

      const stream = await rebalance(gw, 3);
      const moved = finalMoves(stream);
      expect(new Set(moved.keys())).toEqual(new Set(plan.moves.map((m) => m.clientId)));
      for (const m of moved.values()) {
        expect({ client: m.clientId, state: m.state, error: m.error }).toEqual({
          client: m.clientId,
          state: MoveState.MOVE_STATE_SUCCEEDED,
          error: '',
        });
        expect(m.targetShard).toBe('shard-4');
      }
      expect(stream.at(-1)).toMatchObject({
        finished: plan.moves.length,
        total: plan.moves.length,
      });

      const located = await mapLimit(ids, 8, (clientId) => gw.client.admin.locate({ clientId }));
      expect(located.filter((l) => l.placementDiffers)).toEqual([]);
      for (const m of plan.moves) {
        const schema = placedBefore.get(m.clientId)!.schema;
        expect(await schemaShape(urlOf('shard-4'), schema)).toEqual(shapes.get(m.clientId));
        expect(await countRows(urlOf('shard-4'), schema, 'appointments')).toBe(1);
        const { state } = await gw.client.state.getState({ clientId: m.clientId });
        expect(state).toMatchObject({ document: { owner: m.clientId }, version: 1 });
      }
      expect(await strayState(topology.catalogUrl, allShards())).toEqual([]);
      expect((await gw.client.admin.planRebalance({ limit: 0 })).moves).toEqual([]);

      // Weights: the plan follows each shard's share of the ring.
      const onShard4 = new Set(plan.moves.map((m) => m.clientId));
      const ringShardAfter = (moves: readonly PlannedMove[]): Map<string, string> => {
        const out = new Map(
          ids.map((id) => [id, onShard4.has(id) ? 'shard-4' : placedBefore.get(id)!.shard]),
        );
        for (const m of moves) out.set(m.clientId, m.toShard);
        return out;
      };
      const count4 = (m: Map<string, string>): number =>
        [...m.values()].filter((s) => s === 'shard-4').length;

      await gw.client.admin.setShardWeight({ name: 'shard-4', weight: 200 });
      const heavier = (await gw.client.admin.planRebalance({ limit: 0 })).moves;
      expect(heavier.filter((m) => m.fromShard === 'shard-4')).toEqual([]);
      expect(heavier.filter((m) => m.toShard === 'shard-4').length).toBeGreaterThan(0);
      expect(heavier.every((m) => m.reason === MoveReason.MOVE_REASON_RING)).toBe(true);
      // 200 of 500 weight: about 40% of the clients end up there.
      expect(count4(ringShardAfter(heavier))).toBeGreaterThanOrEqual(13);
      expect(count4(ringShardAfter(heavier))).toBeLessThanOrEqual(36);

      await gw.client.admin.setShardWeight({ name: 'shard-4', weight: 1 });
      const lighter = (await gw.client.admin.planRebalance({ limit: 0 })).moves;
      // 1 of 301: no virtual node left, so every client there would leave and none arrive.
      expect(
        lighter
          .filter((m) => m.fromShard === 'shard-4')
          .map((m) => m.clientId)
          .sort(),
      ).toEqual([...onShard4].sort());
      expect(lighter.filter((m) => m.toShard === 'shard-4')).toEqual([]);

      const restored = await gw.client.admin.setShardWeight({ name: 'shard-4', weight: 100 });
      expect(restored.shard).toMatchObject({
        name: 'shard-4',
        weight: 100,
        tenantCount: onShard4.size,
      });
      expect((await gw.client.admin.planRebalance({ limit: 0 })).moves).toEqual([]);

      // Drain shard-2: its clients, and only they, are planned away with reason DRAIN.
      const onShard2 = (await catalogPlacements(topology.catalogUrl)).filter(
        (p) => p.shard === 'shard-2',
      );
      expect(onShard2.length).toBeGreaterThan(0);
      const drained = await gw.client.admin.drainShard({ name: 'shard-2' });
      expect(drained.shard).toMatchObject({ name: 'shard-2', tenantCount: onShard2.length });
      const drainPlan = (await gw.client.admin.planRebalance({ limit: 0 })).moves;
      expect(drainPlan.map((m) => m.clientId).sort()).toEqual(
        onShard2.map((p) => p.clientId).sort(),
      );
      for (const m of drainPlan) {
        expect(m).toMatchObject({ fromShard: 'shard-2', reason: MoveReason.MOVE_REASON_DRAIN });
        expect(m.toShard).not.toBe('shard-2');
      }
      // No new client lands on a draining shard.
      const newcomers = await mapLimit(
        Array.from({ length: 10 }, () => freshClientId('rbnew')),
        5,
        (clientId) => gw.client.tenants.createTenant({ clientId }),
      );
      expect(newcomers.filter((t) => t.tenant!.shard === 'shard-2')).toEqual([]);

      expect(await statusOf(gw.client.admin.removeShard({ name: 'shard-2' }))).toBe(
        Status.FAILED_PRECONDITION,
      );
      const drainStream = await rebalance(gw, 4);
      const drainMoves = finalMoves(drainStream);
      expect(drainMoves.size).toBe(onShard2.length);
      expect(
        [...drainMoves.values()].filter((m) => m.state !== MoveState.MOVE_STATE_SUCCEEDED),
      ).toEqual([]);
      for (const p of onShard2) {
        const located2 = await gw.client.admin.locate({ clientId: p.clientId });
        expect(located2).toMatchObject({
          shard: drainMoves.get(p.clientId)!.targetShard,
          placementDiffers: false,
        });
        expect(await countRows(urlOf(located2.shard), p.schema, 'handoffs')).toBe(1);
      }
      expect(await strayState(topology.catalogUrl, allShards())).toEqual([]);

      const epochBeforeRemove = (await gw.client.admin.getTopology({})).ringEpoch;
      const removed = await gw.client.admin.removeShard({ name: 'shard-2' });
      expect(removed.ringEpoch).toBe(epochBeforeRemove + 1);
      const after = await gw.client.admin.getTopology({});
      expect(after.shards.map((s) => s.name)).toEqual(['shard-1', 'shard-3', 'shard-4']);
      expect(after.shards.reduce((n, s) => n + s.tenantCount, 0)).toBe(70);
      expect(await statusOf(gw.client.admin.removeShard({ name: 'shard-2' }))).toBe(
        Status.NOT_FOUND,
      );
    },
  );
});

describe('moves between shard databases, regressions', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  beforeAll(async () => {
    // Four shards on three servers: shard-1 and shard-4 share a PostgreSQL server.
    topology = await createTestTopology(4);
    gw = await startTestGateway(topology);
  });
  afterAll(async () => {
    await gw?.gateway.context.mover.idle();
    await gw?.close();
  });

  /** Fresh clients until `count` of them live on one of `shards`. */
  async function clientsOn(
    shards: readonly string[],
    count: number,
  ): Promise<{ clientId: string; shard: string }[]> {
    const found: { clientId: string; shard: string }[] = [];
    while (found.length < count) {
      const clientId = freshClientId('rg');
      const { tenant } = await gw.client.tenants.createTenant({ clientId });
      await gw.client.appointments.createAppointment(appointmentInput(clientId, 1));
      if (shards.includes(tenant!.shard)) found.push({ clientId, shard: tenant!.shard });
    }
    return found;
  }

  it('a move between two databases of one server does not hang in CREATE SUBSCRIPTION', async () => {
    // Regression: CREATE SUBSCRIPTION made its own slot, which on the same server waits for the
    // CREATE SUBSCRIPTION itself; the move hung until the statement timeout and FAILED.
    const [c] = await clientsOn(['shard-1', 'shard-4'], 1);
    const there = c!.shard === 'shard-1' ? 'shard-4' : 'shard-1';
    const started = Date.now();
    for (const to of [there, c!.shard]) {
      const last = (await moveTo(gw.client, c!.clientId, to)).at(-1)!;
      expect(last).toMatchObject({ state: MoveState.MOVE_STATE_SUCCEEDED, error: '' });
    }
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(
      (await gw.client.appointments.listAppointments({ clientId: c!.clientId, pageSize: 10 }))
        .appointments,
    ).toHaveLength(1);
    expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
  });

  it('four moves into one server at once do not starve each other of replication workers', async () => {
    // Regression: four subscriptions took all four logical replication workers of the target
    // server with apply workers, so their table copies waited on each other for tens of seconds.
    const movers = await clientsOn(['shard-1', 'shard-3', 'shard-4'], 4);
    const started = Date.now();
    const results = await Promise.all(movers.map((c) => moveTo(gw.client, c.clientId, 'shard-2')));
    expect(results.map((r) => r.at(-1)!.state)).toEqual(
      Array(4).fill(MoveState.MOVE_STATE_SUCCEEDED),
    );
    expect(Date.now() - started).toBeLessThan(15_000);
    for (const c of movers)
      expect((await gw.client.admin.locate({ clientId: c.clientId })).shard).toBe('shard-2');
    expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
  });

  it('a move between two shard names of one database is refused before anything is dropped', async () => {
    // Regression: preparing the target dropped the client's schema there, which was the live one.
    const [c] = await clientsOn(['shard-3'], 1);
    // AddShard refuses a second name for a registered database…
    expect(
      await statusOf(
        gw.client.admin.addShard({
          name: 'alias-of-3',
          dsn: shardUrl(topology, 'shard-3'),
          weight: 1,
        }),
      ),
    ).toBe(Status.ALREADY_EXISTS);
    // …but configuration (SHARDGATE_SHARDS) can still register one, so the move checks again.
    await withPg(topology.catalogUrl, (db) =>
      db.query(`INSERT INTO shardgate.shards (name, url, weight) VALUES ('alias-of-3', $1, 1)`, [
        shardUrl(topology, 'shard-3'),
      ]),
    );
    await gw.gateway.context.refreshTopology();
    try {
      expect(await statusOf(moveTo(gw.client, c!.clientId, 'alias-of-3'))).toBe(
        Status.FAILED_PRECONDITION,
      );
      expect(
        (await gw.client.appointments.listAppointments({ clientId: c!.clientId, pageSize: 10 }))
          .appointments,
      ).toHaveLength(1);
      expect(
        (
          await gw.client.admin.listMoves({
            clientId: c!.clientId,
            pageSize: 10,
            pageToken: '',
            state: 0,
          })
        ).moves,
      ).toEqual([]);
    } finally {
      await gw.client.admin.removeShard({ name: 'alias-of-3' });
    }
  });

  it('MoveTenant onto a draining shard is FAILED_PRECONDITION', async () => {
    const [c] = await clientsOn(['shard-1'], 1);
    await gw.client.admin.drainShard({ name: 'shard-2' });
    expect(await statusOf(moveTo(gw.client, c!.clientId, 'shard-2'))).toBe(
      Status.FAILED_PRECONDITION,
    );
    expect((await gw.client.admin.locate({ clientId: c!.clientId })).shard).toBe('shard-1');
  });
});

describe('Rebalance reports every planned move', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  const failpoints = new Failpoints();
  beforeAll(async () => {
    topology = await createTestTopology(3);
    gw = await startGatewayWithFailpoints(topology, failpoints);
  });
  afterAll(async () => {
    await gw?.gateway.context.mover.idle();
    await gw?.close();
  });

  it('a planned move that cannot start is streamed as FAILED, so finished reaches total', async () => {
    // Regression: such a move vanished from the stream and `finished` never reached `total`.
    const on3: string[] = [];
    while (on3.length < 2) {
      const clientId = freshClientId('rb');
      const { tenant } = await gw.client.tenants.createTenant({ clientId });
      if (tenant!.shard === 'shard-3') on3.push(clientId);
    }
    const [busy, free] = on3 as [string, string];
    // A manual move of `busy`, held in its copy, so the rebalance cannot start another one.
    const gate = failpoints.hold('move.copying');
    const manual = moveTo(gw.client, busy, 'shard-1');
    await gate.reached;
    try {
      await gw.client.admin.drainShard({ name: 'shard-3' });
      const seen: RebalanceResponse[] = [];
      for await (const msg of gw.client.admin.rebalance({ maxConcurrentMoves: 2, limit: 0 })) {
        seen.push(msg);
      }
      const last = seen.at(-1)!;
      expect(last.finished).toBe(last.total);
      expect(last.total).toBe(2);
      const ended = seen.filter((m) => m.move!.state !== MoveState.MOVE_STATE_RUNNING);
      const byClient = new Map(ended.map((m) => [m.move!.clientId, m.move!]));
      expect(byClient.get(busy)).toMatchObject({
        id: '',
        state: MoveState.MOVE_STATE_FAILED,
        reason: MoveReason.MOVE_REASON_DRAIN,
      });
      expect(byClient.get(busy)!.error).toContain('already being moved');
      expect(byClient.get(free)!.state).toBe(MoveState.MOVE_STATE_SUCCEEDED);
    } finally {
      gate.release();
    }
    expect((await manual).at(-1)!.state).toBe(MoveState.MOVE_STATE_SUCCEEDED);
    expect((await gw.client.admin.locate({ clientId: busy })).shard).toBe('shard-1');
  });
});
