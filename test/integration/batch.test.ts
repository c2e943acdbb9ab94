import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppointmentStatus, type Appointment } from '../../src/gen/shardgate/v1/appointment.js';
import type { Handoff } from '../../src/gen/shardgate/v1/handoff.js';
import { startWatch } from '../support/handoff-watch.js';
import {
  createTestTopology,
  errorOf,
  freshClientId,
  startTestGateway,
  statusOf,
  type TestGateway,
} from '../support/harness.js';

const appointment = (i: number): Appointment => ({
  id: '',
  clientPhone: `555-01${String(i % 100).padStart(2, '0')}`,
  scheduledAt: new Date(Date.UTC(2031, 0, 1) + i * 60_000),
  serviceType: `service-${i}`,
  status: AppointmentStatus.APPOINTMENT_STATUS_UNSPECIFIED,
});

const handoff = (i: number): Handoff => ({
  id: '',
  fromAgent: 'intake',
  toAgent: i % 2 === 0 ? 'dispatch' : 'billing',
  version: 1,
  summary: { ticket: i, notes: ['a', { nested: true }] },
});

describe('Batch* RPCs', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(await createTestTopology());
  });
  afterAll(async () => gw?.close());

  async function newClient(): Promise<string> {
    const clientId = freshClientId('batch');
    await gw.client.tenants.createTenant({ clientId });
    return clientId;
  }

  it('creates 250 appointments in one call, returned in request order and all listed', async () => {
    const clientId = await newClient();
    const items = Array.from({ length: 250 }, (_, i) => appointment(i));
    const { appointments } = await gw.client.appointments.batchCreateAppointments({
      clientId,
      appointments: items,
    });
    expect(appointments.map((a) => a.serviceType)).toEqual(items.map((a) => a.serviceType));
    expect(
      appointments.every((a) => a.status === AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED),
    ).toBe(true);
    expect(new Set(appointments.map((a) => a.id)).size).toBe(250);
    const listed = await gw.client.appointments.listAppointments({ clientId, pageSize: 1000 });
    expect(listed.appointments.map((a) => a.id)).toEqual(appointments.map((a) => a.id));
  });

  it('is atomic: one bad item fails the call naming its index, and nothing is stored', async () => {
    const clientId = await newClient();
    const items = Array.from({ length: 10 }, (_, i) => appointment(i));
    items[7] = { ...items[7]!, clientPhone: "'); DROP TABLE x; --" };
    const err = await errorOf(
      gw.client.appointments.batchCreateAppointments({ clientId, appointments: items }),
    );
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toContain('appointments[7].client_phone');
    expect((await gw.client.appointments.listAppointments({ clientId })).appointments).toEqual([]);
  });

  it('refuses an empty batch, more than 1000 items, and an unknown client', async () => {
    const clientId = await newClient();
    expect(
      await statusOf(
        gw.client.appointments.batchCreateAppointments({ clientId, appointments: [] }),
      ),
    ).toBe(Status.INVALID_ARGUMENT);
    const tooMany = Array.from({ length: 1001 }, (_, i) => appointment(i));
    expect(
      await statusOf(
        gw.client.appointments.batchCreateAppointments({ clientId, appointments: tooMany }),
      ),
    ).toBe(Status.INVALID_ARGUMENT);
    expect(
      await statusOf(
        gw.client.handoffs.batchAppendHandoffs({
          clientId: freshClientId('ghost'),
          handoffs: [handoff(1)],
        }),
      ),
    ).toBe(Status.NOT_FOUND);
  });

  describe('BatchGetAppointments', () => {
    it('returns every requested appointment in request order, repeats answered in place', async () => {
      const clientId = await newClient();
      const { appointments: made } = await gw.client.appointments.batchCreateAppointments({
        clientId,
        appointments: Array.from({ length: 300 }, (_, i) => appointment(i)),
      });
      const ids = [...made.map((a) => a.id)].reverse();
      ids.splice(5, 0, ids[0]!, ids[0]!); // the same id three times
      ids.push(made[42]!.id.toUpperCase()); // a UUID in capitals names the same appointment
      const { appointments } = await gw.client.appointments.batchGetAppointments({ clientId, ids });
      const byId = new Map(made.map((a) => [a.id, a]));
      expect(appointments).toEqual(ids.map((id) => byId.get(id.toLowerCase())));
      expect(appointments).toHaveLength(303);
    });

    it('is all or none: missing ids or another client’s ids fail NOT_FOUND, naming them', async () => {
      const [clientId, other] = [await newClient(), await newClient()];
      const own = (
        await gw.client.appointments.batchCreateAppointments({
          clientId,
          appointments: [appointment(1), appointment(2)],
        })
      ).appointments.map((a) => a.id);
      const theirs = (
        await gw.client.appointments.createAppointment({
          clientId: other,
          appointment: appointment(3),
        })
      ).appointment!.id;
      const err = await errorOf(
        gw.client.appointments.batchGetAppointments({ clientId, ids: [own[0]!, theirs, own[1]!] }),
      );
      expect(err.code).toBe(Status.NOT_FOUND);
      expect(err.details).toContain(theirs);
      expect(err.details).not.toContain(own[0]!);
      // Many missing ids: five are named, the rest counted, so the message stays short.
      const missing = Array.from({ length: 40 }, () => crypto.randomUUID());
      const many = await errorOf(
        gw.client.appointments.batchGetAppointments({ clientId, ids: missing }),
      );
      expect(many.code).toBe(Status.NOT_FOUND);
      expect(many.details).toContain(`${missing[4]} and 35 more`);
      expect(many.details).not.toContain(missing[5]!);
    });

    it('refuses an empty list, more than 1000 ids, a malformed id (naming it) and an unknown client', async () => {
      const clientId = await newClient();
      const get = (ids: string[], id = clientId) =>
        gw.client.appointments.batchGetAppointments({ clientId: id, ids });
      expect(await statusOf(get([]))).toBe(Status.INVALID_ARGUMENT);
      const tooMany = Array.from({ length: 1001 }, () => crypto.randomUUID());
      expect(await statusOf(get(tooMany))).toBe(Status.INVALID_ARGUMENT);
      const bad = await errorOf(get([crypto.randomUUID(), 'not-a-uuid']));
      expect(bad.code).toBe(Status.INVALID_ARGUMENT);
      expect(bad.details).toContain('ids[1]');
      expect(await statusOf(get([crypto.randomUUID()], freshClientId('ghost')))).toBe(
        Status.NOT_FOUND,
      );
    });
  });

  it('appends handoffs in one call; each reaches a watcher, in order', async () => {
    const clientId = await newClient();
    const watch = await startWatch(gw.client.handoffs, { clientId, toAgent: 'dispatch' });
    try {
      const items = Array.from({ length: 40 }, (_, i) => handoff(i));
      const { handoffs } = await gw.client.handoffs.batchAppendHandoffs({
        clientId,
        handoffs: items,
      });
      expect(handoffs.map((h) => h.summary)).toEqual(items.map((h) => h.summary));
      const toDispatch = handoffs.filter((h) => h.toAgent === 'dispatch').map((h) => h.id);
      const seen = await watch.waitForCount(toDispatch.length);
      expect(seen.map((h) => h.id).sort()).toEqual([...toDispatch].sort());
      // One created_at for the whole batch; the latest is still the last one to that agent.
      const latest = await gw.client.handoffs.getLatestHandoff({ clientId, toAgent: 'billing' });
      expect(latest.handoff!.id).toBe(handoffs[39]!.id);
    } finally {
      watch.cancel();
    }
  });

  it('refuses a handoff batch with one bad summary, naming its index, and stores nothing', async () => {
    const clientId = await newClient();
    const items = [handoff(0), { ...handoff(1), summary: { bad: 'a\u0000b' } }];
    const err = await errorOf(
      gw.client.handoffs.batchAppendHandoffs({ clientId, handoffs: items }),
    );
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toContain('handoffs[1].summary');
    expect((await gw.client.handoffs.listHandoffs({ clientId })).handoffs).toEqual([]);
  });
});
