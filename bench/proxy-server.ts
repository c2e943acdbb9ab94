/**
 * The `proxy.GetAppointment` target, in a child process of run.ts: the thinnest gRPC server that
 * answers GetAppointment from PostgreSQL. A bare @grpc/grpc-js server with the generated protobuf
 * codecs looks the caller's client up in a Map, sends the gateway's own SELECT through a pg.Pool of
 * its shard (the same pool size as the gateway's), and converts the row as the gateway does.
 * Nothing else: no authentication, validation, placement directory, limits, deadline wiring or
 * coalescing. It shows what one database round trip per call costs on this machine before any
 * gateway work, so the gap between it and `echo.protobuf` is the database's and the gap between it
 * and `sg.GetAppointment` is shardgate's.
 *
 * Started after seeding: it waits for an `init` message with the shard URLs and tenants, answers
 * `{ type: 'listening', port }`, and exits when its parent goes away.
 */
import {
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
} from '@grpc/grpc-js';
import pg from 'pg';
import { appointmentToProto } from '../src/api/convert.js';
import type {
  GetAppointmentRequest,
  GetAppointmentResponse,
} from '../src/gen/shardgate/v1/appointment.js';
import type { AppointmentRecord } from '../src/shards/appointments.js';
import type { ProxyInit } from './protocol.js';
import { getAppointmentService } from './echo-service.js';
import { tenantSql } from './tenant-sql.js';

const pools: pg.Pool[] = [];
const server = new Server({ 'grpc.enable_channelz': 0 });

async function start(init: ProxyInit): Promise<number> {
  const byShard = new Map<string, pg.Pool>();
  for (const [shard, url] of Object.entries(init.shardUrls)) {
    const pool = new pg.Pool({ connectionString: url, max: init.poolMax, idleTimeoutMillis: 0 });
    pool.on('error', () => undefined); // an idle connection's error must not end the run
    byShard.set(shard, pool);
    pools.push(pool);
  }
  const routes = new Map<string, { pool: pg.Pool; sql: string }>();
  for (const t of init.tenants) {
    routes.set(t.clientId, { pool: byShard.get(t.shard)!, sql: (await tenantSql(t)).get });
  }
  server.addService(getAppointmentService, {
    getAppointment(
      call: ServerUnaryCall<GetAppointmentRequest, GetAppointmentResponse>,
      callback: sendUnaryData<GetAppointmentResponse>,
    ) {
      const route = routes.get(call.request.clientId);
      if (!route) {
        callback({ code: status.NOT_FOUND, details: 'unknown client' });
        return;
      }
      route.pool.query<AppointmentRecord>(route.sql, [call.request.id]).then(
        ({ rows }) =>
          rows[0]
            ? callback(null, { appointment: appointmentToProto(rows[0]) })
            : callback({ code: status.NOT_FOUND, details: 'no such appointment' }),
        (err: Error) => callback({ code: status.INTERNAL, details: err.message }),
      );
    },
  });
  return new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
}

process.once('message', (message: ProxyInit) => {
  start(message).then(
    (port) => process.send?.({ type: 'listening', port }),
    (err: Error) => {
      process.stderr.write(`proxy server could not start: ${err.message}\n`);
      process.exit(1);
    },
  );
});

/** Closes and exits; process.exit, unlike death by signal, lets node write a --cpu-prof profile. */
function leave(): void {
  server.forceShutdown();
  void Promise.all(pools.map((p) => p.end())).finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2_000).unref();
}

// The orchestrator's IPC channel closing means it is gone (or done): never outlive it.
process.on('disconnect', leave);
process.on('SIGTERM', leave); // how stopChild ends it
process.on('SIGINT', () => undefined); // Ctrl-C reaches the whole group; the parent decides.
