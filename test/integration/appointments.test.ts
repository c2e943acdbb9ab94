import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppointmentStatus, type Appointment } from '../../src/gen/shardgate/v1/appointment.js';
import {
  createTestTopology,
  errorOf,
  freshClientId,
  startTestGateway,
  statusOf,
  type TestGateway,
} from '../support/harness.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const { SCHEDULED, CONFIRMED, COMPLETED, CANCELLED, NO_SHOW } = {
  SCHEDULED: AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED,
  CONFIRMED: AppointmentStatus.APPOINTMENT_STATUS_CONFIRMED,
  COMPLETED: AppointmentStatus.APPOINTMENT_STATUS_COMPLETED,
  CANCELLED: AppointmentStatus.APPOINTMENT_STATUS_CANCELLED,
  NO_SHOW: AppointmentStatus.APPOINTMENT_STATUS_NO_SHOW,
};

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const at = (iso: string): Date => new Date(iso);

/** The order the API promises: scheduled_at, then id (Postgres orders uuids like lowercase hex). */
function byScheduleThenId(a: Appointment, b: Appointment): number {
  const dt = a.scheduledAt!.getTime() - b.scheduledAt!.getTime();
  return dt !== 0 ? dt : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

describe('AppointmentService', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(await createTestTopology());
  });
  afterAll(async () => gw?.close());

  async function newClient(): Promise<string> {
    const clientId = freshClientId('appt');
    await gw.client.tenants.createTenant({ clientId });
    return clientId;
  }

  async function create(clientId: string, fields: Partial<Appointment> = {}): Promise<Appointment> {
    const { appointment } = await gw.client.appointments.createAppointment({
      clientId,
      appointment: {
        clientPhone: '+1 (555) 010-0000',
        scheduledAt: at('2031-01-01T09:00:00.000Z'),
        serviceType: 'furnace-repair',
        ...fields,
      },
    });
    return appointment!;
  }

  async function get(clientId: string, id: string): Promise<Appointment> {
    return (await gw.client.appointments.getAppointment({ clientId, id })).appointment!;
  }

  /** Every page of a listing, with the page sizes seen. */
  async function listAll(
    request: Parameters<TestGateway['client']['appointments']['listAppointments']>[0],
  ): Promise<{ items: Appointment[]; pageSizes: number[] }> {
    const items: Appointment[] = [];
    const pageSizes: number[] = [];
    let pageToken = '';
    do {
      const res = await gw.client.appointments.listAppointments({ ...request, pageToken });
      items.push(...res.appointments);
      pageSizes.push(res.appointments.length);
      pageToken = res.nextPageToken;
    } while (pageToken !== '');
    return { items, pageSizes };
  }

  describe('CreateAppointment and GetAppointment', () => {
    it('assigns a UUID, defaults the status to SCHEDULED and round-trips scheduled_at to the millisecond', async () => {
      const clientId = await newClient();
      const scheduledAt = at('2031-03-04T05:06:07.891Z');
      const created = await create(clientId, {
        id: 'ignored-by-the-server',
        clientPhone: '+44 20 7946 0958',
        scheduledAt,
        serviceType: 'boiler-service',
      });
      expect(created.id).toMatch(UUID);
      expect(created).toEqual({
        id: created.id,
        clientPhone: '+44 20 7946 0958',
        scheduledAt,
        serviceType: 'boiler-service',
        status: SCHEDULED,
        createdAt: created.createdAt,
        updatedAt: created.createdAt,
      });
      expect(created.scheduledAt!.getTime()).toBe(scheduledAt.getTime());
      expect(created.createdAt).toBeInstanceOf(Date);
      expect(Math.abs(created.createdAt!.getTime() - Date.now())).toBeLessThan(60_000);

      expect(await get(clientId, created.id)).toEqual(created);
      // The id is matched case-insensitively, as a UUID.
      expect(await get(clientId, created.id.toUpperCase())).toEqual(created);
    });

    it('keeps an explicit status and assigns distinct ids', async () => {
      const clientId = await newClient();
      const a = await create(clientId, { status: CONFIRMED });
      const b = await create(clientId, { status: NO_SHOW });
      expect(a.status).toBe(CONFIRMED);
      expect(b.status).toBe(NO_SHOW);
      expect(a.id).not.toBe(b.id);
      expect((await get(clientId, b.id)).status).toBe(NO_SHOW);
    });

    it('returns NOT_FOUND for an unknown id, and for an id of another client', async () => {
      const clientId = await newClient();
      const other = await newClient();
      const theirs = await create(other);
      const unknown = await errorOf(
        gw.client.appointments.getAppointment({
          clientId,
          id: '00000000-0000-4000-8000-000000000000',
        }),
      );
      expect(unknown.code).toBe(Status.NOT_FOUND);
      expect(unknown.details).toContain('00000000-0000-4000-8000-000000000000');
      expect(
        await statusOf(gw.client.appointments.getAppointment({ clientId, id: theirs.id })),
      ).toBe(Status.NOT_FOUND);
    });
  });

  describe('ListAppointments', () => {
    it('orders by scheduled_at then id, and filters by status', async () => {
      const clientId = await newClient();
      const t1 = at('2031-05-01T10:00:00.000Z');
      const t2 = at('2031-05-01T10:00:00.001Z');
      const t3 = at('2031-05-02T08:30:00.000Z');
      // Created out of order, with ties on t2.
      const made = [
        await create(clientId, { scheduledAt: t3, status: COMPLETED }),
        await create(clientId, { scheduledAt: t2, status: CONFIRMED }),
        await create(clientId, { scheduledAt: t1 }),
        await create(clientId, { scheduledAt: t2, status: NO_SHOW }),
        await create(clientId, { scheduledAt: t2 }),
      ];
      const expected = [...made].sort(byScheduleThenId);
      const res = await gw.client.appointments.listAppointments({ clientId });
      expect(res.appointments).toEqual(expected);
      expect(res.nextPageToken).toBe('');
      expect(res.appointments.map((a) => a.scheduledAt)).toEqual([t1, t2, t2, t2, t3]);

      const filtered = await gw.client.appointments.listAppointments({
        clientId,
        statuses: [NO_SHOW, COMPLETED],
      });
      expect(filtered.appointments).toEqual(
        expected.filter((a) => a.status === NO_SHOW || a.status === COMPLETED),
      );
      expect(filtered.appointments.map((a) => a.status)).toEqual([NO_SHOW, COMPLETED]);

      const none = await gw.client.appointments.listAppointments({
        clientId,
        statuses: [CANCELLED],
      });
      expect(none).toEqual({ appointments: [], nextPageToken: '' });
    });

    it('includes scheduled_after and excludes scheduled_before, to the millisecond', async () => {
      const clientId = await newClient();
      const times = [
        '2031-06-01T11:59:59.999Z',
        '2031-06-01T12:00:00.000Z',
        '2031-06-01T12:00:00.001Z',
        '2031-06-01T12:59:59.999Z',
        '2031-06-01T13:00:00.000Z',
        '2031-06-01T13:00:00.001Z',
      ].map(at);
      const made = [];
      for (const scheduledAt of times) made.push(await create(clientId, { scheduledAt }));
      const list = async (after?: Date, before?: Date): Promise<Date[]> =>
        (
          await gw.client.appointments.listAppointments({
            clientId,
            scheduledAfter: after,
            scheduledBefore: before,
          })
        ).appointments.map((a) => a.scheduledAt!);

      expect(await list(times[1], times[4])).toEqual(times.slice(1, 4));
      expect(await list(times[1])).toEqual(times.slice(1));
      expect(await list(undefined, times[4])).toEqual(times.slice(0, 4));
      expect(await list(times[2], times[3])).toEqual([times[2]]);
      // An empty range [t, t) and an inverted one hold nothing.
      expect(await list(times[2], times[2])).toEqual([]);
      expect(await list(times[4], times[1])).toEqual([]);
      expect(made).toHaveLength(6);
    });

    describe('paging', () => {
      const base = Date.parse('2032-01-01T00:00:00.000Z');
      const rangeStart = new Date(base);
      const rangeEnd = new Date(base + 20 * 60_000);

      /** A fresh client with 60 appointments over 20 distinct minutes: three share each scheduled_at. */
      async function seedSixty(): Promise<{ clientId: string; expected: Appointment[] }> {
        const clientId = await newClient();
        const made = await Promise.all(
          Array.from({ length: 60 }, (_, i) =>
            create(clientId, {
              scheduledAt: new Date(base + (i % 20) * 60_000),
              serviceType: `job-${i}`,
            }),
          ),
        );
        return { clientId, expected: made.sort(byScheduleThenId) };
      }

      it('returns every appointment exactly once with page size 7', async () => {
        const { clientId, expected } = await seedSixty();
        const { items, pageSizes } = await listAll({ clientId, pageSize: 7 });
        expect(pageSizes).toEqual([7, 7, 7, 7, 7, 7, 7, 7, 4]);
        expect(items).toEqual(expected);
        expect(new Set(items.map((a) => a.id)).size).toBe(60);
      });

      it('returns one page of 60 with page size 1000, and pages of 50 by default', async () => {
        const { clientId, expected } = await seedSixty();
        const big = await gw.client.appointments.listAppointments({ clientId, pageSize: 1000 });
        expect(big.appointments).toEqual(expected);
        expect(big.nextPageToken).toBe('');
        const { items, pageSizes } = await listAll({ clientId });
        expect(pageSizes).toEqual([50, 10]);
        expect(items).toEqual(expected);
      });

      it('returns no empty trailing page when the total is a multiple of the page size', async () => {
        const { clientId, expected } = await seedSixty();
        const { items, pageSizes } = await listAll({ clientId, pageSize: 20 });
        expect(pageSizes).toEqual([20, 20, 20]);
        expect(items).toEqual(expected);
      });

      it('has no gaps or repeats while appointments outside the range are inserted concurrently', async () => {
        const { clientId, expected } = await seedSixty();
        let done = false;
        let inserted = 0;
        const outside = [
          new Date(base - 1), // just before the inclusive start
          rangeEnd, // exactly the exclusive end
          new Date(base - 3_600_000),
          new Date(rangeEnd.getTime() + 1),
        ];
        const writer = async (): Promise<void> => {
          while (!done) {
            await create(clientId, {
              scheduledAt: outside[inserted % outside.length],
              serviceType: 'noise',
            });
            inserted++;
          }
        };
        const writing = [writer(), writer()];
        try {
          while (inserted < 4) await sleep(2);
          const seen: Appointment[] = [];
          let pageToken = '';
          let pages = 0;
          do {
            const res = await gw.client.appointments.listAppointments({
              clientId,
              pageSize: 7,
              pageToken,
              scheduledAfter: rangeStart,
              scheduledBefore: rangeEnd,
            });
            seen.push(...res.appointments);
            pageToken = res.nextPageToken;
            pages++;
            await sleep(3); // let the writers land rows between pages
          } while (pageToken !== '');
          expect(pages).toBe(9);
          expect(seen).toEqual(expected);
        } finally {
          done = true;
          await Promise.all(writing);
        }
        expect(inserted).toBeGreaterThanOrEqual(10);
        // The noise is really there, just outside the range.
        const all = await gw.client.appointments.listAppointments({ clientId, pageSize: 1000 });
        expect(all.appointments).toHaveLength(60 + inserted);
      });

      it('rejects a page token used with different filters or another client', async () => {
        const { clientId, expected } = await seedSixty();
        const filters = {
          scheduledAfter: rangeStart,
          scheduledBefore: rangeEnd,
          statuses: [SCHEDULED],
        };
        const first = await gw.client.appointments.listAppointments({
          clientId,
          pageSize: 7,
          ...filters,
        });
        const pageToken = first.nextPageToken;
        expect(pageToken).not.toBe('');
        const other = await newClient();
        const variants = [
          { ...filters, scheduledAfter: new Date(base + 1) },
          { ...filters, scheduledAfter: undefined },
          { ...filters, scheduledBefore: new Date(rangeEnd.getTime() - 1) },
          { ...filters, scheduledBefore: undefined },
          { ...filters, statuses: [SCHEDULED, CONFIRMED] },
          { ...filters, statuses: [] },
        ];
        for (const changed of variants) {
          const err = await errorOf(
            gw.client.appointments.listAppointments({
              clientId,
              pageSize: 7,
              pageToken,
              ...changed,
            }),
          );
          expect(err.code).toBe(Status.INVALID_ARGUMENT);
          expect(err.details).toContain('page_token');
        }
        const foreign = await errorOf(
          gw.client.appointments.listAppointments({
            clientId: other,
            pageSize: 7,
            pageToken,
            ...filters,
          }),
        );
        expect(foreign.code).toBe(Status.INVALID_ARGUMENT);
        expect(foreign.details).toContain('page_token');
        // The same filters with another page size are fine (AIP-158).
        const next = await gw.client.appointments.listAppointments({
          clientId,
          pageSize: 100,
          pageToken,
          ...filters,
        });
        expect(next.nextPageToken).toBe('');
        expect([...first.appointments, ...next.appointments]).toEqual(expected);
      });
    });
  });

  describe('UpdateAppointment', () => {
    const original = {
      clientPhone: '555-0100',
      scheduledAt: at('2031-07-01T08:00:00.000Z'),
      serviceType: 'ac-install',
    };
    const replacement = {
      clientPhone: '(555) 0199',
      scheduledAt: at('2031-07-02T15:45:30.123Z'),
      serviceType: 'ac-repair',
      status: CONFIRMED,
    };

    async function seeded(): Promise<{ clientId: string; before: Appointment }> {
      const clientId = await newClient();
      const before = await create(clientId, original);
      await sleep(5); // so a change gets a later millisecond than the create
      return { clientId, before };
    }

    it('changes only the masked fields; updated_at advances, created_at stays', async () => {
      const { clientId, before } = await seeded();
      const { appointment } = await gw.client.appointments.updateAppointment({
        clientId,
        appointment: { id: before.id, ...replacement },
        updateMask: ['service_type', 'status'],
      });
      const expected = {
        ...before,
        serviceType: 'ac-repair',
        status: CONFIRMED,
        updatedAt: appointment!.updatedAt,
      };
      expect(appointment).toEqual(expected);
      expect(appointment!.updatedAt!.getTime()).toBeGreaterThan(before.updatedAt!.getTime());
      expect(appointment!.createdAt).toEqual(before.createdAt);
      expect(await get(clientId, before.id)).toEqual(expected);
    });

    it("replaces every mutable field with '*'", async () => {
      const { clientId, before } = await seeded();
      const { appointment } = await gw.client.appointments.updateAppointment({
        clientId,
        appointment: { id: before.id, ...replacement },
        updateMask: ['*'],
      });
      const expected = { ...before, ...replacement, updatedAt: appointment!.updatedAt };
      expect(appointment).toEqual(expected);
      expect(appointment!.updatedAt!.getTime()).toBeGreaterThan(before.updatedAt!.getTime());
      expect(await get(clientId, before.id)).toEqual(expected);
    });

    it("with '*' an unset status is INVALID_ARGUMENT, not a silent reset", async () => {
      const { clientId, before } = await seeded();
      const { status, ...withoutStatus } = replacement;
      expect(status).toBe(CONFIRMED);
      const err = await errorOf(
        gw.client.appointments.updateAppointment({
          clientId,
          appointment: { id: before.id, ...withoutStatus },
          updateMask: ['*'],
        }),
      );
      expect(err.code).toBe(Status.INVALID_ARGUMENT);
      expect(err.details).toContain('status');
      expect(await get(clientId, before.id)).toEqual(before);
    });

    it('without a mask changes the fields set to non-default values', async () => {
      const { clientId, before } = await seeded();
      const { appointment } = await gw.client.appointments.updateAppointment({
        clientId,
        appointment: { id: before.id, clientPhone: '+1 555 0142', status: NO_SHOW },
      });
      const expected = {
        ...before,
        clientPhone: '+1 555 0142',
        status: NO_SHOW,
        updatedAt: appointment!.updatedAt,
      };
      expect(appointment).toEqual(expected);
      expect(appointment!.updatedAt!.getTime()).toBeGreaterThan(before.updatedAt!.getTime());
      expect(await get(clientId, before.id)).toEqual(expected);

      const moved = await gw.client.appointments.updateAppointment({
        clientId,
        appointment: { id: before.id, scheduledAt: replacement.scheduledAt },
      });
      expect(moved.appointment).toEqual({
        ...expected,
        scheduledAt: replacement.scheduledAt,
        updatedAt: moved.appointment!.updatedAt,
      });
    });

    it.each([
      ['an unknown path', ['nickname']],
      ['id', ['id']],
      ['created_at', ['created_at']],
      ['updated_at', ['updated_at']],
      ['camelCase instead of snake_case', ['serviceType']],
      ['an unknown path next to a valid one', ['service_type', 'created_at']],
      ['a valid path next to an unknown one', ['bogus', 'status']],
    ])(
      'rejects %s in the mask with INVALID_ARGUMENT and changes nothing',
      async (_name, updateMask) => {
        const { clientId, before } = await seeded();
        const err = await errorOf(
          gw.client.appointments.updateAppointment({
            clientId,
            appointment: { id: before.id, ...replacement },
            updateMask,
          }),
        );
        expect(err.code).toBe(Status.INVALID_ARGUMENT);
        expect(err.details).toContain('update_mask');
        expect(await get(clientId, before.id)).toEqual(before);
      },
    );

    it('answers a long unknown mask path with an emoji at the quoting limit (it hung before)', async () => {
      const { clientId, before } = await seeded();
      // The message quotes 64 characters of the path: a cut by UTF-16 units left half the
      // emoji, on which grpc-js failed to send the status, so the call waited out its deadline.
      const path = `${'x'.repeat(63)}\u{1F600}tail`;
      const err = await errorOf(
        gw.client.appointments.updateAppointment(
          { clientId, appointment: { id: before.id, ...replacement }, updateMask: [path] },
          { deadline: 5_000 },
        ),
      );
      expect(err.code).toBe(Status.INVALID_ARGUMENT);
      expect(err.details).toContain(`update_mask path '${'x'.repeat(63)}\u{1F600}'`);
      expect(await get(clientId, before.id)).toEqual(before);
    });

    it('rejects an invalid value in a masked field and changes nothing', async () => {
      const { clientId, before } = await seeded();
      const err = await errorOf(
        gw.client.appointments.updateAppointment({
          clientId,
          appointment: { id: before.id, serviceType: 'ok', clientPhone: 'call me' },
          updateMask: ['service_type', 'client_phone'],
        }),
      );
      expect(err.code).toBe(Status.INVALID_ARGUMENT);
      expect(err.details).toContain('client_phone');
      expect(await get(clientId, before.id)).toEqual(before);
    });

    it('returns NOT_FOUND for an unknown id', async () => {
      const { clientId, before } = await seeded();
      const err = await errorOf(
        gw.client.appointments.updateAppointment({
          clientId,
          appointment: { id: 'f0000000-0000-4000-8000-00000000000f', serviceType: 'x' },
          updateMask: ['service_type'],
        }),
      );
      expect(err.code).toBe(Status.NOT_FOUND);
      expect(err.details).toContain('f0000000-0000-4000-8000-00000000000f');
      expect(await get(clientId, before.id)).toEqual(before);
    });
  });

  describe('CancelAppointment', () => {
    it('cancels, and a second cancel is a no-op that still answers CANCELLED', async () => {
      const clientId = await newClient();
      const before = await create(clientId, { status: CONFIRMED });
      await sleep(5);
      const first = (await gw.client.appointments.cancelAppointment({ clientId, id: before.id }))
        .appointment!;
      expect(first).toEqual({ ...before, status: CANCELLED, updatedAt: first.updatedAt });
      expect(first.updatedAt!.getTime()).toBeGreaterThan(before.updatedAt!.getTime());
      await sleep(5);
      const second = (await gw.client.appointments.cancelAppointment({ clientId, id: before.id }))
        .appointment!;
      expect(second).toEqual(first);
      expect(await get(clientId, before.id)).toEqual(first);
    });

    it('refuses a completed appointment with FAILED_PRECONDITION and leaves it COMPLETED', async () => {
      const clientId = await newClient();
      const completed = await create(clientId, { status: COMPLETED });
      const err = await errorOf(
        gw.client.appointments.cancelAppointment({ clientId, id: completed.id }),
      );
      expect(err.code).toBe(Status.FAILED_PRECONDITION);
      expect(err.details).toContain('completed');
      expect(await get(clientId, completed.id)).toEqual(completed);
    });

    it('refuses an appointment completed by an update', async () => {
      const clientId = await newClient();
      const made = await create(clientId);
      const { appointment: done } = await gw.client.appointments.updateAppointment({
        clientId,
        appointment: { id: made.id, status: COMPLETED },
        updateMask: ['status'],
      });
      expect(done!.status).toBe(COMPLETED);
      expect(
        await statusOf(gw.client.appointments.cancelAppointment({ clientId, id: made.id })),
      ).toBe(Status.FAILED_PRECONDITION);
      expect(await get(clientId, made.id)).toEqual(done);
    });

    it('returns NOT_FOUND for an unknown id', async () => {
      const clientId = await newClient();
      expect(
        await statusOf(
          gw.client.appointments.cancelAppointment({
            clientId,
            id: '0f000000-0000-4000-8000-0000000000f0',
          }),
        ),
      ).toBe(Status.NOT_FOUND);
      expect((await gw.client.appointments.listAppointments({ clientId })).appointments).toEqual(
        [],
      );
    });
  });
});
