import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppointmentStatus } from '../../src/gen/shardgate/v1/appointment.js';
import {
  createTestTopology,
  errorOf,
  freshClientId,
  startTestGateway,
  uniqueSuffix,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

/** What a case may refer to: a fresh client with two appointments and two handoffs. */
interface Ctx {
  clientId: string;
  appointmentId: string;
  /** A real next_page_token of ListAppointments, ListHandoffs, ListKnowledgeEntries (page size 1). */
  tokens: { appointments: string; handoffs: string; knowledge: string };
  knowledgeTopic: string;
}

interface Case {
  /** Names the RPC and the bad field. */
  name: string;
  /** Text the status message must contain: the offending field. */
  field: string;
  call: (gw: TestGateway, c: Ctx) => Promise<unknown>;
}

const NIL_UUID = '00000000-0000-4000-8000-000000000000';
const injection = "1' OR '1'='1";
const at = (iso: string): Date => new Date(iso);
const long = (n: number, ch = 'a'): string => ch.repeat(n);

/** `{a: {a: … {leaf: 1}}}` with `levels` objects. */
function nested(levels: number): Record<string, unknown> {
  let doc: Record<string, unknown> = { leaf: 1 };
  for (let i = 1; i < levels; i++) doc = { a: doc };
  return doc;
}

/** A page token with its cursor edited, as a caller tampering with it would. */
function tamper(token: string, edit: (cursor: unknown[]) => void): string {
  const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { c: unknown[] };
  edit(parsed.c);
  return Buffer.from(JSON.stringify(parsed)).toString('base64url');
}

const garbageTokens: [string, string][] = [
  ['not base64 JSON', 'garbage'],
  ['punctuation', '%%%'],
  ['JSON null', Buffer.from('null').toString('base64url')],
  ['a JSON array', Buffer.from('[1,2]').toString('base64url')],
  [
    'a forged fingerprint',
    Buffer.from(JSON.stringify({ f: 'forged', c: [0, NIL_UUID] })).toString('base64url'),
  ],
];

const appointment = {
  clientPhone: '+1 555 0100',
  scheduledAt: at('2031-01-01T09:00:00.000Z'),
  serviceType: 'furnace-repair',
};
const handoff = { fromAgent: 'intake', toAgent: 'dispatch', version: 1, summary: { note: 'ok' } };

const badClientIds: [string, string][] = [
  ['empty', ''],
  ['uppercase', 'Acme-HVAC'],
  ['an SQL fragment', "x'; DROP SCHEMA public CASCADE;--"],
  ['64 characters', long(64, 'c')],
];

const appointmentCases: Case[] = [
  {
    name: 'CreateAppointment without appointment',
    field: 'appointment',
    call: (g, c) => g.client.appointments.createAppointment({ clientId: c.clientId }),
  },
  ...(
    [
      ['empty', ''],
      ['letters', 'abc'],
      ['33 characters', long(33, '5')],
      ['an SQL fragment', "555'); DROP TABLE appointments;--"],
      ['no digits', '+-() .'],
      ['a newline', '555\n0100'],
    ] as const
  ).map(([what, clientPhone]): Case => ({
    name: `CreateAppointment with client_phone ${what}`,
    field: 'appointment.client_phone',
    call: (g, c) =>
      g.client.appointments.createAppointment({
        clientId: c.clientId,
        appointment: { ...appointment, clientPhone },
      }),
  })),
  {
    name: 'CreateAppointment without scheduled_at',
    field: 'appointment.scheduled_at',
    call: (g, c) =>
      g.client.appointments.createAppointment({
        clientId: c.clientId,
        appointment: { ...appointment, scheduledAt: undefined },
      }),
  },
  {
    name: 'CreateAppointment with scheduled_at in year 10000',
    field: 'appointment.scheduled_at',
    call: (g, c) =>
      g.client.appointments.createAppointment({
        clientId: c.clientId,
        appointment: { ...appointment, scheduledAt: at('+010000-01-01T00:00:00Z') },
      }),
  },
  ...(
    [
      ['empty', ''],
      ['201 characters', long(201)],
      ['a newline', 'furnace\nrepair'],
      ['a NUL', 'furnace\u0000repair'],
      ['a DEL', 'furnace\u007f'],
    ] as const
  ).map(([what, serviceType]): Case => ({
    name: `CreateAppointment with service_type ${what}`,
    field: 'appointment.service_type',
    call: (g, c) =>
      g.client.appointments.createAppointment({
        clientId: c.clientId,
        appointment: { ...appointment, serviceType },
      }),
  })),
  {
    name: 'CreateAppointment with an unknown status',
    field: 'appointment.status',
    call: (g, c) =>
      g.client.appointments.createAppointment({
        clientId: c.clientId,
        appointment: { ...appointment, status: 99 as AppointmentStatus },
      }),
  },
  ...badClientIds.map(([what, clientId]): Case => ({
    name: `CreateAppointment with client_id ${what}`,
    field: 'client_id',
    call: (g) => g.client.appointments.createAppointment({ clientId, appointment }),
  })),
  ...(
    [
      ['empty', '', 'id is required'],
      ['not a UUID', 'nope', 'id must be a UUID'],
      ['an SQL fragment', injection, 'id must be a UUID'],
      ['a UUID with a suffix', `${NIL_UUID}x`, 'id must be a UUID'],
    ] as const
  ).flatMap(([what, id, message]): Case[] => [
    {
      name: `GetAppointment with id ${what}`,
      field: message,
      call: (g, c) => g.client.appointments.getAppointment({ clientId: c.clientId, id }),
    },
    {
      name: `CancelAppointment with id ${what}`,
      field: message,
      call: (g, c) => g.client.appointments.cancelAppointment({ clientId: c.clientId, id }),
    },
    {
      name: `UpdateAppointment with appointment.id ${what}`,
      field: `appointment.${message}`,
      call: (g, c) =>
        g.client.appointments.updateAppointment({
          clientId: c.clientId,
          appointment: { id, serviceType: 'x' },
          updateMask: ['service_type'],
        }),
    },
  ]),
  {
    name: 'GetAppointment with client_id uppercase',
    field: 'client_id',
    call: (g) => g.client.appointments.getAppointment({ clientId: 'ACME', id: NIL_UUID }),
  },
  {
    name: 'ListAppointments with page_size -1',
    field: 'page_size',
    call: (g, c) => g.client.appointments.listAppointments({ clientId: c.clientId, pageSize: -1 }),
  },
  ...garbageTokens.map(([what, pageToken]): Case => ({
    name: `ListAppointments with page_token ${what}`,
    field: 'page_token',
    call: (g, c) => g.client.appointments.listAppointments({ clientId: c.clientId, pageToken }),
  })),
  {
    name: 'ListAppointments with a tampered page_token id',
    field: 'page_token',
    call: (g, c) =>
      g.client.appointments.listAppointments({
        clientId: c.clientId,
        pageSize: 1,
        pageToken: tamper(c.tokens.appointments, (k) => (k[1] = injection)),
      }),
  },
  {
    name: 'ListAppointments with a tampered page_token time',
    field: 'page_token',
    call: (g, c) =>
      g.client.appointments.listAppointments({
        clientId: c.clientId,
        pageSize: 1,
        pageToken: tamper(c.tokens.appointments, (k) => (k[0] = 'yesterday')),
      }),
  },
  {
    name: 'ListAppointments with an UNSPECIFIED status filter',
    field: 'statuses',
    call: (g, c) =>
      g.client.appointments.listAppointments({
        clientId: c.clientId,
        statuses: [AppointmentStatus.APPOINTMENT_STATUS_UNSPECIFIED],
      }),
  },
  {
    name: 'ListAppointments with scheduled_after in year 0',
    field: 'scheduled_after',
    call: (g, c) =>
      g.client.appointments.listAppointments({
        clientId: c.clientId,
        scheduledAfter: at('0000-06-01T00:00:00Z'),
      }),
  },
  {
    name: 'ListAppointments with scheduled_before in year 10000',
    field: 'scheduled_before',
    call: (g, c) =>
      g.client.appointments.listAppointments({
        clientId: c.clientId,
        scheduledBefore: at('+010000-01-01T00:00:00Z'),
      }),
  },
  {
    name: 'UpdateAppointment without appointment',
    field: 'appointment',
    call: (g, c) =>
      g.client.appointments.updateAppointment({ clientId: c.clientId, updateMask: ['status'] }),
  },
  {
    name: 'UpdateAppointment with a bad masked client_phone',
    field: 'appointment.client_phone',
    call: (g, c) =>
      g.client.appointments.updateAppointment({
        clientId: c.clientId,
        appointment: { id: c.appointmentId, clientPhone: 'abc' },
        updateMask: ['client_phone'],
      }),
  },
  {
    name: 'UpdateAppointment with a masked but unset scheduled_at',
    field: 'appointment.scheduled_at',
    call: (g, c) =>
      g.client.appointments.updateAppointment({
        clientId: c.clientId,
        appointment: { id: c.appointmentId, serviceType: 'x' },
        updateMask: ['scheduled_at', 'service_type'],
      }),
  },
  {
    name: 'UpdateAppointment with a NUL in a masked service_type',
    field: 'appointment.service_type',
    call: (g, c) =>
      g.client.appointments.updateAppointment({
        clientId: c.clientId,
        appointment: { id: c.appointmentId, serviceType: 'a\u0000b' },
        updateMask: ['service_type'],
      }),
  },
  {
    name: 'UpdateAppointment with nothing to change',
    field: 'update_mask',
    call: (g, c) =>
      g.client.appointments.updateAppointment({
        clientId: c.clientId,
        appointment: { id: c.appointmentId },
      }),
  },
  {
    name: 'UpdateAppointment with an SQL fragment as mask path',
    field: 'update_mask',
    call: (g, c) =>
      g.client.appointments.updateAppointment({
        clientId: c.clientId,
        appointment: { id: c.appointmentId, serviceType: 'x' },
        updateMask: ["service_type = 'x', status"],
      }),
  },
];

const summaryCases: [string, Record<string, unknown>][] = [
  ['nested 40 deep', nested(40)],
  ['nested 33 deep', nested(33)],
  ['over 256 KiB', { big: long(256 * 1024) }],
  ['with a NUL in a string value', { note: 'before\u0000after' }],
  ['with a NUL in a key', { 'k\u0000': 1 }],
  ['with NaN', { n: Number.NaN }],
  ['with Infinity inside an array', { list: [1, Number.POSITIVE_INFINITY] }],
  ['with the key constructor inside', { outer: { constructor: { x: 1 } } }],
];

const handoffCases: Case[] = [
  {
    name: 'AppendHandoff without handoff',
    field: 'handoff',
    call: (g, c) => g.client.handoffs.appendHandoff({ clientId: c.clientId }),
  },
  ...(
    [
      ['from_agent', 'empty', ''],
      ['from_agent', '129 characters', long(129)],
      ['from_agent', 'a newline', 'intake\nagent'],
      ['from_agent', 'a NUL', 'intake\u0000'],
      ['to_agent', 'empty', ''],
      ['to_agent', '129 characters', long(129)],
      ['to_agent', 'a BEL', 'dispatch\u0007'],
      ['to_agent', 'an ESC', '\u001b[31mred'],
    ] as const
  ).map(([field, what, value]): Case => ({
    name: `AppendHandoff with ${field} ${what}`,
    field: `handoff.${field}`,
    call: (g, c) =>
      g.client.handoffs.appendHandoff({
        clientId: c.clientId,
        handoff: { ...handoff, [field === 'from_agent' ? 'fromAgent' : 'toAgent']: value },
      }),
  })),
  ...summaryCases.map(([what, summary]): Case => ({
    name: `AppendHandoff with summary ${what}`,
    field: 'handoff.summary',
    call: (g, c) =>
      g.client.handoffs.appendHandoff({ clientId: c.clientId, handoff: { ...handoff, summary } }),
  })),
  {
    name: 'AppendHandoff with a negative version',
    field: 'handoff.version',
    call: (g, c) =>
      g.client.handoffs.appendHandoff({
        clientId: c.clientId,
        handoff: { ...handoff, version: -1 },
      }),
  },
  ...badClientIds.map(([what, clientId]): Case => ({
    name: `AppendHandoff with client_id ${what}`,
    field: 'client_id',
    call: (g) => g.client.handoffs.appendHandoff({ clientId, handoff }),
  })),
  {
    name: 'ListHandoffs with page_size -1',
    field: 'page_size',
    call: (g, c) => g.client.handoffs.listHandoffs({ clientId: c.clientId, pageSize: -1 }),
  },
  ...garbageTokens.map(([what, pageToken]): Case => ({
    name: `ListHandoffs with page_token ${what}`,
    field: 'page_token',
    call: (g, c) => g.client.handoffs.listHandoffs({ clientId: c.clientId, pageToken }),
  })),
  {
    name: 'ListHandoffs with a tampered page_token id',
    field: 'page_token',
    call: (g, c) =>
      g.client.handoffs.listHandoffs({
        clientId: c.clientId,
        pageSize: 1,
        pageToken: tamper(c.tokens.handoffs, (k) => (k[1] = 'nope')),
      }),
  },
  {
    name: 'ListHandoffs with from_agent 129 characters',
    field: 'from_agent',
    call: (g, c) => g.client.handoffs.listHandoffs({ clientId: c.clientId, fromAgent: long(129) }),
  },
  {
    name: 'ListHandoffs with to_agent with a tab',
    field: 'to_agent',
    call: (g, c) => g.client.handoffs.listHandoffs({ clientId: c.clientId, toAgent: 'a\tb' }),
  },
  {
    name: 'ListHandoffs with created_after in year 0',
    field: 'created_after',
    call: (g, c) =>
      g.client.handoffs.listHandoffs({
        clientId: c.clientId,
        createdAfter: at('0000-06-01T00:00:00Z'),
      }),
  },
  {
    name: 'GetLatestHandoff with to_agent empty',
    field: 'to_agent',
    call: (g, c) => g.client.handoffs.getLatestHandoff({ clientId: c.clientId, toAgent: '' }),
  },
  {
    name: 'GetLatestHandoff with to_agent 129 characters',
    field: 'to_agent',
    call: (g, c) =>
      g.client.handoffs.getLatestHandoff({ clientId: c.clientId, toAgent: long(129) }),
  },
  {
    name: 'GetLatestHandoff with to_agent with a NUL',
    field: 'to_agent',
    call: (g, c) =>
      g.client.handoffs.getLatestHandoff({ clientId: c.clientId, toAgent: 'x\u0000' }),
  },
  {
    name: 'GetLatestHandoff with client_id uppercase',
    field: 'client_id',
    call: (g) => g.client.handoffs.getLatestHandoff({ clientId: 'Nope', toAgent: 'dispatch' }),
  },
];

const stateCases: Case[] = [
  ...badClientIds.map(([what, clientId]): Case => ({
    name: `GetState with client_id ${what}`,
    field: 'client_id',
    call: (g) => g.client.state.getState({ clientId }),
  })),
  ...(
    [
      ['nested 40 deep', nested(40)],
      ['nested 34 deep', nested(34)],
      ['nested 33 deep', nested(33)],
      ['over 256 KiB', { big: long(256 * 1024) }],
      ['with a NUL in a string value', { s: '\u0000' }],
      ['with NaN', { n: Number.NaN }],
      ['with the key constructor inside', { outer: { constructor: 1 } }],
      // Regression: the generated Struct decoder assigns `fields['__proto__']`, which sets the
      // prototype instead of a key, so the key vanished silently and the rest was stored.
      [
        'with the key __proto__ inside',
        { outer: JSON.parse('{"__proto__": {"polluted": true}}') as unknown },
      ],
    ] as const
  ).flatMap(([what, doc]): Case[] => [
    {
      name: `PutState with document ${what}`,
      field: 'document',
      call: (g, c) => g.client.state.putState({ clientId: c.clientId, document: doc }),
    },
    {
      name: `PatchState with patch ${what}`,
      field: 'patch',
      call: (g, c) => g.client.state.patchState({ clientId: c.clientId, patch: doc }),
    },
  ]),
  // Regression: a PutState without a document stored {} and so wiped the state.
  {
    name: 'PutState without document',
    field: 'document',
    call: (g, c) => g.client.state.putState({ clientId: c.clientId }),
  },
  {
    name: 'PutState with a negative expected_version',
    field: 'expected_version',
    call: (g, c) =>
      g.client.state.putState({ clientId: c.clientId, document: {}, expectedVersion: -1 }),
  },
  {
    name: 'PatchState without patch',
    field: 'patch',
    call: (g, c) => g.client.state.patchState({ clientId: c.clientId }),
  },
  {
    name: 'PatchState with a negative expected_version',
    field: 'expected_version',
    call: (g, c) =>
      g.client.state.patchState({ clientId: c.clientId, patch: { a: 1 }, expectedVersion: -1 }),
  },
  {
    name: 'PutState with client_id uppercase',
    field: 'client_id',
    call: (g) => g.client.state.putState({ clientId: 'ACME', document: {} }),
  },
  {
    name: 'PatchState with client_id uppercase',
    field: 'client_id',
    call: (g) => g.client.state.patchState({ clientId: 'ACME', patch: {} }),
  },
];

const benchmark = {
  industry: 'hvac',
  metric: 'first_time_fix_rate',
  value: 0.78,
  unit: 'ratio',
  source: 'survey',
};

const sharedCases: Case[] = [
  {
    name: 'PutBenchmark without benchmark',
    field: 'benchmark',
    call: (g) => g.client.shared.putBenchmark({}),
  },
  ...([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY] as const).map(
    (value): Case => ({
      name: `PutBenchmark with value ${value}`,
      field: 'benchmark.value',
      call: (g) => g.client.shared.putBenchmark({ benchmark: { ...benchmark, value } }),
    }),
  ),
  ...(
    [
      ['uppercase', 'HVAC'],
      ['a space', 'hv ac'],
      ['empty', ''],
      ['65 characters', long(65)],
      ['a dot', 'hv.ac'],
      ['an SQL fragment', "hvac' OR '1'='1"],
    ] as const
  ).flatMap(([what, industry]): Case[] => [
    {
      name: `PutBenchmark with industry ${what}`,
      field: 'benchmark.industry',
      call: (g) => g.client.shared.putBenchmark({ benchmark: { ...benchmark, industry } }),
    },
    {
      name: `GetBenchmark with industry ${what}`,
      field: 'industry',
      call: (g) => g.client.shared.getBenchmark({ industry, metric: benchmark.metric }),
    },
  ]),
  ...(
    [
      ['uppercase', 'First_Time'],
      ['a space', 'first time'],
      ['empty', ''],
      ['129 characters', long(129)],
    ] as const
  ).map(([what, metric]): Case => ({
    name: `PutBenchmark with metric ${what}`,
    field: 'benchmark.metric',
    call: (g) => g.client.shared.putBenchmark({ benchmark: { ...benchmark, metric } }),
  })),
  {
    name: 'PutBenchmark with unit 33 characters',
    field: 'benchmark.unit',
    call: (g) => g.client.shared.putBenchmark({ benchmark: { ...benchmark, unit: long(33) } }),
  },
  {
    name: 'PutBenchmark with source 501 characters',
    field: 'benchmark.source',
    call: (g) => g.client.shared.putBenchmark({ benchmark: { ...benchmark, source: long(501) } }),
  },
  {
    name: 'PutBenchmark with a NUL in source',
    field: 'benchmark.source',
    call: (g) => g.client.shared.putBenchmark({ benchmark: { ...benchmark, source: 'a\u0000' } }),
  },
  {
    name: 'GetBenchmark with metric empty',
    field: 'metric',
    call: (g) => g.client.shared.getBenchmark({ industry: 'hvac', metric: '' }),
  },
  {
    name: 'ListBenchmarks with page_size -1',
    field: 'page_size',
    call: (g) => g.client.shared.listBenchmarks({ pageSize: -1 }),
  },
  ...garbageTokens.map(([what, pageToken]): Case => ({
    name: `ListBenchmarks with page_token ${what}`,
    field: 'page_token',
    call: (g) => g.client.shared.listBenchmarks({ pageToken }),
  })),
  {
    name: 'ListBenchmarks with industry with a space',
    field: 'industry',
    call: (g) => g.client.shared.listBenchmarks({ industry: 'Bad Industry' }),
  },
  {
    name: 'ListBenchmarks with industry with a dot',
    field: 'industry',
    call: (g) => g.client.shared.listBenchmarks({ industry: 'hv.ac' }),
  },
  {
    name: 'ListBenchmarks with metric uppercase',
    field: 'metric',
    call: (g) => g.client.shared.listBenchmarks({ metric: 'UPPER' }),
  },
  {
    name: 'AddKnowledgeEntry without entry',
    field: 'entry',
    call: (g) => g.client.shared.addKnowledgeEntry({}),
  },
  ...(
    [
      ['topic', 'uppercase and a space', 'Bad Topic'],
      ['topic', 'empty', ''],
      ['topic', '129 characters', long(129)],
      ['agent', 'empty', ''],
      ['agent', '129 characters', long(129)],
      ['agent', 'a NUL', 'agent\u0000'],
      ['content', 'empty', ''],
      ['content', 'over 64 KiB', long(64 * 1024 + 1)],
      ['content', 'over 64 KiB in UTF-8 bytes', long(32 * 1024 + 1, 'é')],
      ['content', 'a NUL', 'line\u0000'],
      ['content', 'a vertical tab', 'line\u000b'],
    ] as const
  ).map(([field, what, value]): Case => ({
    name: `AddKnowledgeEntry with ${field} ${what}`,
    field: `entry.${field}`,
    call: (g) =>
      g.client.shared.addKnowledgeEntry({
        entry: { topic: 'dispatch', agent: 'scheduler', content: 'ok', [field]: value },
      }),
  })),
  {
    name: 'ListKnowledgeEntries with page_size -1',
    field: 'page_size',
    call: (g) => g.client.shared.listKnowledgeEntries({ pageSize: -1 }),
  },
  ...garbageTokens.map(([what, pageToken]): Case => ({
    name: `ListKnowledgeEntries with page_token ${what}`,
    field: 'page_token',
    call: (g) => g.client.shared.listKnowledgeEntries({ pageToken }),
  })),
  {
    name: 'ListKnowledgeEntries with a tampered page_token id',
    field: 'page_token',
    call: (g, c) =>
      g.client.shared.listKnowledgeEntries({
        topic: c.knowledgeTopic,
        pageSize: 1,
        pageToken: tamper(c.tokens.knowledge, (k) => (k[1] = injection)),
      }),
  },
  {
    name: 'ListKnowledgeEntries with topic uppercase',
    field: 'topic',
    call: (g) => g.client.shared.listKnowledgeEntries({ topic: 'UPPER' }),
  },
  {
    name: 'ListKnowledgeEntries with agent 129 characters',
    field: 'agent',
    call: (g) => g.client.shared.listKnowledgeEntries({ agent: long(129) }),
  },
];

describe('bad input', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  let catalog: pg.Client;
  const shardDbs = new Map<string, pg.Client>();
  const knowledgeTopic = `bad-input.${uniqueSuffix()}`;
  let knowledgeToken: string;
  /** Fresh clients, each used by exactly one test. */
  const spare: Ctx[] = [];

  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(topology);
    catalog = new pg.Client({ connectionString: topology.catalogUrl });
    await catalog.connect();
    for (const shard of topology.shards) {
      const db = new pg.Client({ connectionString: shard.url });
      await db.connect();
      shardDbs.set(shard.name, db);
    }
    for (const content of ['one', 'two']) {
      await gw.client.shared.addKnowledgeEntry({
        entry: { topic: knowledgeTopic, agent: 'seed', content },
      });
    }
    knowledgeToken = (
      await gw.client.shared.listKnowledgeEntries({ topic: knowledgeTopic, pageSize: 1 })
    ).nextPageToken;
    // One fresh client per table-driven test, made ahead in parallel so the file stays fast.
    const needed = [appointmentCases, handoffCases, stateCases, sharedCases].flat().length;
    for (let i = 0; i < needed; i += 8) {
      spare.push(...(await Promise.all(Array.from({ length: Math.min(8, needed - i) }, freshCtx))));
    }
  });
  afterAll(async () => {
    await Promise.all([catalog?.end(), ...[...shardDbs.values()].map((db) => db.end())]);
    await gw?.close();
  });

  /** A fresh client with two appointments and two handoffs, and page tokens over them. */
  async function freshCtx(): Promise<Ctx> {
    const clientId = freshClientId('bad');
    await gw.client.tenants.createTenant({ clientId });
    const [made] = await Promise.all([
      Promise.all(
        [1, 2].map(
          async (): Promise<string> =>
            (await gw.client.appointments.createAppointment({ clientId, appointment })).appointment!
              .id,
        ),
      ),
      Promise.all([1, 2].map(() => gw.client.handoffs.appendHandoff({ clientId, handoff }))),
    ]);
    const [appointmentPage, handoffPage] = await Promise.all([
      gw.client.appointments.listAppointments({ clientId, pageSize: 1 }),
      gw.client.handoffs.listHandoffs({ clientId, pageSize: 1 }),
    ]);
    const tokens = {
      appointments: appointmentPage.nextPageToken,
      handoffs: handoffPage.nextPageToken,
      knowledge: knowledgeToken,
    };
    return { clientId, appointmentId: made[0]!, tokens, knowledgeTopic };
  }

  /** A fingerprint of everything a call could have written: the client's tables and the shared ones. */
  async function snapshot(clientId: string): Promise<Record<string, string>> {
    const { tenant } = await gw.client.tenants.getTenant({ clientId });
    const db = shardDbs.get(tenant!.shard)!;
    const schema = pg.escapeIdentifier(tenant!.schema);
    const digest = async (client: pg.Client, table: string): Promise<string> =>
      (
        await client.query<{ d: string }>(
          `SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) AS d FROM ${table} t`,
        )
      ).rows[0]!.d;
    // One query at a time per connection (pg 9 will refuse concurrent queries on one client).
    const appointments = await digest(db, `${schema}.appointments`);
    const handoffs = await digest(db, `${schema}.handoffs`);
    const state = await digest(db, `${schema}.state`);
    const benchmarks = await digest(catalog, 'shared.benchmarks');
    const knowledge = await digest(catalog, 'shared.knowledge_entries');
    return { appointments, handoffs, state, benchmarks, knowledge };
  }

  describe.each([
    ['AppointmentService', appointmentCases],
    ['HandoffService', handoffCases],
    ['StateService', stateCases],
    ['SharedService', sharedCases],
  ] as const)('%s', (_service, cases) => {
    it.each(cases.map((c) => [c.name, c] as const))(
      '%s → INVALID_ARGUMENT, nothing written',
      async (_name, c) => {
        const ctx = spare.pop()!;
        expect(ctx).toBeDefined();
        const before = await snapshot(ctx.clientId);
        const err = await errorOf(c.call(gw, ctx));
        expect({ code: err.code, names: err.details.includes(c.field) }, err.details).toEqual({
          code: Status.INVALID_ARGUMENT,
          names: true,
        });
        expect(await snapshot(ctx.clientId)).toEqual(before);
        // The gateway still answers normally for this client.
        expect((await gw.client.state.getState({ clientId: ctx.clientId })).state?.version).toBe(0);
      },
    );
  });

  it('accepts the longest valid values (the limits are not off by one)', async () => {
    const { clientId } = await freshCtx();
    const { appointment: a } = await gw.client.appointments.createAppointment({
      clientId,
      appointment: { ...appointment, clientPhone: long(32, '5'), serviceType: long(200) },
    });
    expect([a!.clientPhone.length, a!.serviceType.length]).toEqual([32, 200]);
    const { handoff: h } = await gw.client.handoffs.appendHandoff({
      clientId,
      handoff: { ...handoff, fromAgent: long(128), toAgent: long(128, 'b'), summary: nested(32) },
    });
    expect(h!.summary).toEqual(nested(32));
    const { state } = await gw.client.state.putState({ clientId, document: nested(32) });
    expect(state!.document).toEqual(nested(32));
    const industry = `i${uniqueSuffix()}${long(55)}`;
    const { benchmark: b } = await gw.client.shared.putBenchmark({
      benchmark: {
        industry,
        metric: long(128, 'm'),
        value: 1,
        unit: long(32, 'u'),
        source: long(500, 's'),
      },
    });
    expect(b!.industry).toHaveLength(64);
    const { entry } = await gw.client.shared.addKnowledgeEntry({
      entry: { topic: `t${uniqueSuffix()}`, agent: long(128), content: long(32 * 1024, 'é') },
    });
    expect(Buffer.byteLength(entry!.content)).toBe(64 * 1024);
  });

  describe('unknown client', () => {
    const calls: [string, (gw: TestGateway, clientId: string) => Promise<unknown>][] = [
      [
        'CreateAppointment',
        (g, clientId) => g.client.appointments.createAppointment({ clientId, appointment }),
      ],
      [
        'GetAppointment',
        (g, clientId) => g.client.appointments.getAppointment({ clientId, id: NIL_UUID }),
      ],
      ['ListAppointments', (g, clientId) => g.client.appointments.listAppointments({ clientId })],
      [
        'UpdateAppointment',
        (g, clientId) =>
          g.client.appointments.updateAppointment({
            clientId,
            appointment: { id: NIL_UUID, serviceType: 'x' },
            updateMask: ['service_type'],
          }),
      ],
      [
        'CancelAppointment',
        (g, clientId) => g.client.appointments.cancelAppointment({ clientId, id: NIL_UUID }),
      ],
      ['AppendHandoff', (g, clientId) => g.client.handoffs.appendHandoff({ clientId, handoff })],
      ['ListHandoffs', (g, clientId) => g.client.handoffs.listHandoffs({ clientId })],
      [
        'GetLatestHandoff',
        (g, clientId) => g.client.handoffs.getLatestHandoff({ clientId, toAgent: 'dispatch' }),
      ],
      ['GetState', (g, clientId) => g.client.state.getState({ clientId })],
      ['PutState', (g, clientId) => g.client.state.putState({ clientId, document: { a: 1 } })],
      ['PatchState', (g, clientId) => g.client.state.patchState({ clientId, patch: { a: 1 } })],
    ];

    it.each(calls)(
      '%s → NOT_FOUND naming the client, and no tenant or schema appears',
      async (_rpc, call) => {
        const clientId = freshClientId('ghost');
        const err = await errorOf(call(gw, clientId));
        expect(err.code).toBe(Status.NOT_FOUND);
        expect(err.details).toContain(`'${clientId}'`);
        expect((await errorOf(gw.client.tenants.getTenant({ clientId }))).code).toBe(
          Status.NOT_FOUND,
        );
        const schema = `client_${clientId.replaceAll('-', '_')}`;
        for (const db of shardDbs.values()) {
          const found = await db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
          expect(found.rowCount).toBe(0);
        }
      },
    );
  });

  it('still serves every service normally afterwards', async () => {
    const clientId = freshClientId('after');
    const { created } = await gw.client.tenants.createTenant({ clientId });
    expect(created).toBe(true);
    const { appointment: a } = await gw.client.appointments.createAppointment({
      clientId,
      appointment,
    });
    expect(
      (await gw.client.appointments.getAppointment({ clientId, id: a!.id })).appointment,
    ).toEqual(a);
    const { handoff: h } = await gw.client.handoffs.appendHandoff({ clientId, handoff });
    expect(
      (await gw.client.handoffs.getLatestHandoff({ clientId, toAgent: 'dispatch' })).handoff,
    ).toEqual(h);
    expect(
      (await gw.client.state.patchState({ clientId, patch: { ok: true } })).state,
    ).toMatchObject({
      document: { ok: true },
      version: 1,
    });
    const industry = `after${uniqueSuffix()}`;
    await gw.client.shared.putBenchmark({ benchmark: { ...benchmark, industry } });
    expect(
      (await gw.client.shared.getBenchmark({ industry, metric: benchmark.metric })).benchmark
        ?.value,
    ).toBe(0.78);
  });
});
