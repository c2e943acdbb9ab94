import { randomUUID } from 'node:crypto';
import { Status } from 'nice-grpc';
import type { ShardgateClient } from '../../src/client/index.js';

/**
 * Who may call a method, written out by hand as the specification the gateway's policy table is
 * tested against (deliberately not derived from src/auth/policy.ts):
 * - `client`: a client token for that client, or service/admin;
 * - `shared-read`: any valid token;
 * - `service`: service or admin;
 * - `admin`: admin only.
 */
export type Level = 'client' | 'shared-read' | 'service' | 'admin';

/** One RPC with a harmless request and the status it gets once past authorization. */
export interface MethodCase {
  /** Full method path, e.g. `/shardgate.v1.StateService/GetState`. */
  readonly path: string;
  readonly level: Level;
  /** What the call answers when it is allowed (Status.OK for success). */
  readonly allowed: Status;
  /** Calls the method about `clientId` (for the methods that take one) and settles with it. */
  readonly invoke: (client: ShardgateClient, clientId: string) => Promise<unknown>;
}

/** Fixtures some requests refer to. */
export interface MethodFixtures {
  /** A tenant that is already churned: ChurnTenant on it is an idempotent OK that changes nothing. */
  readonly churnedClientId: string;
}

const appointment = () => ({
  clientPhone: '+1 555 0100',
  scheduledAt: new Date('2031-01-01T09:00:00Z'),
  serviceType: 'auth-test',
});
const handoff = () => ({ fromAgent: 'intake', toAgent: 'dispatch', version: 1, summary: { a: 1 } });

/** Reads a server stream to its first message (or its error). */
async function first(stream: AsyncIterable<unknown>): Promise<unknown> {
  for await (const message of stream) return message;
  return undefined;
}

/**
 * Opens WatchHandoffs and settles once the server confirms the subscription (OK) or refuses the
 * call (its error), then ends the watch.
 */
async function watchSubscribed(client: ShardgateClient, clientId: string): Promise<void> {
  const controller = new AbortController();
  let subscribed!: () => void;
  const header = new Promise<void>((resolve) => (subscribed = resolve));
  const stream = client.handoffs.watchHandoffs(
    { clientId, toAgent: 'dispatch' },
    {
      signal: controller.signal,
      onHeader: (h) => (h.get('shardgate-watch') === 'subscribed' ? subscribed() : undefined),
    },
  );
  const next = first(stream);
  next.catch(() => undefined);
  try {
    await Promise.race([header, next]);
  } finally {
    controller.abort();
  }
}

const T = '/shardgate.v1.TenantService/';
const A = '/shardgate.v1.AppointmentService/';
const H = '/shardgate.v1.HandoffService/';
const S = '/shardgate.v1.StateService/';
const X = '/shardgate.v1.SharedService/';
const M = '/shardgate.v1.AdminService/';

