import { ShardgateError } from '../core/errors.js';
import type { Identity } from './identity.js';
import { formatScope } from './scope.js';

/**
 * Who may call a method:
 * - `public`: anyone, no token looked at (health checks);
 * - `any-token`: any valid token (or anonymous in open mode);
 * - `own-client`: `admin`, `service`, or `client:<id>` when the request's `client_id` is `<id>`;
 * - `service`: `admin` or `service` (all clients' data, tenant lifecycle, shared writes);
 * - `admin`: `admin` only.
 */
export const accessLevels = ['public', 'any-token', 'own-client', 'service', 'admin'] as const;
/** One of accessLevels. */
export type Access = (typeof accessLevels)[number];

const T = '/shardgate.v1.TenantService/';
const A = '/shardgate.v1.AppointmentService/';
const H = '/shardgate.v1.HandoffService/';
const S = '/shardgate.v1.StateService/';
const X = '/shardgate.v1.SharedService/';
const M = '/shardgate.v1.AdminService/';

/**
 * The access policy of every method the gateway serves, by full method path. A method missing
 * here is refused (PERMISSION_DENIED) whatever the token; a unit test walks every service
 * definition so a new RPC cannot ship without an entry. `own-client` methods carry `client_id`
 * as a plain request field, which is what the check compares.
 */
export const methodPolicy: Readonly<Record<string, Access>> = Object.freeze({
  // Provisioning and lifecycle belong to the platform, not to one client's agents.
  [`${T}CreateTenant`]: 'service',
  [`${T}GetTenant`]: 'own-client',
  [`${T}ListTenants`]: 'service',
  [`${T}ChurnTenant`]: 'service',
  [`${T}ReactivateTenant`]: 'service',

  [`${A}CreateAppointment`]: 'own-client',
  [`${A}GetAppointment`]: 'own-client',
  [`${A}ListAppointments`]: 'own-client',
  [`${A}UpdateAppointment`]: 'own-client',
  [`${A}CancelAppointment`]: 'own-client',
  [`${A}BatchCreateAppointments`]: 'own-client',
  [`${A}BatchGetAppointments`]: 'own-client',

  [`${H}AppendHandoff`]: 'own-client',
  [`${H}ListHandoffs`]: 'own-client',
  [`${H}GetLatestHandoff`]: 'own-client',
  [`${H}BatchAppendHandoffs`]: 'own-client',
  [`${H}WatchHandoffs`]: 'own-client',

  [`${S}GetState`]: 'own-client',
  [`${S}PutState`]: 'own-client',
  [`${S}PatchState`]: 'own-client',

  // Shared data is read by every agent; what one client's agent writes there would reach every
  // other client's agents, so writes need a service token.
  [`${X}GetBenchmark`]: 'any-token',
  [`${X}ListBenchmarks`]: 'any-token',
  [`${X}ListKnowledgeEntries`]: 'any-token',
  [`${X}PutBenchmark`]: 'service',
  [`${X}AddKnowledgeEntry`]: 'service',

  [`${M}GetTopology`]: 'admin',
  [`${M}Locate`]: 'admin',
  [`${M}AddShard`]: 'admin',
  [`${M}DrainShard`]: 'admin',
  [`${M}RemoveShard`]: 'admin',
  [`${M}SetShardWeight`]: 'admin',
  [`${M}SetShardDsn`]: 'admin',
  [`${M}PlanRebalance`]: 'admin',
  [`${M}MoveTenant`]: 'admin',
  [`${M}Rebalance`]: 'admin',
  [`${M}ListMoves`]: 'admin',
  [`${M}GetMove`]: 'admin',
  [`${M}CancelMove`]: 'admin',
  [`${M}CreateToken`]: 'admin',
  [`${M}ListTokens`]: 'admin',
  [`${M}RevokeToken`]: 'admin',
  [`${M}ListAuditEvents`]: 'admin',

  // Load balancers and orchestrators probe health without credentials.
  '/grpc.health.v1.Health/Check': 'public',
  '/grpc.health.v1.Health/Watch': 'public',
  // The API's shape is no secret, but it is not for anonymous callers of a secured gateway.
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo': 'any-token',
});

/** The access level of a method path; undefined for a method without a policy (refuse it). */
export function accessOf(path: string): Access | undefined {
  return Object.hasOwn(methodPolicy, path) ? methodPolicy[path] : undefined;
}

/**
 * Refuses (PERMISSION_DENIED) a call its identity may not make. Pure and synchronous: it runs
 * before any database work. `request` is the decoded request (for `own-client`, its `clientId`).
 */
export function checkAccess(path: string, identity: Identity, request: unknown): void {
  const access = accessOf(path);
  const scope = identity.scope;
  if (access === undefined) {
    throw new ShardgateError('permission-denied', `${path} has no access policy; it is refused`);
  }
  if (access === 'public' || access === 'any-token' || scope.kind === 'admin') return;
  const method = path.slice(1);
  if (access === 'admin') {
    throw new ShardgateError(
      'permission-denied',
      `${method} needs a token with scope 'admin'; this token's scope is '${formatScope(scope)}'`,
    );
  }
  if (scope.kind === 'service') return;
  if (access === 'service') {
    throw new ShardgateError(
      'permission-denied',
      `${method} needs a token with scope 'service' or 'admin'; a '${formatScope(scope)}' token may only use its own client's data`,
    );
  }
  if (requestedClient(request) !== scope.clientId) {
    throw new ShardgateError(
      'permission-denied',
      `this token (scope '${formatScope(scope)}') may only access client '${scope.clientId}'; set client_id to it`,
    );
  }
}

function requestedClient(request: unknown): unknown {
  return typeof request === 'object' && request !== null
    ? (request as { clientId?: unknown }).clientId
    : undefined;
}
