import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Failpoints } from '../../src/core/failpoints.js';
import { MovePhase, MoveState } from '../../src/gen/shardgate/v1/admin.js';
import { LOCK_TIMEOUT_MS, trySessionLock } from '../../src/pg/session-lock.js';
import { startFreezableProxy } from '../support/freezable-proxy.js';
import {
  createTestTopology,
  eventually,
  freshClientId,
  startTestGateway,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';
import { appointmentInput, startGatewayWithFailpoints } from '../support/move-helpers.js';

/**
 * A move is run by whoever holds its session lock in the catalog. When the lock's connection
 * ends (a catalog restart, a network blip), the server releases the lock and another gateway's
 * recovery may take the move over: the first runner must notice before its next step.
 */
describe("a move whose lock's connection ends", () => {
  let topology: TestTopology;
  let gw: TestGateway;
  const failpoints = new Failpoints();

  beforeAll(async () => {
    topology = await createTestTopology(2);
    gw = await startGatewayWithFailpoints(topology, failpoints);
  });
  afterAll(async () => {
    await gw?.gateway.context.mover.idle();
    await gw?.close();
  });

  /**
   * Backends holding the lock of one move (not just any lock connection: recovery's tries at
   * other moves' locks come and go).
   */
  const lockHolders = (moveId: string): Promise<number[]> =>
    withPg(topology.catalogUrl, async (c) => {
      const res = await c.query<{ pid: number }>(
        `SELECT pid FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND objsubid = 1
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND ((classid::bigint << 32) | objid::bigint) = hashtextextended($1, 0)`,
        [`shardgate:move:${moveId}`],
      );
      return res.rows.map((r) => r.pid);
    });

  async function dropLockConnection(moveId: string): Promise<void> {
    const pids = await lockHolders(moveId);
    expect(pids).toHaveLength(1);
    await withPg(topology.catalogUrl, (c) =>
      c.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]),
    );
    await eventually(async () => expect(await lockHolders(moveId)).toEqual([]));
  }

  /** Starts moving a fresh client off its shard; resolves at the copying step, held there. */
  async function moveHeldAtCopying() {
    const clientId = freshClientId('lock-loss');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    await gw.client.appointments.createAppointment(appointmentInput(clientId, 0));
    const target = tenant!.shard === 'shard-1' ? 'shard-2' : 'shard-1';
    const gate = failpoints.hold('move.copying');
    const call = gw.client.admin.moveTenant({ clientId, toShard: target });
    const stream = call[Symbol.asyncIterator]();
    const first = await stream.next();
    const moveId = (first.value as { move: { id: string } }).move.id;
    await gate.reached;
    /** The states the MoveTenant stream reports until it ends. */
    const rest = (async () => {
      const states: MoveState[] = [];
      for (let r = await stream.next(); !r.done; r = await stream.next()) {
        states.push(r.value.move!.state);
      }
      return states;
    })();
    rest.catch(() => undefined);
    return { clientId, source: tenant!.shard, target, moveId, release: gate.release, rest };
  }

  const moveOf = async (id: string) => (await gw.client.admin.getMove({ id })).move!;

  it('takes the lock again when nobody else did, and finishes the move', async () => {
    const m = await moveHeldAtCopying();
    await dropLockConnection(m.moveId);
    const next = failpoints.hold('move.catching_up');
    m.release();
    await next.reached;
    // The step into catching_up ran with the lock held again.
    expect(await lockHolders(m.moveId)).toHaveLength(1);
    next.release();
    await eventually(
      async () => expect((await moveOf(m.moveId)).state).toBe(MoveState.MOVE_STATE_SUCCEEDED),
      30_000,
    );
    expect((await gw.client.admin.locate({ clientId: m.clientId })).shard).toBe(m.target);
  });

  it('stops before its next step when another process holds the lock, and leaves the move to it', async () => {
    const m = await moveHeldAtCopying();
    await dropLockConnection(m.moveId);
    // Another gateway's recovery, as far as the lock goes.
    const other = await trySessionLock(topology.catalogUrl, `shardgate:move:${m.moveId}`);
    expect(other).toBeDefined();
    try {
      m.release();
      await gw.gateway.context.mover.idle();
      const stopped = await moveOf(m.moveId);
      expect(stopped.state).toBe(MoveState.MOVE_STATE_RUNNING);
      expect(stopped.phase).toBe(MovePhase.MOVE_PHASE_COPYING);
    } finally {
      await other!.release();
    }
    // With the lock free again, recovery takes the move over; before the flip it rolls back.
    await eventually(async () => {
      const move = await moveOf(m.moveId);
      expect(move.state).toBe(MoveState.MOVE_STATE_FAILED);
      expect(move.error).toBe('the process running the move stopped; rolled back');
    }, 30_000);
    expect((await gw.client.admin.locate({ clientId: m.clientId })).shard).toBe(m.source);
    await gw.client.appointments.createAppointment(appointmentInput(m.clientId, 1));
  });

  it('ends the MoveTenant stream of a move another gateway took over, from the journal', async () => {
    const m = await moveHeldAtCopying();
    const gw2 = await startTestGateway(topology);
    const mover = gw.gateway.context.mover;
    const recover = mover.recover.bind(mover);
    // This gateway's recovery stays out of it, so the other one takes the move over.
    mover.recover = () => Promise.resolve();
    try {
      await dropLockConnection(m.moveId);
      const held = await trySessionLock(topology.catalogUrl, `shardgate:move:${m.moveId}`);
      m.release();
      await mover.idle(); // stopped: the lock is someone else's
      await held!.release();
      await gw2.gateway.context.mover.recover();
      await gw2.gateway.context.mover.idle();
      expect((await moveOf(m.moveId)).state).toBe(MoveState.MOVE_STATE_FAILED);
      // Nothing of that happened in this process: the stream learns it from the journal.
      const states = await Promise.race([
        m.rest,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('the MoveTenant stream did not end')), 10_000),
        ),
      ]);
      expect(states.at(-1)).toBe(MoveState.MOVE_STATE_FAILED);
    } finally {
      mover.recover = recover;
      await gw2.close();
    }
  });

  it('ends a Rebalance stream whose move another gateway took over, with finished reaching total', async () => {
    // A topology of its own, so the drained shard holds just this client and the plan one move.
    const own = await createTestTopology(2);
    const ownFailpoints = new Failpoints();
    const g1 = await startGatewayWithFailpoints(own, ownFailpoints);
    const g2 = await startTestGateway(own);
    const mover = g1.gateway.context.mover;
    mover.recover = () => Promise.resolve(); // g1's recovery stays out of it: g2 takes the move
    try {
      const clientId = freshClientId('lock-loss');
      const { tenant } = await g1.client.tenants.createTenant({ clientId });
      await g1.client.appointments.createAppointment(appointmentInput(clientId, 0));
      await g1.client.admin.drainShard({ name: tenant!.shard });
      const gate = ownFailpoints.hold('move.copying');
      const streamed = (async () => {
        const seen: { state: MoveState; finished: number; total: number }[] = [];
        for await (const msg of g1.client.admin.rebalance({ maxConcurrentMoves: 1, limit: 0 })) {
          if (msg.move)
            seen.push({ state: msg.move.state, finished: msg.finished, total: msg.total });
        }
        return seen;
      })();
      streamed.catch(() => undefined);
      await gate.reached;
      const moveId = (await g1.client.admin.listMoves({ clientId })).moves[0]!.id;
      await withPg(own.catalogUrl, (c) =>
        c.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
           WHERE application_name = 'shardgate-lock' AND datname = current_database()`,
        ),
      );
      const held = await eventually(async () => {
        const lock = await trySessionLock(own.catalogUrl, `shardgate:move:${moveId}`);
        expect(lock).toBeDefined();
        return lock!;
      });
      gate.release();
      await mover.idle(); // the run here stopped: the lock is someone else's
      await held.release();
      await g2.gateway.context.mover.recover();
      await g2.gateway.context.mover.idle();
      const seen = await Promise.race([
        streamed,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('the Rebalance stream did not end')), 10_000),
        ),
      ]);
      expect(seen.at(-1)).toEqual({ state: MoveState.MOVE_STATE_FAILED, finished: 1, total: 1 });
      expect(seen.filter((m) => m.state !== MoveState.MOVE_STATE_RUNNING)).toHaveLength(1);
    } finally {
      await g1.gateway.context.mover.idle();
      await Promise.all([g1.close(), g2.close()]);
    }
  });

  it('takes its lock again after a catalog failover that outlasts the first try, and finishes', async () => {
    const own = await createTestTopology(2);
    const proxy = await startFreezableProxy(own.catalogUrl);
    const ownFailpoints = new Failpoints();
    const g = await startGatewayWithFailpoints({ ...own, catalogUrl: proxy.url }, ownFailpoints);
    try {
      const clientId = freshClientId('lock-loss');
      const { tenant } = await g.client.tenants.createTenant({ clientId });
      await g.client.appointments.createAppointment(appointmentInput(clientId, 0));
      const target = tenant!.shard === 'shard-1' ? 'shard-2' : 'shard-1';
      const gate = ownFailpoints.hold('move.copying');
      const streamed = (async () => {
        let last: MoveState | undefined;
        for await (const { move } of g.client.admin.moveTenant({ clientId, toShard: target }))
          last = move!.state;
        return last;
      })();
      streamed.catch(() => undefined);
      await gate.reached;
      // The catalog fails over: every connection to it ends (the lock's too), and the new
      // address does not answer for longer than one try at taking the lock takes.
      proxy.sever();
      proxy.freeze();
      gate.release();
      await new Promise((r) => setTimeout(r, LOCK_TIMEOUT_MS + 1_500));
      proxy.thaw();
      expect(await streamed).toBe(MoveState.MOVE_STATE_SUCCEEDED);
      expect((await g.client.admin.locate({ clientId })).shard).toBe(target);
    } finally {
      proxy.thaw();
      await g.gateway.context.mover.idle();
      await g.close();
      await proxy.close();
    }
  }, 60_000);
});
