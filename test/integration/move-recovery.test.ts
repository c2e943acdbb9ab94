import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createShardgateClient } from '../../src/client/index.js';
import { Failpoints } from '../../src/core/failpoints.js';
import type { ClientId, ShardName } from '../../src/core/ids.js';
import { MovePhase, MoveState, type Move } from '../../src/gen/shardgate/v1/admin.js';
import { spawnGatewayProcess, type GatewayProcess } from '../support/gateway-process.js';
import {
  createTestTopology,
  errorOf,
  freshClientId,
  startTestGateway,
  statusOf,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';
import {
  appointmentInput,
  catalogPlacements,
  countRows,
  eventually,
  handoffInput,
  moveTo,
  shardUrl,
  sleep,
  startGatewayWithFailpoints,
  strayState,
} from '../support/move-helpers.js';

/** Failure points before the flip: the move must roll back. */
const PRE_FLIP = [
  'move.preparing',
  'move.copying',
  'move.catching_up',
  'move.cutover',
  'move.cutover.paused',
  'move.cutover.caught-up',
  'move.cutover.verified',
] as const;
/** After the flip: the move must be finished. `move.cleaning` first, so its child is gone before a flipped move exists for it to recover. */
const POST_FLIP = ['move.cleaning', 'move.flipped'] as const;
const PHASE_OF: Record<string, MovePhase> = {
  'move.preparing': MovePhase.MOVE_PHASE_PREPARING,
  'move.copying': MovePhase.MOVE_PHASE_COPYING,
  'move.catching_up': MovePhase.MOVE_PHASE_CATCHING_UP,
  'move.cutover': MovePhase.MOVE_PHASE_CUTOVER,
  'move.cutover.paused': MovePhase.MOVE_PHASE_CUTOVER,
  'move.cutover.caught-up': MovePhase.MOVE_PHASE_CUTOVER,
  'move.cutover.verified': MovePhase.MOVE_PHASE_CUTOVER,
};

describe('moves that crash or fail at each step', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  const failpoints = new Failpoints();
  const children = new Map<string, GatewayProcess>();

  beforeAll(async () => {
    topology = await createTestTopology(2);
    gw = await startGatewayWithFailpoints(topology, failpoints);
    // One gateway process per failure point, armed to SIGKILL itself there.
    await Promise.all(
      [...PRE_FLIP, ...POST_FLIP].map(async (point) => {
        children.set(
          point,
          await spawnGatewayProcess(topology, {
            env: { SHARDGATE_FAILPOINTS: `${point}=crash` },
            startMs: 40_000,
          }),
        );
      }),
    );
  }, 60_000);
  afterAll(async () => {
    await Promise.all([...children.values()].map((c) => c.stop()));
    await gw?.gateway.context.mover.idle();
    await gw?.close();
  });

  /** A fresh client with 3 appointments, 2 handoffs and a state document; its source and a target. */
  async function seededClient(
    tag: string,
  ): Promise<{ clientId: string; schema: string; source: string; target: string }> {
    const clientId = freshClientId('rec');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    for (let i = 0; i < 3; i++)
      await gw.client.appointments.createAppointment(appointmentInput(clientId, i));
    for (let i = 0; i < 2; i++) await gw.client.handoffs.appendHandoff(handoffInput(clientId, i));
    await gw.client.state.putState({ clientId, document: { tag } });
    const source = tenant!.shard;
    const target = topology.shards.find((s) => s.name !== source)!.name;
    return { clientId, schema: tenant!.schema, source, target };
  }

  /** The client lives on `shard` with its data intact, and takes writes there. */
  async function expectServedFrom(
    c: { clientId: string; schema: string },
    shard: string,
    tag: string,
  ): Promise<void> {
    expect((await gw.client.admin.locate({ clientId: c.clientId })).shard).toBe(shard);
    const url = shardUrl(topology, shard);
    expect(await countRows(url, c.schema, 'appointments')).toBe(3);
    expect(await countRows(url, c.schema, 'handoffs')).toBe(2);
    expect((await gw.client.state.getState({ clientId: c.clientId })).state).toMatchObject({
      document: { tag },
      version: 1,
    });
    const { appointment } = await gw.client.appointments.createAppointment(
      appointmentInput(c.clientId, 99),
    );
    await gw.client.handoffs.appendHandoff(handoffInput(c.clientId, 99));
    const { state } = await gw.client.state.patchState({
      clientId: c.clientId,
      patch: { after: true },
      expectedVersion: 1,
    });
    expect(state).toMatchObject({ document: { tag, after: true }, version: 2 });
    expect(await countRows(url, c.schema, 'appointments')).toBe(4);
    expect(await countRows(url, c.schema, 'handoffs')).toBe(3);
    const found = await withPg(url, (db) =>
      db.query(`SELECT 1 FROM "${c.schema}".appointments WHERE id = $1`, [appointment!.id]),
    );
    expect(found.rowCount).toBe(1);
  }

  /** Recovers in this process until the move has ended; the final journal row. */
  async function recoverUntilEnded(moveId: string): Promise<Move> {
    const mover = gw.gateway.context.mover;
    return eventually(
      async () => {
        await mover.recover();
        await mover.idle();
        const { move } = await gw.client.admin.getMove({ id: moveId });
        expect(move!.state).not.toBe(MoveState.MOVE_STATE_RUNNING);
        return move!;
      },
      15_000,
      100,
    );
  }

  async function crashAt(
    point: string,
  ): Promise<{ c: Awaited<ReturnType<typeof seededClient>>; move: Move }> {
    const c = await seededClient(point);
    const child = children.get(point)!;
    const viaChild = createShardgateClient({ address: child.address });
    try {
      const broken = await errorOf(moveTo(viaChild, c.clientId, c.target));
      expect([Status.UNAVAILABLE, Status.INTERNAL, Status.CANCELLED]).toContain(broken.code);
    } finally {
      viaChild.close();
    }
    await eventually(async () => expect(() => process.kill(child.pid, 0)).toThrow(), 5_000);
    expect(child.output()).toContain(`failpoint ${point}: crashing`);
    const { moves } = await gw.client.admin.listMoves({
      clientId: c.clientId,
      pageSize: 10,
      pageToken: '',
      state: 0,
    });
    expect(moves).toHaveLength(1);
    return { c, move: await recoverUntilEnded(moves[0]!.id) };
  }

  it.each(PRE_FLIP)(
    'killed at %s: recovery rolls back; the client stays on its source with its data',
    async (point) => {
      const { c, move } = await crashAt(point);
      expect(move).toMatchObject({
        state: MoveState.MOVE_STATE_FAILED,
        phase: PHASE_OF[point],
        error: 'the process running the move stopped; rolled back',
      });
      expect(move.finishedAt).toBeInstanceOf(Date);
      await expectServedFrom(c, c.source, point);
      expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
    },
  );

  it.each(POST_FLIP)(
    'killed at %s: recovery finishes the move; the client lives on the target',
    async (point) => {
      const { c, move } = await crashAt(point);
      expect(move).toMatchObject({
        state: MoveState.MOVE_STATE_SUCCEEDED,
        phase: MovePhase.MOVE_PHASE_DONE,
        error: '',
      });
      expect(move.writePauseMs).toBeGreaterThan(0);
      await expectServedFrom(c, c.target, point);
      expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
    },
  );

  it.each(PRE_FLIP)('%s=error in-process: the move fails and rolls back at once', async (point) => {
    const c = await seededClient(point);
    failpoints.arm(point, 'error');
    let progress: Move[];
    try {
      progress = await moveTo(gw.client, c.clientId, c.target);
    } finally {
      failpoints.disarm(point);
    }
    expect(progress.at(-1)).toMatchObject({
      state: MoveState.MOVE_STATE_FAILED,
      phase: PHASE_OF[point],
      error: `failpoint ${point} fired`,
    });
    await expectServedFrom(c, c.source, point);
    expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
  });

  it('move.flipped=error: an error after the flip finishes the move instead of marking it FAILED', async () => {
    // Regression: the error after the flip used to "roll back": FAILED, with the client already on
    // the target and its old schema (fenced) left on the source.
    const c = await seededClient('flipped-error');
    failpoints.arm('move.flipped', 'error');
    let progress: Move[];
    try {
      progress = await moveTo(gw.client, c.clientId, c.target);
    } finally {
      failpoints.disarm('move.flipped');
    }
    expect(progress.at(-1)).toMatchObject({
      state: MoveState.MOVE_STATE_SUCCEEDED,
      phase: MovePhase.MOVE_PHASE_DONE,
    });
    await expectServedFrom(c, c.target, 'flipped-error');
    expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
  });

  it('move.cleaning=error: the move stays running (flipped) until recovery finishes it', async () => {
    const c = await seededClient('cleaning-error');
    const mover = gw.gateway.context.mover;
    failpoints.arm('move.cleaning', 'error');
    let started: { id: string };
    try {
      started = await mover.start({
        clientId: c.clientId as ClientId,
        target: c.target as ShardName,
        reason: 'manual',
      });
      await mover.idle();
    } finally {
      failpoints.disarm('move.cleaning');
    }
    const { move: stuck } = await gw.client.admin.getMove({ id: started.id });
    expect(stuck).toMatchObject({
      state: MoveState.MOVE_STATE_RUNNING,
      phase: MovePhase.MOVE_PHASE_CLEANING,
    });
    expect((await gw.client.admin.locate({ clientId: c.clientId })).shard).toBe(c.target);
    expect(await statusOf(gw.client.admin.cancelMove({ id: started.id }))).toBe(
      Status.FAILED_PRECONDITION,
    );
    const move = await recoverUntilEnded(started.id);
    expect(move).toMatchObject({
      state: MoveState.MOVE_STATE_SUCCEEDED,
      phase: MovePhase.MOVE_PHASE_DONE,
    });
    await expectServedFrom(c, c.target, 'cleaning-error');
    expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
  });

  it('CancelMove during copying: the move ends CANCELLED and rolls back', async () => {
    const c = await seededClient('cancel-copy');
    // A transaction holding a transaction id on the source server: the move's replication slot
    // cannot be made until it ends, so the move waits in `copying` for as long as the test wants.
    const blocker = new pg.Client({ connectionString: shardUrl(topology, c.source) });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('SELECT txid_current()');
      const call = gw.client.admin.moveTenant({ clientId: c.clientId, toShard: c.target });
      const stream = call[Symbol.asyncIterator]();
      const first = await stream.next();
      const id = first.value!.move!.id;
      await eventually(async () => {
        const { move } = await gw.client.admin.getMove({ id });
        expect(move!.phase).toBe(MovePhase.MOVE_PHASE_COPYING);
      });
      const cancelled = await gw.client.admin.cancelMove({ id });
      expect(cancelled.move).toMatchObject({ id, state: MoveState.MOVE_STATE_RUNNING });
      await blocker.query('ROLLBACK');
      let last: Move | undefined;
      for (let next = await stream.next(); !next.done; next = await stream.next())
        last = next.value.move;
      expect(last).toMatchObject({
        id,
        state: MoveState.MOVE_STATE_CANCELLED,
        phase: MovePhase.MOVE_PHASE_COPYING,
        error: '',
      });
      expect(await statusOf(gw.client.admin.cancelMove({ id }))).toBe(Status.FAILED_PRECONDITION);
    } finally {
      await blocker.end();
    }
    await expectServedFrom(c, c.source, 'cancel-copy');
    expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
    expect(
      await statusOf(gw.client.admin.cancelMove({ id: '00000000-0000-4000-8000-000000000000' })),
    ).toBe(Status.NOT_FOUND);
  });

  it.each([
    ['a row the target has and the source does not (checked before the pause)', 'move.catching_up'],
    ['a changed row that differs (checked inside the pause)', 'move.cutover'],
  ])('a copy that differs from the source fails verification: %s', async (_name, point) => {
    const c = await seededClient('verify');
    const gate = failpoints.hold(point);
    const moving = moveTo(gw.client, c.clientId, c.target);
    await gate.reached;
    const target = shardUrl(topology, c.target);
    if (point === 'move.catching_up') {
      // Behind replication's back: a row only the target has.
      await withPg(target, (db) =>
        db.query(
          `INSERT INTO "${c.schema}".handoffs (from_agent, to_agent, version, summary) VALUES ('x', 'y', 0, '{}')`,
        ),
      );
    } else {
      // A row changed during the move (so checked inside the pause), then lost on the target.
      const [first] = (
        await gw.client.appointments.listAppointments({ clientId: c.clientId, pageSize: 1 })
      ).appointments;
      await gw.client.appointments.updateAppointment({
        clientId: c.clientId,
        appointment: { ...first!, serviceType: 'changed-during-move' },
        updateMask: ['service_type'],
      });
      await eventually(async () => {
        const found = await withPg(target, (db) =>
          db.query(
            `SELECT 1 FROM "${c.schema}".appointments WHERE service_type = 'changed-during-move'`,
          ),
        );
        expect(found.rowCount).toBe(1);
      });
      await withPg(target, (db) =>
        db.query(`DELETE FROM "${c.schema}".appointments WHERE id = $1`, [first!.id]),
      );
    }
    gate.release();
    const last = (await moving).at(-1)!;
    expect(last.state).toBe(MoveState.MOVE_STATE_FAILED);
    expect(last.error).toContain('verification failed');
    await expectServedFrom(c, c.source, 'verify');
    expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
  });

  it('CancelMove accepted during the cutover is honoured: the flip is refused and the move is CANCELLED', async () => {
    // Regression: a cancel that arrived after the cutover began was acknowledged, then ignored —
    // the move flipped and SUCCEEDED.
    const c = await seededClient('cancel-cutover');
    // A writer holding the source's appointments table: the fence (CREATE TRIGGER) waits for it,
    // so the move sits in its cutover with writes paused. The failpoint hold lets the writer take
    // the table only once the move reached its cutover (earlier steps create triggers too).
    const holder = new pg.Client({ connectionString: shardUrl(topology, c.source) });
    await holder.connect();
    try {
      const gate = failpoints.hold('move.cutover');
      const moving = moveTo(gw.client, c.clientId, c.target);
      await gate.reached;
      await holder.query('BEGIN');
      await holder.query(`LOCK TABLE "${c.schema}".appointments IN ROW EXCLUSIVE MODE`);
      gate.release();
      const id = await eventually(async () => {
        const { moves } = await gw.client.admin.listMoves({
          clientId: c.clientId,
          pageSize: 1,
          pageToken: '',
          state: 0,
        });
        expect(moves[0]?.phase).toBe(MovePhase.MOVE_PHASE_CUTOVER);
        return moves[0]!.id;
      });
      await eventually(async () => {
        const placement = (await catalogPlacements(topology.catalogUrl)).find(
          (p) => p.clientId === c.clientId,
        );
        expect(placement?.writesPaused).toBe(true);
      });
      await gw.client.admin.cancelMove({ id });
      await holder.query('COMMIT');
      const progress = await moving;
      expect(progress.at(-1)).toMatchObject({
        id,
        state: MoveState.MOVE_STATE_CANCELLED,
        phase: MovePhase.MOVE_PHASE_CUTOVER,
      });
    } finally {
      await holder.end();
    }
    await expectServedFrom(c, c.source, 'cancel-cutover');
    expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
  });

  it("a move just started is never taken for an orphan by another gateway's recovery", async () => {
    // Regression: the move's row was journaled before its lock was taken, so a recovery pass in
    // another gateway in between took the free lock and rolled the new move back as "stopped".
    const other = await startTestGateway(topology);
    let stop = false;
    const recovering = (async () => {
      while (!stop) {
        await other.gateway.context.mover.recover();
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    try {
      for (let i = 0; i < 4; i++) {
        const c = await seededClient(`race-${i}`);
        // Bounded: a move ended by another process never ends this stream.
        const progress = await Promise.race([
          moveTo(gw.client, c.clientId, c.target),
          sleep(10_000),
        ]);
        const { moves } = await gw.client.admin.listMoves({
          clientId: c.clientId,
          pageSize: 1,
          pageToken: '',
          state: 0,
        });
        expect(moves[0]).toMatchObject({ state: MoveState.MOVE_STATE_SUCCEEDED, error: '' });
        expect(progress).toBeDefined();
      }
    } finally {
      stop = true;
      await recovering;
      await other.gateway.context.mover.idle();
      await other.close();
    }
    expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
  });
});
