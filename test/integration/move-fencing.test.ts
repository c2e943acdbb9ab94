import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Failpoints } from '../../src/core/failpoints.js';
import type { ClientId } from '../../src/core/ids.js';
import { MoveState } from '../../src/gen/shardgate/v1/admin.js';
import { ensureClientSchema } from '../../src/shards/client-schema.js';
import { installFence } from '../../src/shards/replication.js';
import {
  createTestTopology,
  freshClientId,
  startTestGateway,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';
import {
  appointmentInput,
  catalogPlacements,
  clientSchemasIn,
  countRows,
  eventually,
  handoffInput,
  idsIn,
  moveTo,
  shardUrl,
  sleep,
  startGatewayWithFailpoints,
  strayState,
} from '../support/move-helpers.js';

/** A promise with a flag telling whether it has settled yet. */
function tracked<T>(p: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  const promise = p.finally(() => (done = true));
  promise.catch(() => undefined);
  return { promise, settled: () => done };
}

describe('fencing: no write lands on a copy the client is leaving', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  let gw2: TestGateway;
  const failpoints = new Failpoints();

  beforeAll(async () => {
    topology = await createTestTopology(2);
    gw = await startGatewayWithFailpoints(topology, failpoints);
    gw2 = await startTestGateway(topology);
  });
  afterAll(async () => {
    await gw?.gateway.context.mover.idle();
    await Promise.all([gw?.close(), gw2?.close()]);
  });

  async function seeded(): Promise<{
    clientId: string;
    schema: string;
    source: string;
    target: string;
  }> {
    const clientId = freshClientId('fence');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    await gw.client.appointments.createAppointment(appointmentInput(clientId, 0));
    await gw.client.handoffs.appendHandoff(handoffInput(clientId, 0));
    await gw.client.state.putState({ clientId, document: { v: 0 } });
    const source = tenant!.shard;
    return {
      clientId,
      schema: tenant!.schema,
      source,
      target: topology.shards.find((s) => s.name !== source)!.name,
    };
  }

  it('a write refused by the fence waits, never lands on the source, and completes on the shard the catalog flips to', async () => {
    // Regression: a write the fence refused was retried three times at once and then failed
    // UNAVAILABLE when the directory did not change in those few milliseconds.
    const c = await seeded();
    await gw.client.state.getState({ clientId: c.clientId }); // the gateway caches the placement
    const pools = gw.gateway.context.pools;
    await installFence(pools.get(c.source), c.schema);

    const appointment = tracked(
      gw.client.appointments.createAppointment(appointmentInput(c.clientId, 1)),
    );
    const handoff = tracked(gw.client.handoffs.appendHandoff(handoffInput(c.clientId, 1)));
    const patch = tracked(
      gw.client.state.patchState({ clientId: c.clientId, patch: { v: 1 }, expectedVersion: 1 }),
    );
    await sleep(600);
    expect([appointment.settled(), handoff.settled(), patch.settled()]).toEqual([
      false,
      false,
      false,
    ]);
    // Reads are not fenced.
    expect((await gw.client.state.getState({ clientId: c.clientId })).state).toMatchObject({
      document: { v: 0 },
      version: 1,
    });

    // The target gets a schema of its own and the data the source had (a move's copy, done by hand).
    await ensureClientSchema(pools.get(c.target), c.schema);
    const targetUrl = shardUrl(topology, c.target);
    const sourceUrl = shardUrl(topology, c.source);
    await withPg(targetUrl, (t) =>
      t.query(`UPDATE "${c.schema}".state SET document = '{"v": 0}', version = 1`),
    );
    await withPg(topology.catalogUrl, (cat) =>
      cat.query('UPDATE shardgate.tenants SET shard = $2 WHERE client_id = $1', [
        c.clientId,
        c.target,
      ]),
    );

    const [a, h, p] = await Promise.all([appointment.promise, handoff.promise, patch.promise]);
    expect(p.state).toMatchObject({ document: { v: 1 }, version: 2 });
    expect(await idsIn(targetUrl, c.schema, 'appointments')).toEqual([a.appointment!.id]);
    expect(await idsIn(targetUrl, c.schema, 'handoffs')).toEqual([h.handoff!.id]);
    expect(await idsIn(sourceUrl, c.schema, 'appointments')).not.toContain(a.appointment!.id);
    expect(await countRows(sourceUrl, c.schema, 'appointments')).toBe(1);
    expect(await countRows(sourceUrl, c.schema, 'handoffs')).toBe(1);
    await withPg(sourceUrl, (s) => s.query(`DROP SCHEMA "${c.schema}" CASCADE`));
  });

  it('a gateway that never hears of the move writes on throughout: refused at the source, it follows to the target, no errors', async () => {
    const c = await seeded();
    const acked: string[] = [];
    const errors: unknown[] = [];
    await gw2.client.state.getState({ clientId: c.clientId });
    // No gateway is told of any directory change from here on: gw2 keeps routing by its cache.
    await withPg(topology.catalogUrl, (cat) =>
      cat.query('ALTER TABLE shardgate.tenants DISABLE TRIGGER tenants_notify'),
    );
    try {
      let moving = true;
      const writer = (async () => {
        for (let n = 1; moving || n < 5; n++) {
          try {
            const { appointment } = await gw2.client.appointments.createAppointment(
              appointmentInput(c.clientId, n),
            );
            acked.push(appointment!.id);
          } catch (err) {
            errors.push(err);
          }
        }
      })();
      await sleep(100);
      const progress = await moveTo(gw.client, c.clientId, c.target);
      expect(progress.at(-1)?.state).toBe(MoveState.MOVE_STATE_SUCCEEDED);
      await sleep(200);
      moving = false;
      await writer;
      expect(gw2.gateway.context.router.cached(c.clientId)?.shard).toBe(c.target);
    } finally {
      await withPg(topology.catalogUrl, (cat) =>
        cat.query('ALTER TABLE shardgate.tenants ENABLE TRIGGER tenants_notify'),
      );
    }
    expect(errors).toEqual([]);
    expect(acked.length).toBeGreaterThan(5);
    const onTarget = await idsIn(shardUrl(topology, c.target), c.schema, 'appointments');
    expect(onTarget).toHaveLength(acked.length + 1);
    expect(new Set(onTarget).size).toBe(onTarget.length);
    for (const id of acked) expect(onTarget).toContain(id);
    expect(await clientSchemasIn(shardUrl(topology, c.source))).not.toContain(c.schema);
    expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
  });

  /** Holds a source table as a long write would, so the move's fence (and its cutover) waits. */
  async function holdTable(
    url: string,
    schema: string,
    table: string,
  ): Promise<{ release(): Promise<void> }> {
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query(`LOCK TABLE "${schema}"."${table}" IN ROW EXCLUSIVE MODE`);
    return {
      async release() {
        await holder.query('COMMIT');
        await holder.end();
      },
    };
  }

  /**
   * Starts a move through `gw`, runs `beforePause` when the move reaches its cutover (held there by
   * a failpoint), and returns once the client's writes are paused and gw knows it.
   */
  async function moveUntilPaused(
    c: { clientId: string },
    target: string,
    beforePause: () => Promise<void>,
  ) {
    const gate = failpoints.hold('move.cutover');
    const moving = tracked(moveTo(gw.client, c.clientId, target));
    await gate.reached;
    try {
      await beforePause();
    } finally {
      gate.release();
    }
    await eventually(async () => {
      const p = (await catalogPlacements(topology.catalogUrl)).find(
        (x) => x.clientId === c.clientId,
      );
      expect(p?.writesPaused).toBe(true);
    });
    await eventually(async () => {
      const placement = await gw.gateway.context.router.resolve(c.clientId as ClientId);
      expect(placement.writesPaused).toBe(true);
    });
    return moving;
  }

  it('writes made while writes are paused wait and then succeed on the new shard; reads go on meanwhile', async () => {
    const c = await seeded();
    let hold: { release(): Promise<void> } | undefined;
    let moving: ReturnType<typeof tracked<Awaited<ReturnType<typeof moveTo>>>>;
    const started = performance.now();
    let writes: ReturnType<typeof tracked<unknown[]>>;
    try {
      // A writer holding the source table makes the fence (CREATE TRIGGER) wait: the move sits in
      // its cutover with writes paused.
      moving = await moveUntilPaused(c, c.target, async () => {
        hold = await holdTable(shardUrl(topology, c.source), c.schema, 'handoffs');
      });
      const sentAt = performance.now();
      writes = tracked(
        Promise.all([
          gw.client.appointments
            .createAppointment(appointmentInput(c.clientId, 1))
            .then((r) => ({ r, ms: performance.now() - sentAt })),
          gw.client.handoffs.appendHandoff(handoffInput(c.clientId, 1)),
          gw.client.state.putState({
            clientId: c.clientId,
            document: { v: 1 },
            expectedVersion: 1,
          }),
        ]),
      );
      // Reads answer at once from the source during the pause.
      const readStart = performance.now();
      expect((await gw.client.state.getState({ clientId: c.clientId })).state).toMatchObject({
        document: { v: 0 },
        version: 1,
      });
      expect(
        (await gw.client.appointments.listAppointments({ clientId: c.clientId, pageSize: 10 }))
          .appointments,
      ).toHaveLength(1);
      expect(
        (await gw.client.handoffs.getLatestHandoff({ clientId: c.clientId, toAgent: 'dispatch' }))
          .handoff?.version,
      ).toBe(0);
      expect(performance.now() - readStart).toBeLessThan(1_000);
      await sleep(500);
      expect(writes.settled()).toBe(false);
    } finally {
      await hold?.release();
    }
    const progress = await moving.promise;
    const last = progress.at(-1)!;
    expect(last.state).toBe(MoveState.MOVE_STATE_SUCCEEDED);
    expect(last.writePauseMs).toBeGreaterThanOrEqual(500);
    expect(last.writePauseMs).toBeLessThan(performance.now() - started);
    const [first, h, s] = (await writes.promise) as [
      { r: { appointment?: { id: string } }; ms: number },
      { handoff?: { id: string } },
      { state?: { version: number } },
    ];
    expect(first.ms).toBeGreaterThanOrEqual(450);
    expect(s.state?.version).toBe(2);
    const targetUrl = shardUrl(topology, c.target);
    expect(await idsIn(targetUrl, c.schema, 'appointments')).toContain(first.r.appointment!.id);
    expect(await countRows(targetUrl, c.schema, 'appointments')).toBe(2);
    expect(await idsIn(targetUrl, c.schema, 'handoffs')).toContain(h.handoff!.id);
    expect(await countRows(targetUrl, c.schema, 'handoffs')).toBe(2);
    expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
  });

  it('writes held by a cutover that then fails resume on the source, without an error', async () => {
    const c = await seeded();
    failpoints.arm('move.cutover.verified', 'error');
    let hold: { release(): Promise<void> } | undefined;
    let moving: ReturnType<typeof tracked<Awaited<ReturnType<typeof moveTo>>>>;
    let write: ReturnType<typeof tracked<unknown>>;
    try {
      moving = await moveUntilPaused(c, c.target, async () => {
        hold = await holdTable(shardUrl(topology, c.source), c.schema, 'handoffs');
      });
      write = tracked(gw.client.appointments.createAppointment(appointmentInput(c.clientId, 1)));
      await sleep(300);
      expect(write.settled()).toBe(false);
    } finally {
      await hold?.release();
    }
    try {
      expect((await moving.promise).at(-1)?.state).toBe(MoveState.MOVE_STATE_FAILED);
    } finally {
      failpoints.disarm('move.cutover.verified');
    }
    const { appointment } = (await write.promise) as { appointment?: { id: string } };
    expect(await idsIn(shardUrl(topology, c.source), c.schema, 'appointments')).toContain(
      appointment!.id,
    );
    expect((await gw.client.admin.locate({ clientId: c.clientId })).shard).toBe(c.source);
    expect(await strayState(topology.catalogUrl, topology.shards)).toEqual([]);
  });
});
