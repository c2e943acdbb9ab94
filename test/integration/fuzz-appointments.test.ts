import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePageToken } from '../../src/api/page-token.js';
import {
  AppointmentStatus,
  type Appointment,
  type BatchCreateAppointmentsRequest,
  type BatchGetAppointmentsRequest,
  type CreateAppointmentRequest,
  type GetAppointmentRequest,
  type ListAppointmentsRequest,
  type UpdateAppointmentRequest,
} from '../../src/gen/shardgate/v1/appointment.js';
import {
  dateArb,
  hostileClientId,
  hostileString,
  int32Arb,
  pageTokenArb,
  printableString,
  repeated,
  requestArb,
  updateMaskArb,
  uuidArb,
  type PageTokenCase,
} from '../support/arbitraries.js';
import { isClientId, isPhone, isText, isTimestamp, isUuid } from '../support/fuzz-contract.js';
import {
  createFuzzWorld,
  failedPrecondition,
  fuzz,
  invalid,
  notFound,
  OK,
  onTheWire,
  tenantIdArb,
  tenantOutcome as fuzzTenantOutcome,
  type Expected,
  type FuzzWorld,
} from '../support/fuzz-harness.js';

const validPhone = fc.oneof(
  fc.stringMatching(/^[0-9+\-(). ]{3,32}$/).filter((p) => /[0-9]/.test(p)),
  fc.constantFrom('+1 555 0100', '555', repeated(32, '5')),
);
const hostilePhone = fc.oneof(
  fc.constantFrom('+-()', repeated(33, '5'), '555\n0100', '١٢٣'),
  hostileString([3, 32]),
);
const validDate = dateArb.filter((d) => isTimestamp(d));
const validStatus = fc.integer({ min: 0, max: 5 }) as fc.Arbitrary<AppointmentStatus>;
const hostileStatus = fc.oneof(
  fc.constantFrom(-1, 6, 99, 2 ** 31 - 1, -(2 ** 31)),
  fc.integer(),
) as fc.Arbitrary<AppointmentStatus>;
/** request_id: none or a fresh UUID (AIP-155 keys are UUIDs); hostile text must be refused. */
const validRequestId = fc.oneof(fc.constant(''), fc.uuid());

/** Appointments: entirely valid ones, and ones valid but for a few fields (`ids` → id). */
function appointmentArbs(
  ids: fc.Arbitrary<string>,
  hostileIds: fc.Arbitrary<string>,
): { valid: fc.Arbitrary<Appointment>; mixed: fc.Arbitrary<Appointment> } {
  const valid = {
    id: ids,
    clientPhone: validPhone,
    scheduledAt: validDate,
    serviceType: printableString(1, 200),
    status: validStatus,
  };
  return {
    valid: fc.record(valid),
    mixed: requestArb<Appointment>(valid, {
      id: hostileIds,
      clientPhone: hostilePhone,
      scheduledAt: fc.option(dateArb, { nil: undefined }),
      serviceType: hostileString([200]),
      status: hostileStatus,
      // Output-only: ignored whatever they hold.
      createdAt: dateArb,
      updatedAt: dateArb,
    }),
  };
}

const isKnownStatus = (s: number): boolean => Number.isInteger(s) && s >= 1 && s <= 5;

/** The fields of a new appointment the contract refuses, named as in error messages. */
function newAppointmentProblems(a: Appointment, field: string): string[] {
  const w = onTheWire(a);
  const bad: string[] = [];
  if (!isPhone(w.clientPhone)) bad.push(`${field}.client_phone`);
  if (!w.scheduledAt || !isTimestamp(w.scheduledAt)) bad.push(`${field}.scheduled_at`);
  if (!isText(w.serviceType, 1, 200)) bad.push(`${field}.service_type`);
  if (w.status !== 0 && !isKnownStatus(w.status)) bad.push(`${field}.status`);
  return bad;
}

