import {
  Client,
  credentials,
  makeGenericClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import pg from 'pg';
import { createShardgateClient } from '../src/client/index.js';
import {
  AppointmentServiceDefinition,
  AppointmentStatus,
} from '../src/gen/shardgate/v1/appointment.js';
import { HandoffServiceDefinition } from '../src/gen/shardgate/v1/handoff.js';
import { StateServiceDefinition } from '../src/gen/shardgate/v1/state.js';
import { echoPayload, echoService } from './echo-service.js';
import { unaryCaller } from './grpc-js-client.js';
import type { Dataset, OpName } from './protocol.js';
import { tenantSql } from './tenant-sql.js';

/** One call of an op; `i` is a run-wide counter that spreads calls over tenants and rows. */
export type Op = (i: number) => Promise<unknown>;

/** The ops of every target, ready to call, and a way to close their connections. */
export interface Targets {
  ops: Record<OpName, Op>;
  close(): Promise<void>;
}

/** Appointments created by the load are scheduled from here on, after every seeded one. */
const LOAD_SLOT_MS = Date.UTC(2031, 0, 6, 8);

/** Connects to the echo server, the shards (one pg.Pool each) and the gateway. */
export async function createTargets(data: Dataset): Promise<Targets> {
  const EchoClient = makeGenericClientConstructor(echoService, 'Echo');
  const echo = new EchoClient(data.echoAddress, credentials.createInsecure()) as unknown as {
    echo(req: Buffer, cb: (err: ServiceError | null, res?: Buffer) => void): void;
    close(): void;
  };
  const payload = echoPayload();
  // GetAppointment answered from memory, by grpc-js with protobuf codecs and by nice-grpc.
  const echoGrpcJs = new Client(data.echoAddress, credentials.createInsecure());
  const echoNice = new Client(data.echoNiceAddress, credentials.createInsecure());
  const getFrom = (client: Client) =>
    unaryCaller(
      client,
      AppointmentServiceDefinition,
      AppointmentServiceDefinition.methods.getAppointment,
    );
  const fromMemory = { grpcJs: getFrom(echoGrpcJs), nice: getFrom(echoNice) };
  const proxy = new Client(data.proxyAddress, credentials.createInsecure());
  const fromProxy = getFrom(proxy);

  const pools = new Map<string, pg.Pool>();
  for (const [shard, url] of Object.entries(data.shardUrls)) {
    // Idle connections stay open between cells, so no cell pays for reconnecting.
    const pool = new pg.Pool({ connectionString: url, max: data.poolMax, idleTimeoutMillis: 0 });
    pool.on('error', () => undefined); // an idle connection's error must not end the run
    pools.set(shard, pool);
  }
  // Per tenant: its pool and the gateway's exact statements, so (b) runs the same SQL as (c).
  const routes = await Promise.all(
    data.tenants.map(async (t) => ({ ...t, ...(await tenantSql(t)), pool: pools.get(t.shard)! })),
  );
  // (c) through a bare grpc-js client, like (a); the typed client only for typed.GetAppointment.
  const gateway = new Client(data.gatewayAddress, credentials.createInsecure());
  const appointment = AppointmentServiceDefinition;
  const sg = {
    getAppointment: unaryCaller(gateway, appointment, appointment.methods.getAppointment),
    listAppointments: unaryCaller(gateway, appointment, appointment.methods.listAppointments),
    createAppointment: unaryCaller(gateway, appointment, appointment.methods.createAppointment),
    appendHandoff: unaryCaller(
      gateway,
      HandoffServiceDefinition,
      HandoffServiceDefinition.methods.appendHandoff,
    ),
    getLatestHandoff: unaryCaller(
      gateway,
      HandoffServiceDefinition,
      HandoffServiceDefinition.methods.getLatestHandoff,
    ),
    patchState: unaryCaller(
      gateway,
      StateServiceDefinition,
      StateServiceDefinition.methods.patchState,
    ),
    getState: unaryCaller(gateway, StateServiceDefinition, StateServiceDefinition.methods.getState),
  };
  const typed = createShardgateClient({
    address: data.gatewayAddress,
    defaultDeadlineMs: 30_000,
  });
  const seededBefore = new Date(data.seededBeforeMs);
  // Call i goes to tenant i mod n and, per tenant, walks through its seeded appointments.
  const route = (i: number) => routes[i % routes.length]!;
  const appointmentId = (i: number): string => {
    const ids = route(i).appointmentIds;
    return ids[Math.floor(i / routes.length) % ids.length]!;
  };

  const ops: Record<OpName, Op> = {
    echo: () =>
      new Promise((resolve, reject) =>
        echo.echo(payload, (err, res) => (err ? reject(err) : resolve(res))),
      ),
    'echo.protobuf': (i) =>
      fromMemory.grpcJs({ clientId: route(i).clientId, id: appointmentId(i) }),
    'echo.nice-grpc': (i) => fromMemory.nice({ clientId: route(i).clientId, id: appointmentId(i) }),
    'proxy.GetAppointment': (i) => fromProxy({ clientId: route(i).clientId, id: appointmentId(i) }),
    'pg.get': (i) => route(i).pool.query(route(i).get, [appointmentId(i)]),
    'pg.insert': (i) => route(i).pool.query(route(i).insert, insertValues(i)),
    'sg.GetAppointment': (i) =>
      sg.getAppointment({ clientId: route(i).clientId, id: appointmentId(i) }),
    'sg.ListAppointments': (i) =>
      sg.listAppointments({
        clientId: route(i).clientId,
        pageSize: 20,
        scheduledBefore: seededBefore,
      }),
    'sg.CreateAppointment': (i) => {
      const [clientPhone, scheduledAt, serviceType] = insertValues(i);
      return sg.createAppointment({
        clientId: route(i).clientId,
        appointment: {
          clientPhone,
          scheduledAt,
          serviceType,
          status: AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED,
        },
      });
    },
    'sg.AppendHandoff': (i) =>
      sg.appendHandoff({
        clientId: route(i).clientId,
        handoff: {
          fromAgent: 'intake-agent',
          toAgent: 'dispatch-agent',
          version: 1,
          summary: handoffSummary(i),
        },
      }),
    'sg.PatchState': (i) =>
      sg.patchState({
        clientId: route(i).clientId,
        patch: { lastCall: i, agent: 'bench', season: 'winter' },
      }),
    'sg.GetState': (i) => sg.getState({ clientId: route(i).clientId }),
    // Seeded handoffs go to dispatch-agent (bench/setup.ts).
    'sg.GetLatestHandoff': (i) =>
      sg.getLatestHandoff({ clientId: route(i).clientId, toAgent: 'dispatch-agent' }),
    'typed.GetAppointment': (i) =>
      typed.appointments.getAppointment({ clientId: route(i).clientId, id: appointmentId(i) }),
  };

  return {
    ops,
    async close() {
      echo.close();
      echoGrpcJs.close();
      echoNice.close();
      proxy.close();
      gateway.close();
      typed.close();
      await Promise.all([...pools.values()].map((p) => p.end()));
    },
  };
}

/** client_phone, scheduled_at, service_type, status, as CreateAppointment would bind them. */
function insertValues(i: number): [string, Date, string, 'scheduled'] {
  return [
    `+1 555 ${String(i % 10_000).padStart(4, '0')}`,
    new Date(LOAD_SLOT_MS + i * 60_000),
    'ac-tune-up',
    'scheduled',
  ];
}

function handoffSummary(i: number): Record<string, unknown> {
  return {
    ticket: `T-${i}`,
    customer: { phone: '+1 555 010 0042', prefers: 'mornings' },
    notes:
      'Furnace short-cycles; filter replaced last spring. Customer asks for a call 30 min before arrival.',
    steps: ['triage', 'quote', 'schedule'],
  };
}