/** Every RPC of every shardgate service, each with a request that changes nothing that matters. */
export function methodCases(f: MethodFixtures): MethodCase[] {
  return [
    // CreateTenant of an existing tenant is an idempotent OK (created: false).
    c(`${T}CreateTenant`, 'service', Status.OK, (k, id) =>
      k.tenants.createTenant({ clientId: id }),
    ),
    c(`${T}GetTenant`, 'client', Status.OK, (k, id) => k.tenants.getTenant({ clientId: id })),
    c(`${T}ListTenants`, 'service', Status.OK, (k) => k.tenants.listTenants({ pageSize: 1 })),
    // Churning the target would break the other cases: churn one that already is. Reactivating
    // an active tenant is an idempotent OK too.
    c(`${T}ChurnTenant`, 'service', Status.OK, (k) =>
      k.tenants.churnTenant({ clientId: f.churnedClientId }),
    ),
    c(`${T}ReactivateTenant`, 'service', Status.OK, (k, id) =>
      k.tenants.reactivateTenant({ clientId: id }),
    ),

    c(`${A}CreateAppointment`, 'client', Status.OK, (k, id) =>
      k.appointments.createAppointment({ clientId: id, appointment: appointment() }),
    ),
    c(`${A}GetAppointment`, 'client', Status.NOT_FOUND, (k, id) =>
      k.appointments.getAppointment({ clientId: id, id: randomUUID() }),
    ),
    c(`${A}ListAppointments`, 'client', Status.OK, (k, id) =>
      k.appointments.listAppointments({ clientId: id, pageSize: 1 }),
    ),
    c(`${A}UpdateAppointment`, 'client', Status.NOT_FOUND, (k, id) =>
      k.appointments.updateAppointment({
        clientId: id,
        appointment: { id: randomUUID(), serviceType: 'x' },
        updateMask: ['service_type'],
      }),
    ),
    c(`${A}CancelAppointment`, 'client', Status.NOT_FOUND, (k, id) =>
      k.appointments.cancelAppointment({ clientId: id, id: randomUUID() }),
    ),
    c(`${A}BatchCreateAppointments`, 'client', Status.OK, (k, id) =>
      k.appointments.batchCreateAppointments({ clientId: id, appointments: [appointment()] }),
    ),
    c(`${A}BatchGetAppointments`, 'client', Status.NOT_FOUND, (k, id) =>
      k.appointments.batchGetAppointments({ clientId: id, ids: [randomUUID()] }),
    ),

    c(`${H}AppendHandoff`, 'client', Status.OK, (k, id) =>
      k.handoffs.appendHandoff({ clientId: id, handoff: handoff() }),
    ),
    c(`${H}ListHandoffs`, 'client', Status.OK, (k, id) =>
      k.handoffs.listHandoffs({ clientId: id, pageSize: 1 }),
    ),
    c(`${H}GetLatestHandoff`, 'client', Status.NOT_FOUND, (k, id) =>
      k.handoffs.getLatestHandoff({ clientId: id, toAgent: 'nobody-gets-these' }),
    ),
    c(`${H}BatchAppendHandoffs`, 'client', Status.OK, (k, id) =>
      k.handoffs.batchAppendHandoffs({ clientId: id, handoffs: [handoff()] }),
    ),
    c(`${H}WatchHandoffs`, 'client', Status.OK, watchSubscribed),

    c(`${S}GetState`, 'client', Status.OK, (k, id) => k.state.getState({ clientId: id })),
    c(`${S}PutState`, 'client', Status.OK, (k, id) =>
      k.state.putState({ clientId: id, document: { step: 'auth-test' } }),
    ),
    c(`${S}PatchState`, 'client', Status.OK, (k, id) =>
      k.state.patchState({ clientId: id, patch: { patched: true } }),
    ),

    c(`${X}GetBenchmark`, 'shared-read', Status.NOT_FOUND, (k) =>
      k.shared.getBenchmark({ industry: 'hvac', metric: 'no-such-metric' }),
    ),
    c(`${X}ListBenchmarks`, 'shared-read', Status.OK, (k) => k.shared.listBenchmarks({})),
    c(`${X}ListKnowledgeEntries`, 'shared-read', Status.OK, (k) =>
      k.shared.listKnowledgeEntries({ pageSize: 1 }),
    ),
    c(`${X}PutBenchmark`, 'service', Status.OK, (k) =>
      k.shared.putBenchmark({
        benchmark: { industry: 'hvac', metric: 'auth-test', value: 1, unit: 'ratio', source: 't' },
      }),
    ),
    c(`${X}AddKnowledgeEntry`, 'service', Status.OK, (k) =>
      k.shared.addKnowledgeEntry({
        entry: { topic: 'auth-test', agent: 'tester', content: 'written past authorization' },
      }),
    ),

    c(`${M}GetTopology`, 'admin', Status.OK, (k) => k.admin.getTopology({})),
    c(`${M}Locate`, 'admin', Status.OK, (k, id) => k.admin.locate({ clientId: id })),
    c(`${M}AddShard`, 'admin', Status.INVALID_ARGUMENT, (k) =>
      k.admin.addShard({ name: 'Not A Shard Name', dsn: 'postgres://nowhere/x', weight: 1 }),
    ),
    c(`${M}DrainShard`, 'admin', Status.NOT_FOUND, (k) =>
      k.admin.drainShard({ name: 'no-such-shard' }),
    ),
    c(`${M}RemoveShard`, 'admin', Status.NOT_FOUND, (k) =>
      k.admin.removeShard({ name: 'no-such-shard' }),
    ),
    c(`${M}SetShardWeight`, 'admin', Status.NOT_FOUND, (k) =>
      k.admin.setShardWeight({ name: 'no-such-shard', weight: 100 }),
    ),
    c(`${M}SetShardDsn`, 'admin', Status.NOT_FOUND, (k) =>
      k.admin.setShardDsn({ name: 'no-such-shard', dsn: 'postgres://gw:pw@127.0.0.1:1/db' }),
    ),
    c(`${M}PlanRebalance`, 'admin', Status.OK, (k) => k.admin.planRebalance({ limit: 1 })),
    c(`${M}MoveTenant`, 'admin', Status.INVALID_ARGUMENT, (k, id) =>
      first(k.admin.moveTenant({ clientId: id, toShard: 'Not A Shard' })),
    ),
    c(`${M}Rebalance`, 'admin', Status.INVALID_ARGUMENT, (k) =>
      first(k.admin.rebalance({ maxConcurrentMoves: 17, limit: 0 })),
    ),
    c(`${M}ListMoves`, 'admin', Status.OK, (k) => k.admin.listMoves({ pageSize: 1 })),
    c(`${M}GetMove`, 'admin', Status.NOT_FOUND, (k) => k.admin.getMove({ id: randomUUID() })),
    c(`${M}CancelMove`, 'admin', Status.NOT_FOUND, (k) => k.admin.cancelMove({ id: randomUUID() })),
    c(`${M}CreateToken`, 'admin', Status.OK, (k) =>
      k.admin.createToken({
        displayName: 'auth-test',
        scope: 'service',
        ttl: { seconds: 60, nanos: 0 },
      }),
    ),
    c(`${M}ListTokens`, 'admin', Status.OK, (k) => k.admin.listTokens({ pageSize: 1 })),
    c(`${M}RevokeToken`, 'admin', Status.NOT_FOUND, (k) =>
      k.admin.revokeToken({ id: '0000000000000000' }),
    ),
    c(`${M}ListAuditEvents`, 'admin', Status.OK, (k) => k.admin.listAuditEvents({ pageSize: 1 })),
  ];
}

function c(
  path: string,
  level: Level,
  allowed: Status,
  invoke: (client: ShardgateClient, clientId: string) => Promise<unknown>,
): MethodCase {
  return { path, level, allowed, invoke };
}

/** The status a call ends with: Status.OK when it succeeds, its gRPC code otherwise. */
export async function outcomeOf(call: Promise<unknown>): Promise<Status> {
  try {
    await call;
    return Status.OK;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number') return code;
    throw err;
  }
}
