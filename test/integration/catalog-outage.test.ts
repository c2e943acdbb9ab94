import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFreezableProxy, type FreezableProxy } from '../support/freezable-proxy.js';
import {
  createTestTopology,
  errorOf,
  eventually,
  freshClientId,
  startTestGateway,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';
import { appointmentInput, moveTo } from '../support/move-helpers.js';

/**
 * The catalog goes away for a while (a restart, a failover whose new address does not answer
 * yet): a gateway keeps serving the clients whose placement it knows, fails what needs the
 * catalog within the caller's deadline, and, once the catalog is back, follows what changed while
 * it could not listen (here a move made through another gateway).
 */
describe('a catalog that goes away for a while', () => {
  let topology: TestTopology;
  let proxy: FreezableProxy;
  let cut: TestGateway; // reaches the catalog through the proxy
  let strict: TestGateway; // the same, with no grace: its caches are dropped with the feed
  let other: TestGateway;

  beforeAll(async () => {
    topology = await createTestTopology(2);
    proxy = await startFreezableProxy(topology.catalogUrl);
    cut = await startTestGateway({ ...topology, catalogUrl: proxy.url });
    strict = await startTestGateway(
      { ...topology, catalogUrl: proxy.url },
      { catalog: { feedLossGraceMs: 0 } },
    );
    other = await startTestGateway(topology);
  });
  afterAll(async () => {
    proxy?.thaw();
    await other?.gateway.context.mover.idle();
    await Promise.all([cut?.close(), strict?.close(), other?.close()]);
    await proxy?.close();
  });

  it('serves known clients meanwhile and follows a move made elsewhere once it is back', async () => {
    const clientId = freshClientId('outage');
    const { tenant } = await cut.client.tenants.createTenant({ clientId });
    const { appointment } = await cut.client.appointments.createAppointment(
      appointmentInput(clientId, 0),
    );
    const target = tenant!.shard === 'shard-1' ? 'shard-2' : 'shard-1';
    await strict.client.appointments.getAppointment({ clientId, id: appointment!.id });
    // Cached, and past the creation's NOTIFY, which drops the entry when it comes in late.
    await new Promise((r) => setTimeout(r, 200));
    await eventually(async () => {
      await cut.client.appointments.getAppointment({ clientId, id: appointment!.id });
      expect(cut.gateway.context.router.cached(clientId)).toBeDefined();
    });

    proxy.sever();
    proxy.freeze();
    try {
      // Without a grace, even a known client needs the catalog once the feed is seen lost.
      await eventually(async () => expect(strict.gateway.context.catalog.watching).toBe(false));
      const strictRead = await errorOf(
        strict.client.appointments.getAppointment(
          { clientId, id: appointment!.id },
          { deadline: 1_000 },
        ),
      );
      expect(strictRead.code).toBe(Status.DEADLINE_EXCEEDED);

      // Within the grace the client's placement is known: reads and writes go on.
      await eventually(async () => expect(cut.gateway.context.catalog.watching).toBe(false));
      const read = await cut.client.appointments.getAppointment(
        { clientId, id: appointment!.id },
        { deadline: 5_000 },
      );
      expect(read.appointment).toEqual(appointment);
      await cut.client.appointments.createAppointment(appointmentInput(clientId, 1), {
        deadline: 5_000,
      });
      // A new client needs the catalog: the call ends by its deadline, not hanging on.
      const started = Date.now();
      const refused = await errorOf(
        cut.client.tenants.createTenant({ clientId: freshClientId('outage') }, { deadline: 1_500 }),
      );
      expect([Status.DEADLINE_EXCEEDED, Status.UNAVAILABLE]).toContain(refused.code);
      expect(Date.now() - started).toBeLessThan(5_000);

      // Meanwhile another gateway moves the client; this one cannot hear of it.
      await moveTo(other.client, clientId, target);
    } finally {
      proxy.thaw();
    }

    // Back: it reads the client on its new shard (the old copy is gone), and writes there.
    await eventually(async () => {
      const { appointments } = await cut.client.appointments.listAppointments({ clientId });
      expect(appointments).toHaveLength(2);
    }, 20_000);
    await cut.client.appointments.createAppointment(appointmentInput(clientId, 2));
    expect(
      (await other.client.appointments.listAppointments({ clientId })).appointments,
    ).toHaveLength(3);
    // And its change feed is back: what it caches from now on is kept up to date again.
    await eventually(async () => expect(cut.gateway.context.catalog.watching).toBe(true), 15_000);
  }, 90_000);

  it('stops using its caches when the grace ends while the catalog is still away', async () => {
    const graceMs = 1_500;
    const short = await startTestGateway(
      { ...topology, catalogUrl: proxy.url },
      { catalog: { feedLossGraceMs: graceMs } },
    );
    try {
      const clientId = freshClientId('grace');
      await short.client.tenants.createTenant({ clientId });
      const read = () => short.client.state.getState({ clientId }, { deadline: 1_000 });
      // Cached, and past the creation's NOTIFY, which drops the entry when it comes in late.
      await new Promise((r) => setTimeout(r, 200));
      await eventually(async () => {
        await read();
        expect(short.gateway.context.router.cached(clientId)).toBeDefined();
      });
      proxy.sever();
      proxy.freeze();
      await eventually(async () => expect(short.gateway.context.catalog.watching).toBe(false));
      const lostAt = Date.now();
      expect((await read()).state?.version).toBe(0);
      await new Promise((r) => setTimeout(r, Math.max(0, lostAt + graceMs - Date.now()) + 100));
      expect((await errorOf(read())).code).toBe(Status.DEADLINE_EXCEEDED);
    } finally {
      proxy.thaw();
      await short.close();
    }
  }, 60_000);
});
