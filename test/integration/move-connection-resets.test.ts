import { ClientError, Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MoveState } from '../../src/gen/shardgate/v1/admin.js';
import { behindProxies, type FreezableProxy } from '../support/freezable-proxy.js';
import {
  createTestTopology,
  eventually,
  freshClientId,
  startTestGateway,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';
import { appointmentInput, replicationLeftovers } from '../support/move-helpers.js';

/**
 * A move while the connections to the catalog and both shards are reset again and again (the
 * replication stream included: the shards reach each other through the same proxies). However
 * far it gets, the move ends succeeded or rolled back, with every acknowledged write on the shard
 * the client lives on, its writes not left paused, and no replication leftovers.
 */
describe('a move while database connections are reset', () => {
  let topology: TestTopology;
  let proxies: FreezableProxy[];
  let gw: TestGateway;

  beforeAll(async () => {
    topology = await createTestTopology(2);
    const through = await behindProxies(topology);
    proxies = through.proxies;
    gw = await startTestGateway(through.proxied);
  });
  afterAll(async () => {
    await gw?.gateway.context.mover.idle();
    await gw?.close();
    await Promise.all((proxies ?? []).map((p) => p.close()));
  });

  it('ends succeeded or rolled back, losing no acknowledged write', async () => {
    const clientId = freshClientId('move-reset');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    const target = tenant!.shard === 'shard-1' ? 'shard-2' : 'shard-1';
    const acknowledged: string[] = [];
    let n = 0;
    const write = async () => {
      try {
        const { appointment } = await gw.client.appointments.createAppointment(
          appointmentInput(clientId, n++),
        );
        acknowledged.push(appointment!.id);
      } catch (err) {
        if (!(err instanceof ClientError)) throw err;
        expect([Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.ABORTED]).toContain(err.code);
      }
    };
    for (let i = 0; i < 20; i++) await write();

    let moveId: string | undefined;
    const moving = (async () => {
      for await (const { move } of gw.client.admin.moveTenant({ clientId, toShard: target })) {
        moveId ??= move!.id;
      }
    })().catch(() => undefined); // the stream may end with the resets; the journal tells the rest
    let resetting = true;
    const writer = (async () => {
      while (resetting) await write();
    })();
    for (let round = 0; round < 12; round++) {
      await new Promise((r) => setTimeout(r, 150 + (round % 3) * 100));
      proxies[round % proxies.length]!.sever();
    }
    resetting = false;
    await writer;
    await eventually(async () => expect(moveId).toBeDefined(), 15_000);

    const finished = await eventually(async () => {
      const { move } = await gw.client.admin.getMove({ id: moveId! });
      expect(move!.state).not.toBe(MoveState.MOVE_STATE_RUNNING);
      return move!;
    }, 60_000);
    await moving;
    const lives = (await gw.client.admin.locate({ clientId })).shard;
    expect(lives).toBe(finished.state === MoveState.MOVE_STATE_SUCCEEDED ? target : tenant!.shard);
    console.log(
      `move ${MoveState[finished.state]} (${finished.error ?? 'no error'}); ${acknowledged.length} writes acknowledged`,
    );

    // Every acknowledged write is where the client lives, and it takes writes again.
    await eventually(async () => {
      await write();
      const ids: string[] = [];
      let pageToken = '';
      do {
        const page = await gw.client.appointments.listAppointments({
          clientId,
          pageSize: 500,
          pageToken,
        });
        ids.push(...page.appointments.map((a) => a.id));
        pageToken = page.nextPageToken;
      } while (pageToken !== '');
      expect(ids).toEqual(expect.arrayContaining(acknowledged));
    }, 15_000);
    for (const shard of topology.shards) {
      await eventually(async () =>
        expect(await replicationLeftovers(shard.url)).toEqual({ pubs: [], subs: [], slots: [] }),
      );
    }
  }, 120_000);
});
