import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/core/config.js';
import type { Appointment } from '../../src/gen/shardgate/v1/appointment.js';
import {
  createTestTopology,
  errorOf,
  freshClientId,
  startTestGateway,
  type TestGateway,
} from '../support/harness.js';

/** The smallest message limit the config allows: 64 KiB, so a response budget of 32 KiB. */
const MAX_MESSAGE_BYTES = 64 * 1024;
/** A service type of 200 characters, the longest allowed, 3 UTF-8 bytes each. */
const LONG = '€'.repeat(200);

/** An appointment with a near-longest service type, told apart by `i`. */
const appointment = (i: number) => ({
  clientPhone: '+1 555 0100',
  scheduledAt: new Date(Date.UTC(2031, 0, 1, 0, i)),
  serviceType: `${LONG.slice(0, 196)}${String(i).padStart(4, '0')}`,
});

describe('appointment responses under a small message limit', () => {
  let gw: TestGateway;
  let clientId: string;
  let made: Appointment[];
  beforeAll(async () => {
    gw = await startTestGateway(await createTestTopology(1), {
      limits: { ...configSchema.parse({}).limits, maxMessageBytes: MAX_MESSAGE_BYTES },
    });
    clientId = freshClientId('budget');
    await gw.client.tenants.createTenant({ clientId });
    // In batches of 30: the smallest limit caps requests too.
    made = [];
    for (let b = 0; b < 4; b++) {
      const batch = await gw.client.appointments.batchCreateAppointments({
        clientId,
        appointments: Array.from({ length: 30 }, (_, k) => appointment(b * 30 + k)),
      });
      made.push(...batch.appointments);
    }
  });
  afterAll(async () => gw?.close());

  it('ListAppointments returns shorter pages that fit, and paging still yields every appointment in order', async () => {
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await gw.client.appointments.listAppointments({
        clientId,
        pageSize: 1000,
        pageToken,
      });
      expect(page.appointments.length).toBeGreaterThan(0);
      expect(page.appointments.length).toBeLessThan(120);
      seen.push(...page.appointments.map((a) => a.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== '');
    expect(seen).toEqual(made.map((a) => a.id));
    expect(pages).toBeGreaterThanOrEqual(2);
  });

  it('BatchCreateAppointments refuses, before writing, a batch whose answer would not fit (its request does)', async () => {
    const other = freshClientId('budget-create');
    await gw.client.tenants.createTenant({ clientId: other });
    // 100 items of ~600 bytes: a request of ~62 KB fits the 64 KiB limit; the answer, which adds
    // each id and two timestamps, would not.
    const err = await errorOf(
      gw.client.appointments.batchCreateAppointments({
        clientId: other,
        appointments: Array.from({ length: 100 }, (_, i) => appointment(i)),
      }),
    );
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toMatch(
      /^appointments: the answer to these 100 would come to about \d+ bytes/,
    );
    const listed = await gw.client.appointments.listAppointments({ clientId: other });
    expect(listed.appointments).toEqual([]);
  });

  it('BatchAppendHandoffs refuses, before writing, a batch whose answer would not fit (its request does)', async () => {
    const other = freshClientId('budget-handoffs');
    await gw.client.tenants.createTenant({ clientId: other });
    const handoff = (i: number) => ({
      fromAgent: 'intake',
      toAgent: 'dispatch',
      version: 1,
      summary: { n: i, notes: 'x'.repeat(560) },
    });
    // 100 summaries of ~600 bytes: a request of ~62 KB fits the 64 KiB limit; the answer, which
    // adds each id and created_at, would not.
    const err = await errorOf(
      gw.client.handoffs.batchAppendHandoffs({
        clientId: other,
        handoffs: Array.from({ length: 100 }, (_, i) => handoff(i)),
      }),
    );
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^handoffs: the answer to these 100 would come to about \d+ bytes/);
    expect((await gw.client.handoffs.listHandoffs({ clientId: other })).handoffs).toEqual([]);
    const { handoffs } = await gw.client.handoffs.batchAppendHandoffs({
      clientId: other,
      handoffs: Array.from({ length: 50 }, (_, i) => handoff(i)),
    });
    expect(handoffs.map((h) => h.summary?.['n'])).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('BatchGetAppointments refuses, naming ids, a set that cannot fit one response, and answers a smaller one', async () => {
    const err = await errorOf(
      gw.client.appointments.batchGetAppointments({ clientId, ids: made.map((a) => a.id) }),
    );
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^ids: these 120 appointments come to about \d+ bytes/);
    const some = made.slice(0, 10).map((a) => a.id);
    const { appointments } = await gw.client.appointments.batchGetAppointments({
      clientId,
      ids: some,
    });
    expect(appointments.map((a) => a.id)).toEqual(some);
  });
});
