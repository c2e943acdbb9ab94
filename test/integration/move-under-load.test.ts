import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MoveReason, MoveState, type Move } from '../../src/gen/shardgate/v1/admin.js';
import type { ShardgateClient } from '../../src/client/index.js';
import {
  createDatabase,
  createTestTopology,
  freshClientId,
  startTestGateway,
  withPg,
  type TestGateway,
  type TestTopology,
  uniqueSuffix,
} from '../support/harness.js';
import {
  appointmentInput,
  catalogPlacements,
  handoffInput,
  idsIn,
  moveTo,
  shardUrl,
  sleep,
  strayState,
} from '../support/move-helpers.js';

const CLIENTS = 12;
const WRITERS = 6;

/** What the writers were told succeeded, per client. */
interface Acked {
  appointments: Set<string>;
  handoffs: Set<string>;
  /** Last state version and `n` the owning writer got back. */
  version: number;
  n: number;
}

describe('moves, a drain, a removal and an added shard under continuous writes', () => {
  let topology: TestTopology;
  let gwA: TestGateway;
  let gwB: TestGateway;

  beforeAll(async () => {
    topology = await createTestTopology(3);
    gwA = await startTestGateway(topology);
    gwB = await startTestGateway(topology);
  });
  afterAll(async () => {
    await gwA?.gateway.context.mover.idle();
    await Promise.all([gwA?.close(), gwB?.close()]);
  });

  it(
    'every acknowledged write is on the current shard exactly once, versions never go back, nobody sees an error, nothing is left behind',
    { timeout: 60_000 },
    async () => {
      const ids = Array.from({ length: CLIENTS }, () => freshClientId('load'));
      const acked = new Map<string, Acked>();
      for (const clientId of ids) {
        await gwA.client.tenants.createTenant({ clientId });
        acked.set(clientId, { appointments: new Set(), handoffs: new Set(), version: 0, n: 0 });
      }
      const errors: { writer: number; op: string; err: unknown }[] = [];
      const violations: string[] = [];
      let stopping = false;

      /** Writer w: appointments and handoffs for any client; the state of the clients it owns (CAS). */
      const writer = async (w: number, client: ShardgateClient): Promise<number> => {
        const owned = ids.filter((_, i) => i % WRITERS === w);
        let calls = 0;
        for (let k = 0; !stopping; k++) {
          const clientId = ids[(w * 7 + k) % CLIENTS]!;
          const mine = owned[k % owned.length]!;
          const a = acked.get(mine)!;
          const ops: [string, () => Promise<void>][] = [
            [
              'CreateAppointment',
              async () => {
                const { appointment } = await client.appointments.createAppointment(
                  appointmentInput(clientId, k),
                );
                acked.get(clientId)!.appointments.add(appointment!.id);
              },
            ],
            [
              'AppendHandoff',
              async () => {
                const { handoff } = await client.handoffs.appendHandoff(handoffInput(clientId, k));
                acked.get(clientId)!.handoffs.add(handoff!.id);
              },
            ],
            [
              'PutState',
              async () => {
                const { state } = await client.state.putState({
                  clientId: mine,
                  document: { n: a.n + 1, w },
                  expectedVersion: a.version,
                });
                if (state!.version !== a.version + 1)
                  violations.push(`${mine}: PutState gave v${state!.version} after v${a.version}`);
                a.version = state!.version;
                a.n += 1;
              },
            ],
            [
              'PatchState',
              async () => {
                const { state } = await client.state.patchState({
                  clientId: mine,
                  patch: { n: a.n + 1 },
                  expectedVersion: a.version,
                });
                if (state!.version !== a.version + 1)
                  violations.push(
                    `${mine}: PatchState gave v${state!.version} after v${a.version}`,
                  );
                a.version = state!.version;
                a.n += 1;
              },
            ],
            [
              'GetState',
              async () => {
                const { state } = await client.state.getState({ clientId: mine });
                const n = (state!.document as { n?: number }).n ?? 0;
                if (state!.version !== a.version || n !== a.n) {
                  violations.push(
                    `${mine}: GetState saw v${state!.version} n=${n} after v${a.version} n=${a.n}`,
                  );
                }
              },
            ],
          ];
          const [op, run] = ops[k % ops.length]!;
          try {
            await run();
          } catch (err) {
            errors.push({ writer: w, op, err });
          }
          calls++;
        }
        return calls;
      };
      const writers = Array.from({ length: WRITERS }, (_, w) =>
        writer(w, (w % 2 === 0 ? gwA : gwB).client),
      );

      // Moves back and forth between the three shards, three at a time, while the writers write.
      const moves: Move[] = [];
      await sleep(200);
      const shardNames = topology.shards.map((s) => s.name);
      for (let round = 0; round < 4; round++) {
        const placements = new Map(
          (await catalogPlacements(topology.catalogUrl)).map((p) => [p.clientId, p.shard]),
        );
        const batch = [0, 1, 2].map((i) => ids[(round * 2 + i) % 8]!);
        const results = await Promise.all(
          batch.map((clientId) => {
            const here = shardNames.indexOf(placements.get(clientId)!);
            return moveTo(gwA.client, clientId, shardNames[(here + 1 + (round % 2)) % 3]!);
          }),
        );
        moves.push(...results.map((r) => r.at(-1)!));
      }

      // Drain the shard holding the most clients and rebalance them away, still under load.
      const before = await catalogPlacements(topology.catalogUrl);
      const drainName = [...shardNames].sort(
        (x, y) =>
          before.filter((p) => p.shard === y).length - before.filter((p) => p.shard === x).length,
      )[0]!;
      const onDrained = before.filter((p) => p.shard === drainName);
      expect(onDrained.length).toBeGreaterThanOrEqual(CLIENTS / 3);
      await gwA.client.admin.drainShard({ name: drainName });
      const plan = await gwA.client.admin.planRebalance({ limit: 0 });
      expect(plan.moves.map((m) => m.clientId).sort()).toEqual(
        onDrained.map((p) => p.clientId).sort(),
      );
      expect(plan.moves.every((m) => m.reason === MoveReason.MOVE_REASON_DRAIN)).toBe(true);
      const drained = new Map<string, Move>();
      for await (const msg of gwA.client.admin.rebalance({ maxConcurrentMoves: 3, limit: 0 }))
        drained.set(msg.move!.id, msg.move!);
      moves.push(...drained.values());

      // Remove the drained shard, add a fresh one and rebalance onto it, still under load. The new
      // shard's large weight makes the ring send it most of the clients that are not pinned.
      await gwB.client.admin.removeShard({ name: drainName });
      const addedUrl = await createDatabase(
        inject('pgServers')[1]!.adminUrl,
        `t_${uniqueSuffix()}_added`,
      );
      await gwB.client.admin.addShard({ name: 'shard-added', dsn: addedUrl, weight: 1000 });
      topology.shards.push({ name: 'shard-added', url: addedUrl, weight: 1000 });
      const grow = await gwA.client.admin.planRebalance({ limit: 0 });
      expect(grow.moves.some((m) => m.toShard === 'shard-added')).toBe(true);
      expect(grow.moves.every((m) => m.reason === MoveReason.MOVE_REASON_RING)).toBe(true);
      const grown = new Map<string, Move>();
      for await (const msg of gwA.client.admin.rebalance({ maxConcurrentMoves: 3, limit: 0 }))
        grown.set(msg.move!.id, msg.move!);
      expect(grown.size).toBe(grow.moves.length);
      moves.push(...grown.values());

      await sleep(300);
      stopping = true;
      const calls = await Promise.all(writers);

      // Nobody saw an error, and no writer saw its state go back or skip.
      expect(errors.map((e) => `${e.op}: ${String((e.err as Error).message)}`)).toEqual([]);
      expect(violations).toEqual([]);
      expect(calls.reduce((a, b) => a + b, 0)).toBeGreaterThan(200);
      expect(moves.map((m) => ({ client: m.clientId, state: m.state, error: m.error }))).toEqual(
        moves.map((m) => ({
          client: m.clientId,
          state: MoveState.MOVE_STATE_SUCCEEDED,
          error: '',
        })),
      );
      expect(moves.length).toBe(12 + onDrained.length + grown.size);

      // Every acknowledged write is on the client's current shard, exactly once, and nothing else is.
      const placements = await catalogPlacements(topology.catalogUrl);
      expect(placements.filter((p) => p.shard === drainName)).toEqual([]);
      for (const p of placements) {
        const a = acked.get(p.clientId)!;
        const url = shardUrl(topology, p.shard);
        expect({ client: p.clientId, ids: await idsIn(url, p.schema, 'appointments') }).toEqual({
          client: p.clientId,
          ids: [...a.appointments].sort(),
        });
        expect(await idsIn(url, p.schema, 'handoffs')).toEqual([...a.handoffs].sort());
        const state = await withPg(url, (c) =>
          c.query(`SELECT version, document FROM "${p.schema}".state`),
        );
        expect(state.rows).toEqual([
          { version: String(a.version), document: expect.objectContaining({ n: a.n }) },
        ]);
      }
      expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);

      const pauses = moves.map((m) => m.writePauseMs).sort((x, y) => x - y);
      console.log(
        `move-under-load: ${moves.length} moves, ${calls.reduce((a, b) => a + b, 0)} calls; write_pause_ms ` +
          `min ${pauses[0]} median ${pauses[Math.floor(pauses.length / 2)]} max ${pauses.at(-1)}: ${pauses.join(' ')}`,
      );
      for (const ms of pauses) expect(ms).toBeLessThan(2_000);
    },
  );
});
