import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppointmentStatus, type Appointment } from '../../src/gen/shardgate/v1/appointment.js';
import type { Handoff } from '../../src/gen/shardgate/v1/handoff.js';
import type { Tenant } from '../../src/gen/shardgate/v1/tenant.js';
import {
  createTestTopology,
  freshClientId,
  statusOf,
  startTestGateway,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

interface Written {
  appointment: Appointment;
  handoff: Handoff;
}

describe('tenant isolation', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  /** Tenants grouped by the shard the ring put them on; one shard gets 3, the other at least 1. */
  const byShard = new Map<string, Tenant[]>();

  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(topology);
    // Create tenants until one shard holds two and the other at least one.
    for (let i = 0; i < 60; i++) {
      const { tenant } = await gw.client.tenants.createTenant({ clientId: freshClientId('iso') });
      byShard.set(tenant!.shard, [...(byShard.get(tenant!.shard) ?? []), tenant!]);
      const sizes = [...byShard.values()].map((t) => t.length).sort((x, y) => x - y);
      if (sizes.length === 2 && sizes[0]! >= 1 && sizes[1]! >= 3) break;
    }
  });
  afterAll(async () => gw?.close());

  /** Disjoint pairs, so each test starts from empty schemas. */
  function pairs(): { sameShard: [Tenant, Tenant]; crossShard: [Tenant, Tenant] } {
    const groups = [...byShard.values()].sort((a, b) => b.length - a.length);
    const [big, small] = groups;
    if (!big || !small || big.length < 3)
      throw new Error('the ring put (nearly) every tenant on one shard');
    return { sameShard: [big[0]!, big[1]!], crossShard: [small[0]!, big[2]!] };
  }

  function shardUrl(shard: string): string {
    return topology.shards.find((s) => s.name === shard)!.url;
  }

  async function writeFor(clientId: string, tag: string): Promise<Written> {
    const { appointment } = await gw.client.appointments.createAppointment({
      clientId,
      appointment: {
        clientPhone: '+1 555 0100',
        scheduledAt: new Date('2030-01-02T10:00:00.000Z'),
        serviceType: `repair-${tag}`,
        status: AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED,
      },
    });
    const { handoff } = await gw.client.handoffs.appendHandoff({
      clientId,
      handoff: { fromAgent: 'intake', toAgent: 'dispatch', version: 1, summary: { tag } },
    });
    await gw.client.state.putState({ clientId, document: { owner: tag } });
    return { appointment: appointment!, handoff: handoff! };
  }

  /** Rows in a schema, read directly on its shard. */
  async function rowsIn(
    tenant: Tenant,
  ): Promise<{ appointments: string[]; handoffs: string[]; state: unknown }> {
    return withPg(shardUrl(tenant.shard), async (c) => {
      const s = `"${tenant.schema}"`;
      const a = await c.query<{ id: string }>(`SELECT id FROM ${s}.appointments ORDER BY id`);
      const h = await c.query<{ id: string }>(`SELECT id FROM ${s}.handoffs ORDER BY id`);
      const st = await c.query<{ document: unknown }>(`SELECT document FROM ${s}.state`);
      return {
        appointments: a.rows.map((r) => r.id),
        handoffs: h.rows.map((r) => r.id),
        state: st.rows[0]!.document,
      };
    });
  }

  async function expectInvisible(other: Tenant, owner: Written): Promise<void> {
    const clientId = other.clientId;
    expect((await gw.client.appointments.listAppointments({ clientId })).appointments).toEqual([]);
    expect(
      await statusOf(gw.client.appointments.getAppointment({ clientId, id: owner.appointment.id })),
    ).toBe(Status.NOT_FOUND);
    expect(
      await statusOf(
        gw.client.appointments.updateAppointment({
          clientId,
          appointment: { id: owner.appointment.id, serviceType: 'hijacked' },
        }),
      ),
    ).toBe(Status.NOT_FOUND);
    expect(
      await statusOf(
        gw.client.appointments.cancelAppointment({ clientId, id: owner.appointment.id }),
      ),
    ).toBe(Status.NOT_FOUND);
    expect((await gw.client.handoffs.listHandoffs({ clientId })).handoffs).toEqual([]);
    expect(
      await statusOf(gw.client.handoffs.getLatestHandoff({ clientId, toAgent: 'dispatch' })),
    ).toBe(Status.NOT_FOUND);
    const { state } = await gw.client.state.getState({ clientId });
    expect(state?.version).toBe(0);
    expect(state?.document).toEqual({});
  }

  for (const kind of ['sameShard', 'crossShard'] as const) {
    it(`${kind === 'sameShard' ? 'same shard' : 'different shards'}: one client's data is invisible to the other`, async () => {
      const [a, b] = pairs()[kind];
      expect(a.shard === b.shard).toBe(kind === 'sameShard');
      expect(a.schema).not.toBe(b.schema);

      const written = await writeFor(a.clientId, `a-${kind}`);
      await expectInvisible(b, written);

      // A's data is intact after B's attempts on it.
      const { appointment } = await gw.client.appointments.getAppointment({
        clientId: a.clientId,
        id: written.appointment.id,
      });
      expect(appointment).toEqual(written.appointment);

      // Now B writes; each side sees exactly its own.
      const writtenB = await writeFor(b.clientId, `b-${kind}`);
      const listA = await gw.client.appointments.listAppointments({ clientId: a.clientId });
      const listB = await gw.client.appointments.listAppointments({ clientId: b.clientId });
      expect(listA.appointments.map((x) => x.id)).toEqual([written.appointment.id]);
      expect(listB.appointments.map((x) => x.id)).toEqual([writtenB.appointment.id]);
      expect((await gw.client.handoffs.listHandoffs({ clientId: a.clientId })).handoffs).toEqual([
        written.handoff,
      ]);
      expect((await gw.client.handoffs.listHandoffs({ clientId: b.clientId })).handoffs).toEqual([
        writtenB.handoff,
      ]);
      expect((await gw.client.state.getState({ clientId: a.clientId })).state?.document).toEqual({
        owner: `a-${kind}`,
      });
      expect((await gw.client.state.getState({ clientId: b.clientId })).state?.document).toEqual({
        owner: `b-${kind}`,
      });

      // Behind the gateway: each schema holds only its own rows.
      expect(await rowsIn(a)).toEqual({
        appointments: [written.appointment.id],
        handoffs: [written.handoff.id],
        state: { owner: `a-${kind}` },
      });
      expect(await rowsIn(b)).toEqual({
        appointments: [writtenB.appointment.id],
        handoffs: [writtenB.handoff.id],
        state: { owner: `b-${kind}` },
      });
    });
  }

  it("a page token from one client's list is refused for another client", async () => {
    const [a, b] = pairs().sameShard;
    const clientId = freshClientId('iso-pages');
    await gw.client.tenants.createTenant({ clientId });
    await writeFor(clientId, 'p1');
    await writeFor(clientId, 'p2');
    const first = await gw.client.appointments.listAppointments({ clientId, pageSize: 1 });
    expect(first.nextPageToken).not.toBe('');
    for (const other of [a, b]) {
      expect(
        await statusOf(
          gw.client.appointments.listAppointments({
            clientId: other.clientId,
            pageSize: 1,
            pageToken: first.nextPageToken,
          }),
        ),
      ).toBe(Status.INVALID_ARGUMENT);
    }
    const handoffPage = await gw.client.handoffs.listHandoffs({ clientId, pageSize: 1 });
    expect(handoffPage.nextPageToken).not.toBe('');
    expect(
      await statusOf(
        gw.client.handoffs.listHandoffs({
          clientId: a.clientId,
          pageSize: 1,
          pageToken: handoffPage.nextPageToken,
        }),
      ),
    ).toBe(Status.INVALID_ARGUMENT);
  });

  it("a watcher of one client never receives another client's handoffs on the same shard", async () => {
    const [a] = pairs().sameShard;
    const clientId = freshClientId('iso-watch');
    await gw.client.tenants.createTenant({ clientId });
    // A neighbour on the watched client's shard shares its NOTIFY channel: the hard case.
    const watched = (await gw.client.admin.locate({ clientId })).shard;
    const neighbour = byShard.get(watched)!.find((t) => t.clientId !== clientId) ?? a;
    expect(neighbour.shard).toBe(watched);

    const controller = new AbortController();
    let subscribed!: () => void;
    const header = new Promise<void>((resolve) => (subscribed = resolve));
    const stream = gw.client.handoffs.watchHandoffs(
      { clientId },
      { signal: controller.signal, onHeader: () => subscribed() },
    );
    const received: Handoff[] = [];
    const reading = (async () => {
      for await (const { handoff } of stream) {
        received.push(handoff!);
        if (handoff!.summary?.['mine'] === true) return;
      }
    })();
    const timeout = (ms: number, what: string) =>
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref(),
      );
    try {
      await Promise.race([header, reading, timeout(5_000, 'watch header')]);
      await gw.client.handoffs.appendHandoff({
        clientId: neighbour.clientId,
        handoff: { fromAgent: 'x', toAgent: 'y', version: 0, summary: { mine: false } },
      });
      const { handoff } = await gw.client.handoffs.appendHandoff({
        clientId,
        handoff: { fromAgent: 'x', toAgent: 'y', version: 0, summary: { mine: true } },
      });
      await Promise.race([reading, timeout(5_000, 'own handoff on the watch')]);
      expect(received).toEqual([handoff]);
    } finally {
      controller.abort();
      await reading.catch(() => undefined);
    }
  });
});
