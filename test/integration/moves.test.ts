import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MovePhase, MoveState, type Move } from '../../src/gen/shardgate/v1/admin.js';
import {
  createTestTopology,
  freshClientId,
  startTestGateway,
  statusOf,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

async function moveTo(gw: TestGateway, clientId: string, toShard: string): Promise<Move[]> {
  const seen: Move[] = [];
  for await (const { move } of gw.client.admin.moveTenant({ clientId, toShard })) seen.push(move!);
  return seen;
}

async function leftovers(url: string): Promise<{ pubs: number; subs: number; slots: number }> {
  return withPg(url, async (c) => {
    const one = async (sql: string): Promise<number> => Number((await c.query(sql)).rows[0].n);
    return {
      pubs: await one(`SELECT count(*) AS n FROM pg_publication WHERE pubname LIKE 'sg_move_%'`),
      subs: await one(
        `SELECT count(*) AS n FROM pg_subscription WHERE subname LIKE 'sg_move_%' AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      ),
      slots: await one(
        `SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name LIKE 'sg_move_%' AND database = current_database()`,
      ),
    };
  });
}

async function schemaOn(url: string, schema: string): Promise<boolean> {
  return withPg(
    url,
    async (c) =>
      (await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).rowCount === 1,
  );
}

describe('MoveTenant', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(topology);
  });
  afterAll(async () => {
    await gw?.gateway.context.mover.idle();
    await gw?.close();
  });

  const urlOf = (shard: string): string => topology.shards.find((s) => s.name === shard)!.url;

  it('moves a client with its data, flips the placement and leaves nothing behind', async () => {
    const clientId = freshClientId('mover');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    const from = tenant!.shard;
    const to = topology.shards.find((s) => s.name !== from)!.name;
    for (let i = 0; i < 25; i++) {
      await gw.client.appointments.createAppointment({
        clientId,
        appointment: {
          id: '',
          clientPhone: '555-0100',
          scheduledAt: new Date(1_800_000_000_000 + i),
          serviceType: 'tune-up',
          status: 0,
        },
      });
    }
    await gw.client.state.putState({ clientId, document: { season: 'winter' } });

    const progress = await moveTo(gw, clientId, to);
    const last = progress.at(-1)!;
    expect(last.state).toBe(MoveState.MOVE_STATE_SUCCEEDED);
    expect(last.phase).toBe(MovePhase.MOVE_PHASE_DONE);
    expect(progress.map((m) => m.phase)).toEqual(
      expect.arrayContaining([MovePhase.MOVE_PHASE_COPYING, MovePhase.MOVE_PHASE_CUTOVER]),
    );
    expect(last.writePauseMs).toBeGreaterThanOrEqual(0);

    const located = await gw.client.admin.locate({ clientId });
    expect(located.shard).toBe(to);
    expect(located.placementDiffers).toBe(true);
    // The flip bumped the placement's epoch once, from the 1 every new tenant starts at.
    expect(tenant!.placementEpoch).toBe(1);
    expect(located.placementEpoch).toBe(2);
    const list = await gw.client.appointments.listAppointments({ clientId, pageSize: 100 });
    expect(list.appointments).toHaveLength(25);
    const { state } = await gw.client.state.getState({ clientId });
    expect(state).toMatchObject({ document: { season: 'winter' }, version: 1 });
    const schema = tenant!.schema;
    expect(await schemaOn(urlOf(from), schema)).toBe(false);
    expect(await schemaOn(urlOf(to), schema)).toBe(true);
    expect(await leftovers(urlOf(from))).toEqual({ pubs: 0, subs: 0, slots: 0 });
    expect(await leftovers(urlOf(to))).toEqual({ pubs: 0, subs: 0, slots: 0 });
    const { move } = await gw.client.admin.getMove({ id: last.id });
    expect(move!.state).toBe(MoveState.MOVE_STATE_SUCCEEDED);
  });

  it('refuses a move to the shard the client is on, to an unknown shard, and of an unknown client', async () => {
    const clientId = freshClientId('mover');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    expect(await statusOf(moveTo(gw, clientId, tenant!.shard))).toBe(Status.FAILED_PRECONDITION);
    expect(await statusOf(moveTo(gw, clientId, 'no-such-shard'))).toBe(Status.NOT_FOUND);
    expect(await statusOf(moveTo(gw, freshClientId('ghost'), tenant!.shard))).toBe(
      Status.NOT_FOUND,
    );
  });
});
