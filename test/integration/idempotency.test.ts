import { randomUUID } from 'node:crypto';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MoveState } from '../../src/gen/shardgate/v1/admin.js';
import { AppointmentStatus } from '../../src/gen/shardgate/v1/appointment.js';
import { requestKey } from '../../src/pg/insert-once.js';
import { startWatch } from '../support/handoff-watch.js';
import {
  createTestTopology,
  errorOf,
  freshClientId,
  startTestGateway,
  statusOf,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';
import { moveTo } from '../support/move-helpers.js';

/** One of the five keyed creates, driven through the gateway. */
interface CreateCase {
  name: string;
  /** The create with `requestId`; `variant` changes the payload (0 is the base request). */
  call(gw: TestGateway, owner: string, requestId: string, variant?: number): Promise<object>;
  /** How many rows the owner's creates of this kind stored (read through the API). */
  count(gw: TestGateway, owner: string): Promise<number>;
  /** Per client (the owner is a client id) or shared (the owner only names a knowledge topic). */
  perClient: boolean;
}

const appointment = (variant: number, i = 0): object => ({
  clientPhone: '555-0100',
  scheduledAt: new Date(Date.UTC(2031, 0, 1 + i, 9)),
  serviceType: `tune-up-${variant}`,
  status: AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED,
});
const handoff = (variant: number, i = 0): object => ({
  fromAgent: 'intake',
  toAgent: `dispatch-${i}`,
  version: 1,
  summary: { caller: 'Ada', step: variant, nested: { a: [1, 2], b: null } },
});
/** Topics are lowercase keys; client ids are too, so an owner's id names its own topic. */
const topicOf = (owner: string): string => `idem.${owner}`;

const cases: CreateCase[] = [
  {
    name: 'CreateAppointment',
    perClient: true,
    call: (gw, clientId, requestId, variant = 0) =>
      gw.client.appointments.createAppointment({
        clientId,
        requestId,
        appointment: appointment(variant),
      }),
    count: async (gw, clientId) =>
      (await gw.client.appointments.listAppointments({ clientId, pageSize: 1000 })).appointments
        .length,
  },
  {
    name: 'BatchCreateAppointments',
    perClient: true,
    call: (gw, clientId, requestId, variant = 0) =>
      gw.client.appointments.batchCreateAppointments({
        clientId,
        requestId,
        appointments: [appointment(0, 0), appointment(variant, 1), appointment(0, 2)],
      }),
    count: async (gw, clientId) =>
      (await gw.client.appointments.listAppointments({ clientId, pageSize: 1000 })).appointments
        .length,
  },
  {
    name: 'AppendHandoff',
    perClient: true,
    call: (gw, clientId, requestId, variant = 0) =>
      gw.client.handoffs.appendHandoff({ clientId, requestId, handoff: handoff(variant) }),
    count: async (gw, clientId) =>
      (await gw.client.handoffs.listHandoffs({ clientId, pageSize: 1000 })).handoffs.length,
  },
  {
    name: 'BatchAppendHandoffs',
    perClient: true,
    call: (gw, clientId, requestId, variant = 0) =>
      gw.client.handoffs.batchAppendHandoffs({
        clientId,
        requestId,
        handoffs: [handoff(0, 0), handoff(variant, 1)],
      }),
    count: async (gw, clientId) =>
      (await gw.client.handoffs.listHandoffs({ clientId, pageSize: 1000 })).handoffs.length,
  },
  {
    name: 'AddKnowledgeEntry',
    perClient: false,
    call: (gw, owner, requestId, variant = 0) =>
      gw.client.shared.addKnowledgeEntry({
        requestId,
        entry: { topic: topicOf(owner), agent: 'researcher', content: `fact ${variant}\nmore` },
      }),
    count: async (gw, owner) =>
      (await gw.client.shared.listKnowledgeEntries({ topic: topicOf(owner), pageSize: 1000 }))
        .entries.length,
  },
];

/** Rows per create call: the batches make three and two. */
const ROWS: Record<string, number> = {
  CreateAppointment: 1,
  BatchCreateAppointments: 3,
  AppendHandoff: 1,
  BatchAppendHandoffs: 2,
  AddKnowledgeEntry: 1,
};

describe('idempotency keys on creates (request_id, AIP-155)', () => {
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

  /** A new client for per-client cases; a fresh owner name (a knowledge topic) otherwise. */
  async function newOwner(c: CreateCase, prefix = 'idem'): Promise<string> {
    const id = freshClientId(prefix);
    if (c.perClient) await gw.client.tenants.createTenant({ clientId: id });
    return id;
  }

  describe.each(cases)('$name', (c) => {
    const rows = ROWS[c.name]!;

    it('a retry with the same request_id and request has one effect and the same response', async () => {
      const owner = await newOwner(c);
      const requestId = randomUUID();
      const first = await c.call(gw, owner, requestId);
      const second = await c.call(gw, owner, requestId);
      expect(second).toEqual(first);
      // The key is a UUID whatever its case: the uppercase spelling is the same key.
      expect(await c.call(gw, owner, requestId.toUpperCase())).toEqual(first);
      expect(await c.count(gw, owner)).toBe(rows);
    });

    it('ten identical calls at once store one result and all return it', async () => {
      const owner = await newOwner(c);
      const requestId = randomUUID();
      const responses = await Promise.all(
        Array.from({ length: 10 }, () => c.call(gw, owner, requestId)),
      );
      for (const r of responses) expect(r).toEqual(responses[0]);
      expect(await c.count(gw, owner)).toBe(rows);
    });

    it('the same request_id with a different request fails FAILED_PRECONDITION and writes nothing', async () => {
      const owner = await newOwner(c);
      const requestId = randomUUID();
      const first = await c.call(gw, owner, requestId);
      const err = await errorOf(c.call(gw, owner, requestId, 1));
      expect(err.code).toBe(Status.FAILED_PRECONDITION);
      expect(err.details).toContain(`request_id ${requestId} was already used`);
      expect(await c.count(gw, owner)).toBe(rows);
      // The key still answers its own request.
      expect(await c.call(gw, owner, requestId)).toEqual(first);
    });

    it('an empty request_id means no deduplication', async () => {
      const owner = await newOwner(c);
      const a = await c.call(gw, owner, '');
      const b = await c.call(gw, owner, '');
      expect(b).not.toEqual(a);
      expect(await c.count(gw, owner)).toBe(2 * rows);
    });

    it('a request_id that is not a UUID is INVALID_ARGUMENT and writes nothing', async () => {
      const owner = await newOwner(c);
      for (const bad of ['not-a-uuid', "'; DROP TABLE request_ids; --", `${randomUUID()}x`, ' ']) {
        const err = await errorOf(c.call(gw, owner, bad));
        expect(err.code).toBe(Status.INVALID_ARGUMENT);
        expect(err.details).toBe('request_id must be a UUID');
      }
      expect(await c.count(gw, owner)).toBe(0);
    });

    if (c.perClient) {
      it('the same request_id used by two clients is two independent keys', async () => {
        const [a, b] = [await newOwner(c), await newOwner(c)];
        const requestId = randomUUID();
        const ra = await c.call(gw, a, requestId);
        const rb = await c.call(gw, b, requestId, 1);
        expect(rb).not.toEqual(ra);
        expect(await c.count(gw, a)).toBe(rows);
        expect(await c.count(gw, b)).toBe(rows);
        expect(await c.call(gw, a, requestId)).toEqual(ra);
        expect(await c.call(gw, b, requestId, 1)).toEqual(rb);
      });
    }
  });

  it('a request_id used for one method fails FAILED_PRECONDITION on another, naming the first', async () => {
    const clientId = freshClientId('idem');
    await gw.client.tenants.createTenant({ clientId });
    const requestId = randomUUID();
    await gw.client.appointments.createAppointment({
      clientId,
      requestId,
      appointment: appointment(0),
    });
    const err = await errorOf(
      gw.client.appointments.batchCreateAppointments({
        clientId,
        requestId,
        appointments: [appointment(0)],
      }),
    );
    expect(err.code).toBe(Status.FAILED_PRECONDITION);
    expect(err.details).toContain(`request_id ${requestId} was already used for CreateAppointment`);
    expect((await gw.client.appointments.listAppointments({ clientId })).appointments).toHaveLength(
      1,
    );
  });

  it('a handoff summary with its fields in another order is the same request', async () => {
    const clientId = freshClientId('idem');
    await gw.client.tenants.createTenant({ clientId });
    const requestId = randomUUID();
    const first = await gw.client.handoffs.appendHandoff({
      clientId,
      requestId,
      handoff: { fromAgent: 'a', toAgent: 'b', summary: { x: 1, y: { p: 'q', r: [1] } } },
    });
    const again = await gw.client.handoffs.appendHandoff({
      clientId,
      requestId,
      handoff: { fromAgent: 'a', toAgent: 'b', summary: { y: { r: [1], p: 'q' }, x: 1 } },
    });
    expect(again).toEqual(first);
    expect((await gw.client.handoffs.listHandoffs({ clientId })).handoffs).toHaveLength(1);
  });

  it('WatchHandoffs delivers a handoff once however often its append is retried', async () => {
    const clientId = freshClientId('idem');
    await gw.client.tenants.createTenant({ clientId });
    const watch = await startWatch(gw.client.handoffs, { clientId });
    try {
      const requestId = randomUUID();
      const request = { clientId, requestId, handoff: handoff(0) };
      const { handoff: first } = await gw.client.handoffs.appendHandoff(request);
      await Promise.all(Array.from({ length: 5 }, () => gw.client.handoffs.appendHandoff(request)));
      const batch = { clientId, requestId: randomUUID(), handoffs: [handoff(1), handoff(2)] };
      const { handoffs: pair } = await gw.client.handoffs.batchAppendHandoffs(batch);
      await gw.client.handoffs.batchAppendHandoffs(batch);
      // A last, unkeyed handoff: once it arrived, every earlier notification has (commit order).
      const { handoff: sentinel } = await gw.client.handoffs.appendHandoff({
        clientId,
        handoff: handoff(3),
      });
      const received = await watch.waitForCount(4);
      expect(received.map((h) => h.id)).toEqual([
        first!.id,
        ...pair.map((h) => h.id),
        sentinel!.id,
      ]);
    } finally {
      watch.cancel();
      await watch.ended;
    }
  });

  it('a retry after the client moved to another shard returns the first result and writes nothing', async () => {
    const clientId = freshClientId('idem-move');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    const perClient = cases.filter((c) => c.perClient);
    const keys = perClient.map(() => randomUUID());
    const firsts: object[] = [];
    for (const [i, c] of perClient.entries()) firsts.push(await c.call(gw, clientId, keys[i]!));

    const to = topology.shards.find((s) => s.name !== tenant!.shard)!.name;
    const progress = await moveTo(gw.client, clientId, to);
    expect(progress.at(-1)!.state).toBe(MoveState.MOVE_STATE_SUCCEEDED);
    expect((await gw.client.admin.locate({ clientId })).shard).toBe(to);

    for (const [i, c] of perClient.entries()) {
      expect(await c.call(gw, clientId, keys[i]!)).toEqual(firsts[i]);
      expect(await statusOf(c.call(gw, clientId, keys[i]!, 1))).toBe(Status.FAILED_PRECONDITION);
    }
    const appointments = await gw.client.appointments.listAppointments({ clientId });
    expect(appointments.appointments).toHaveLength(1 + 3);
    expect((await gw.client.handoffs.listHandoffs({ clientId })).handoffs).toHaveLength(1 + 2);
    const url = topology.shards.find((s) => s.name === to)!.url;
    const stored = await withPg(url, async (pg) =>
      pg.query<{ id: string }>(
        `SELECT request_id::text AS id FROM "${tenant!.schema}".request_ids ORDER BY 1`,
      ),
    );
    expect(stored.rows.map((r) => r.id)).toEqual([...keys].sort());
  });

  describe('retention', () => {
    it(`keys older than the retention are pruned by a later keyed create; younger ones stay`, async () => {
      const clientId = freshClientId('idem');
      const { tenant } = await gw.client.tenants.createTenant({ clientId });
      const url = topology.shards.find((s) => s.name === tenant!.shard)!.url;
      const keyTable = `"${tenant!.schema}".request_ids`;
      const [old, young] = [randomUUID(), randomUUID()];
      const first = await cases[0]!.call(gw, clientId, old);
      await cases[0]!.call(gw, clientId, young);
      await withPg(url, (pg) =>
        pg.query(
          `UPDATE ${keyTable} SET created_at = now() - CASE request_id
             WHEN $1::uuid THEN interval '8 days' ELSE interval '6 days' END`,
          [old],
        ),
      );
      // One keyed create in 16 prunes: those whose request_id ends in 0.
      const notPruning = randomUUID().replace(/.$/, '1');
      await cases[0]!.call(gw, clientId, notPruning);
      const keysNow = async (): Promise<string[]> =>
        withPg(url, async (pg) =>
          (
            await pg.query<{ id: string }>(`SELECT request_id::text AS id FROM ${keyTable}`)
          ).rows.map((r) => r.id),
        );
      expect(await keysNow()).toContain(old);

      const pruning = randomUUID().replace(/.$/, '0');
      await cases[0]!.call(gw, clientId, pruning);
      expect((await keysNow()).sort()).toEqual([young, notPruning, pruning].sort());
      // The appointment the expired key made stays; the key itself is forgotten, so a retry
      // that late is a new request.
      const late = await cases[0]!.call(gw, clientId, old);
      expect(late).not.toEqual(first);
      expect(await cases[0]!.count(gw, clientId)).toBe(5);
    });
  });

  it('shared keys belong to their caller: two callers may use the same request_id', async () => {
    const { shared } = gw.gateway.context;
    const requestId = randomUUID();
    const topic = topicOf(freshClientId('idem'));
    const entry = (content: string): { topic: string; agent: string; content: string } => ({
      topic,
      agent: 'researcher',
      content,
    });
    const keyOf = (caller: string, content: string): ReturnType<typeof requestKey> =>
      requestKey(requestId, 'AddKnowledgeEntry', entry(content), caller);
    const a = await shared.addKnowledge(entry('one'), undefined, keyOf('client:alpha', 'one'));
    const b = await shared.addKnowledge(entry('two'), undefined, keyOf('client:beta', 'two'));
    expect(b.id).not.toBe(a.id);
    expect(
      await shared.addKnowledge(entry('one'), undefined, keyOf('client:alpha', 'one')),
    ).toEqual(a);
    const listed = await gw.client.shared.listKnowledgeEntries({ topic });
    expect(listed.entries.map((e) => e.content).sort()).toEqual(['one', 'two']);
  });
});
