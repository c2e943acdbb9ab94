import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'nice-grpc';
import { errorDetailsServerMiddleware } from 'nice-grpc-error-details';
import { HealthDefinition, HealthServiceImpl, HealthState } from 'nice-grpc-server-health';
import { ServerReflection, ServerReflectionService } from 'nice-grpc-server-reflection';
import { AdminServiceDefinition } from '../gen/shardgate/v1/admin.js';
import { AppointmentServiceDefinition } from '../gen/shardgate/v1/appointment.js';
import { HandoffServiceDefinition } from '../gen/shardgate/v1/handoff.js';
import { SharedServiceDefinition } from '../gen/shardgate/v1/shared.js';
import { StateServiceDefinition } from '../gen/shardgate/v1/state.js';
import { TenantServiceDefinition } from '../gen/shardgate/v1/tenant.js';
import { createAdminService } from './admin-service.js';
import { createAppointmentService } from './appointment-service.js';
import { callGate } from './call-gate.js';
import type { GatewayContext } from './gateway-context.js';
import { decodeLeniently } from './lenient-decoding.js';
import { createHandoffService } from './handoff-service.js';
import { createSharedService } from './shared-service.js';
import { createStateService } from './state-service.js';
import { createTenantService } from './tenant-service.js';

/** Fully qualified names of the shardgate services, for health and reflection. */
export const serviceNames = [
  TenantServiceDefinition,
  AppointmentServiceDefinition,
  HandoffServiceDefinition,
  StateServiceDefinition,
  SharedServiceDefinition,
  AdminServiceDefinition,
].map((d) => d.fullName);

/** A gRPC server with every shardgate service, grpc.health.v1 and server reflection. */
export function createGrpcServer(ctx: GatewayContext): { server: Server; health: HealthState } {
  const server = createServer({
    'grpc.max_receive_message_length': ctx.config.limits.maxMessageBytes,
    'grpc.max_send_message_length': ctx.config.limits.maxMessageBytes,
    'grpc.keepalive_time_ms': 60_000,
    // channelz keeps per-call statistics for a debugging service we do not expose.
    'grpc.enable_channelz': 0,
  })
    // Outermost: encodes the details of a RichServerError (RetryInfo of a refused call), which
    // the gate's error mapping passes through unchanged, into the grpc-status-details-bin trailer.
    // callGate authenticates, audits and limits each call before its handler and maps every error
    // of the gate or the handler to a gRPC status.
    .use(errorDetailsServerMiddleware)
    .use(callGate(ctx));
  server.add(decodeLeniently(TenantServiceDefinition), createTenantService(ctx));
  server.add(decodeLeniently(AppointmentServiceDefinition), createAppointmentService(ctx));
  server.add(decodeLeniently(HandoffServiceDefinition), createHandoffService(ctx));
  server.add(decodeLeniently(StateServiceDefinition), createStateService(ctx));
  server.add(decodeLeniently(SharedServiceDefinition), createSharedService(ctx));
  server.add(decodeLeniently(AdminServiceDefinition), createAdminService(ctx));

  const health = serverWideHealth(HealthState(), serviceNames);
  server.add(HealthDefinition, HealthServiceImpl(health));
  const protoset = readFileSync(new URL('../gen/descriptor.binpb', import.meta.url));
  server.add(ServerReflectionService, ServerReflection(protoset, serviceNames));
  return { server, health };
}

/**
 * Health where the server-wide status (`setStatus(status)` without a service) also applies to each
 * served service, so a probe of `shardgate.v1.TenantService` (grpc-health-probe -service, a
 * per-service Kubernetes check) answers like a probe of '' instead of NOT_FOUND.
 */
function serverWideHealth(health: HealthState, services: readonly string[]): HealthState {
  const setOne = health.setStatus.bind(health);
  health.setStatus = (status, service) => {
    if (service !== undefined) return setOne(status, service);
    for (const name of ['', ...services]) setOne(status, name);
  };
  health.setStatus(health.getStatus());
  return health;
}