function requestIdProblems(requestId: string): string[] {
  return requestId === '' || isUuid(requestId) ? [] : ['request_id'];
}

/** The stored appointment equals what was sent (status UNSPECIFIED means SCHEDULED). */
function expectStoredAsSent(sent: Appointment, stored: Appointment | undefined): void {
  const w = onTheWire(sent);
  expect(stored).toMatchObject({
    clientPhone: w.clientPhone,
    serviceType: w.serviceType,
    scheduledAt: w.scheduledAt,
    status: w.status === 0 ? AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED : w.status,
  });
}

// Generous: a property's runs take a few seconds, more on a busy machine.
describe('fuzzing AppointmentService', { timeout: 90_000 }, () => {
  let world: FuzzWorld;
  /** Status of an appointment of the fuzz tenant, read behind the gateway's back. */
  let storedStatus: (id: string) => Promise<string | undefined>;

  beforeAll(async () => {
    world = await createFuzzWorld();
    const db = world.shards.get(world.fuzz.shard)!;
    const table = `${pg.escapeIdentifier(world.fuzz.schema)}.appointments`;
    storedStatus = async (id) =>
      isUuid(id)
        ? (await db.query<{ status: string }>(`SELECT status FROM ${table} WHERE id = $1`, [id]))
            .rows[0]?.status
        : undefined;
  });
  afterAll(async () => {
    await world?.close();
  });

  const clientId = (): fc.Arbitrary<string> => tenantIdArb(world);
  const tenantOutcome = (id: string): Expected | undefined => fuzzTenantOutcome(world, id);
  /** Appointment ids: the fuzz tenant's (any case), the canary's (NOT_FOUND here), random. */
  const appointmentId = (): fc.Arbitrary<string> =>
    fc.oneof(
      {
        arbitrary: fc.constantFrom(
          ...world.fuzz.appointmentIds,
          ...world.fuzz.appointmentIds.map((id) => id.toUpperCase()),
        ),
        weight: 6,
      },
      { arbitrary: fc.constantFrom(...world.canary.appointmentIds), weight: 2 },
      { arbitrary: fc.uuid(), weight: 2 },
    );

  it('CreateAppointment: every field and client_id', async () => {
    const appointment = appointmentArbs(fc.constant(''), hostileString([36]));
    await fuzz(world, {
      name: 'CreateAppointment',
      arb: requestArb<CreateAppointmentRequest>(
        {
          clientId: clientId(),
          appointment: appointment.valid,
          requestId: validRequestId,
        },
        {
          clientId: hostileClientId,
          appointment: fc.option(appointment.mixed, { nil: undefined, freq: 8 }),
          requestId: hostileString([36]),
        },
      ),
      expected: (r) => {
        const bad = r.appointment
          ? newAppointmentProblems(r.appointment, 'appointment')
          : ['appointment'];
        if (!isClientId(r.clientId)) bad.push('client_id');
        bad.push(...requestIdProblems(r.requestId));
        return bad.length > 0 ? invalid(bad) : (tenantOutcome(r.clientId) ?? OK);
      },
      call: (r) => world.gw.client.appointments.createAppointment(r),
      writes: true,
      onOk: (r, res) =>
        expectStoredAsSent(r.appointment!, (res as { appointment?: Appointment }).appointment),
      numRuns: 100,
    });
  });

  it('BatchCreateAppointments: empty, oversized and hostile batches are refused whole', async () => {
    const valid: Appointment = {
      id: '',
      clientPhone: '555 0100',
      scheduledAt: new Date('2030-01-01T00:00:00Z'),
      serviceType: 'x',
      status: 0,
    };
    const item = appointmentArbs(fc.constant(''), hostileString([36]));
    const items = (a: fc.Arbitrary<Appointment>): fc.Arbitrary<Appointment[]> =>
      fc.array(a, { minLength: 1, maxLength: 4 });
    await fuzz(world, {
      name: 'BatchCreateAppointments',
      arb: requestArb<BatchCreateAppointmentsRequest>(
        { clientId: clientId(), appointments: items(item.valid), requestId: validRequestId },
        {
          clientId: hostileClientId,
          appointments: fc.oneof(
            items(fc.oneof(item.valid, item.mixed)),
            fc.constant<Appointment[]>([]),
            fc.constantFrom(1000, 1001).map((n) => Array<Appointment>(n).fill(valid)),
          ),
          requestId: hostileString([36]),
        },
      ),
      expected: (r) => {
        const bad =
          r.appointments.length === 0 || r.appointments.length > 1000
            ? ['appointments']
            : r.appointments.flatMap((a, i) => newAppointmentProblems(a, `appointments[${i}]`));
        if (!isClientId(r.clientId)) bad.push('client_id');
        bad.push(...requestIdProblems(r.requestId));
        return bad.length > 0 ? invalid(bad) : (tenantOutcome(r.clientId) ?? OK);
      },
      call: (r) => world.gw.client.appointments.batchCreateAppointments(r),
      writes: true,
      onOk: (r, res) => {
        const stored = (res as { appointments: Appointment[] }).appointments;
        expect(stored).toHaveLength(r.appointments.length);
        r.appointments.forEach((a, i) => expectStoredAsSent(a, stored[i]));
      },
      numRuns: 60,
    });
  });

  /** GetAppointment and CancelAppointment take the same request. */
  const byIdArb = (): fc.Arbitrary<GetAppointmentRequest> =>
    requestArb<GetAppointmentRequest>(
      { clientId: clientId(), id: appointmentId() },
      { clientId: hostileClientId, id: uuidArb() },
    );
  const byIdProblems = (r: GetAppointmentRequest): string[] => [
    ...(isUuid(onTheWire(r.id)) ? [] : ['id']),
    ...(isClientId(r.clientId) ? [] : ['client_id']),
  ];

  it('GetAppointment: ids of this client, of another client, random and hostile', async () => {
    await fuzz(world, {
      name: 'GetAppointment',
      arb: byIdArb(),
      expected: async (r) => {
        const bad = byIdProblems(r);
        if (bad.length > 0) return invalid(bad);
        return (
          tenantOutcome(r.clientId) ?? ((await storedStatus(r.id.toLowerCase())) ? OK : notFound)
        );
      },
      call: (r) => world.gw.client.appointments.getAppointment(r),
      onOk: (r, res) =>
        expect((res as { appointment?: Appointment }).appointment?.id).toBe(r.id.toLowerCase()),
    });
  });

  it('BatchGetAppointments: lists of this client’s, other, random and hostile ids, all or none', async () => {
    const ids = (a: fc.Arbitrary<string>): fc.Arbitrary<string[]> =>
      fc.array(a, { minLength: 1, maxLength: 5 });
    await fuzz(world, {
      name: 'BatchGetAppointments',
      arb: requestArb<BatchGetAppointmentsRequest>(
        { clientId: clientId(), ids: ids(appointmentId()) },
        {
          clientId: hostileClientId,
          ids: fc.oneof(
            ids(fc.oneof(appointmentId(), uuidArb())),
            fc.constant<string[]>([]),
            fc.constantFrom(1000, 1001).map((n) => Array<string>(n).fill(randomUUID())),
          ),
        },
      ),
      expected: async (r) => {
        const bad =
          r.ids.length === 0 || r.ids.length > 1000
            ? ['ids']
            : r.ids.flatMap((id, i) => (isUuid(onTheWire(id)) ? [] : [`ids[${i}]`]));
        if (!isClientId(r.clientId)) bad.push('client_id');
        if (bad.length > 0) return invalid(bad);
        const tenant = tenantOutcome(r.clientId);
        if (tenant) return tenant;
        // One at a time: the oracle's pg.Client runs one query at a time (pg 9 refuses more).
        for (const id of r.ids) if (!(await storedStatus(id.toLowerCase()))) return notFound;
        return OK;
      },
      call: (r) => world.gw.client.appointments.batchGetAppointments(r),
      onOk: (r, res) =>
        expect((res as { appointments: Appointment[] }).appointments.map((a) => a.id)).toEqual(
          r.ids.map((id) => id.toLowerCase()),
        ),
      numRuns: 60,
    });
  });

  it('CancelAppointment: only appointments of this client, completed ones refused', async () => {
    await fuzz(world, {
      name: 'CancelAppointment',
      arb: byIdArb(),
      expected: async (r) => {
        const bad = byIdProblems(r);
        if (bad.length > 0) return invalid(bad);
        const status = await storedStatus(r.id.toLowerCase());
        return (
          tenantOutcome(r.clientId) ??
          (status === undefined ? notFound : status === 'completed' ? failedPrecondition : OK)
        );
      },
      call: (r) => world.gw.client.appointments.cancelAppointment(r),
      writes: true,
      onOk: (_r, res) =>
        expect((res as { appointment?: Appointment }).appointment?.status).toBe(
          AppointmentStatus.APPOINTMENT_STATUS_CANCELLED,
        ),
      numRuns: 60,
    });
  });

  it('UpdateAppointment: hostile values and update masks', async () => {
    const MUTABLE = ['client_phone', 'scheduled_at', 'service_type', 'status'];
    function updateProblems(r: UpdateAppointmentRequest): string[] {
      const a = r.appointment;
      if (!a) return ['appointment'];
      const w = onTheWire(a);
      if (!isUuid(w.id)) return ['appointment.id'];
      const implicit = [
        ...(w.clientPhone !== '' ? ['client_phone'] : []),
        ...(w.scheduledAt !== undefined ? ['scheduled_at'] : []),
        ...(w.serviceType !== '' ? ['service_type'] : []),
        ...(w.status !== 0 ? ['status'] : []),
      ];
      const paths = r.updateMask ? onTheWire(r.updateMask) : implicit;
      if (paths.some((p) => p !== '*' && !MUTABLE.includes(p))) return ['update_mask'];
      const chosen = new Set(paths.flatMap((p) => (p === '*' ? MUTABLE : [p])));
      if (chosen.size === 0) return ['update_mask'];
      const bad: string[] = [];
      if (chosen.has('client_phone') && !isPhone(w.clientPhone))
        bad.push('appointment.client_phone');
      if (chosen.has('scheduled_at') && !(w.scheduledAt && isTimestamp(w.scheduledAt)))
        bad.push('appointment.scheduled_at');
      if (chosen.has('service_type') && !isText(w.serviceType, 1, 200))
        bad.push('appointment.service_type');
      if (chosen.has('status') && !isKnownStatus(w.status)) bad.push('appointment.status');
      return bad;
    }
    // Blank fields fall out of the implicit mask; a mask picks fields whatever their value.
    const { mixed } = appointmentArbs(appointmentId(), uuidArb());
    const sparse = mixed.chain((a) =>
      fc
        .subarray(['clientPhone', 'scheduledAt', 'serviceType', 'status'] as const)
        .map((blank) => ({
          ...a,
          ...(blank.includes('clientPhone') ? { clientPhone: '' } : {}),
          ...(blank.includes('scheduledAt') ? { scheduledAt: undefined } : {}),
          ...(blank.includes('serviceType') ? { serviceType: '' } : {}),
          ...(blank.includes('status') ? { status: 0 } : {}),
        })),
    );
    await fuzz(world, {
      name: 'UpdateAppointment',
      arb: requestArb<UpdateAppointmentRequest>(
        {
          clientId: clientId(),
          appointment: sparse,
          updateMask: fc.option(
            fc.subarray(['client_phone', 'scheduled_at', 'service_type', 'status', '*']),
            { nil: undefined },
          ),
        },
        {
          clientId: hostileClientId,
          appointment: fc.constant(undefined),
          updateMask: updateMaskArb,
        },
      ),
      expected: async (r) => {
        const bad = updateProblems(r);
        if (!isClientId(r.clientId)) bad.push('client_id');
        if (bad.length > 0) return invalid(bad);
        return (
          tenantOutcome(r.clientId) ??
          ((await storedStatus(r.appointment!.id.toLowerCase())) ? OK : notFound)
        );
      },
      call: (r) => world.gw.client.appointments.updateAppointment(r),
      writes: true,
      numRuns: 100,
    });
  });

  it('ListAppointments: page sizes, time ranges, statuses and page tokens', async () => {
    type Filters = Omit<ListAppointmentsRequest, 'pageToken'>;
    // The listing's filters as page-token.ts fingerprints them: public, so a forger knows them.
    const filtersOf = (r: Filters): unknown[] => [
      'appointments',
      r.clientId,
      r.scheduledAfter?.getTime(),
      r.scheduledBefore?.getTime(),
      r.statuses.map((s) => AppointmentStatus[s]!.replace('APPOINTMENT_STATUS_', '').toLowerCase()),
    ];
    const issued = {
      'fuzz, no filters': world.fuzz.tokens.appointments,
      'canary, no filters': world.canary.tokens.appointments,
      'fuzz handoffs': world.fuzz.tokens.handoffs,
    };
    const tokenProblem = (t: PageTokenCase, r: Filters): boolean => {
      switch (t.origin) {
        case 'none':
          return false;
        case 'forged':
          return true;
        case 'issued':
          return !(
            t.issuedFor === 'fuzz, no filters' &&
            r.clientId === world.fuzz.clientId &&
            !r.scheduledAfter &&
            !r.scheduledBefore &&
            r.statuses.length === 0
          );
        case 'cursor': {
          const [at, id] = t.cursor!;
          const date = new Date(typeof at === 'number' ? at : Number.NaN);
          return !(isTimestamp(date) && typeof id === 'string' && isUuid(id));
        }
      }
    };
    const filters = requestArb<Filters>(
      {
        clientId: clientId(),
        pageSize: fc.constantFrom(0, 1, 2, 1000),
        scheduledAfter: fc.option(validDate, { nil: undefined }),
        scheduledBefore: fc.option(validDate, { nil: undefined }),
        statuses: fc.subarray([1, 2, 3, 4, 5]),
      },
      {
        clientId: hostileClientId,
        pageSize: int32Arb,
        scheduledAfter: dateArb,
        scheduledBefore: dateArb,
        statuses: fc.array(fc.oneof(validStatus, hostileStatus), { minLength: 1, maxLength: 3 }),
      },
    );
    await fuzz(world, {
      name: 'ListAppointments',
      arb: filters.chain((r) =>
        pageTokenArb(issued, (cursor) =>
          encodePageToken(
            filtersOf(onTheWire({ ...r, statuses: r.statuses.filter(isKnownStatus) })),
            cursor,
          ),
        ).map((token) => ({ ...r, token })),
      ),
      expected: (r) => {
        const bad: string[] = [];
        if (r.pageSize < 0) bad.push('page_size');
        if (r.scheduledAfter && !isTimestamp(r.scheduledAfter)) bad.push('scheduled_after');
        if (r.scheduledBefore && !isTimestamp(r.scheduledBefore)) bad.push('scheduled_before');
        if (r.statuses.some((s) => !isKnownStatus(s))) bad.push('statuses');
        if (bad.length === 0 && tokenProblem(r.token, r)) bad.push('page_token');
        if (!isClientId(r.clientId)) bad.push('client_id');
        return bad.length > 0 ? invalid(bad) : (tenantOutcome(r.clientId) ?? OK);
      },
      call: (r) =>
        world.gw.client.appointments.listAppointments({ ...r, pageToken: r.token.token }),
      numRuns: 100,
    });
  });
});
