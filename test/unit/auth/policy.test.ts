import { HealthDefinition } from 'nice-grpc-server-health';
import { ServerReflectionService } from 'nice-grpc-server-reflection';
import { describe, expect, it } from 'vitest';
import type { Identity, Scope } from '../../../src/auth/identity.js';
import { accessOf, checkAccess, methodPolicy } from '../../../src/auth/policy.js';
import { isShardgateError } from '../../../src/core/errors.js';
import type { ClientId } from '../../../src/core/ids.js';
import { AdminServiceDefinition } from '../../../src/gen/shardgate/v1/admin.js';
import { AppointmentServiceDefinition } from '../../../src/gen/shardgate/v1/appointment.js';
import { HandoffServiceDefinition } from '../../../src/gen/shardgate/v1/handoff.js';
import { SharedServiceDefinition } from '../../../src/gen/shardgate/v1/shared.js';
import { StateServiceDefinition } from '../../../src/gen/shardgate/v1/state.js';
import { TenantServiceDefinition } from '../../../src/gen/shardgate/v1/tenant.js';

interface MethodShape {
  path?: string;
  name?: string;
  requestStream: boolean;
  requestType: { fromPartial(o: object): unknown };
}

/** Every method the gateway serves (grpc-server.ts registers these), with its full path. */
function servedMethods(): { path: string; method: MethodShape }[] {
  const tsProto = [
    TenantServiceDefinition,
    AppointmentServiceDefinition,
    HandoffServiceDefinition,
    StateServiceDefinition,
    SharedServiceDefinition,
    AdminServiceDefinition,
    HealthDefinition,
  ].flatMap((d) =>
    Object.values(d.methods as Record<string, MethodShape>).map((m) => ({
      path: `/${d.fullName}/${m.name}`,
      method: m,
    })),
  );
  const grpcJs = Object.values(ServerReflectionService).map((m) => ({
    path: m.path,
    method: m as unknown as MethodShape,
  }));
  return [...tsProto, ...grpcJs];
}

const id = (scope: Scope): Identity => ({ actor: 'test', actorName: '', scope });
const identities = {
  admin: id({ kind: 'admin' }),
  service: id({ kind: 'service' }),
  'client:client-a': id({ kind: 'client', clientId: 'client-a' as ClientId }),
};
type Who = keyof typeof identities;
const admin = 'admin' satisfies Who;
const service = 'service' satisfies Who;
const clientA = 'client:client-a' satisfies Who;

/** 'ok' or the error code checkAccess throws. */
function outcome(path: string, identity: Identity, request: unknown): string {
  try {
    checkAccess(path, identity, request);
    return 'ok';
  } catch (err) {
    if (isShardgateError(err)) return err.code;
    throw err;
  }
}

describe('method policy', () => {
  it('has an entry for every method of every served service (a new RPC needs one)', () => {
    const missing = servedMethods()
      .map((m) => m.path)
      .filter((path) => accessOf(path) === undefined);
    expect(missing).toEqual([]);
  });

  it('has no entry for a method that is not served (a renamed RPC leaves no stale rule)', () => {
    const served = new Set(servedMethods().map((m) => m.path));
    expect(Object.keys(methodPolicy).filter((path) => !served.has(path))).toEqual([]);
  });

  it('gives every own-client method a unary request with a client_id field to compare', () => {
    const ownClient = servedMethods().filter((m) => accessOf(m.path) === 'own-client');
    expect(ownClient).toHaveLength(16);
    for (const { path, method } of ownClient) {
      expect({ path, requestStream: method.requestStream }).toEqual({ path, requestStream: false });
      expect({
        path,
        clientId: (method.requestType.fromPartial({}) as { clientId?: unknown }).clientId,
      }).toEqual({ path, clientId: '' });
    }
  });

  it('makes every AdminService method admin-only and only health public', () => {
    for (const m of Object.values(AdminServiceDefinition.methods)) {
      expect([m.name, accessOf(`/shardgate.v1.AdminService/${m.name}`)]).toEqual([m.name, 'admin']);
    }
    const open = Object.entries(methodPolicy)
      .filter(([, a]) => a === 'public')
      .map(([p]) => p);
    expect(open).toEqual(['/grpc.health.v1.Health/Check', '/grpc.health.v1.Health/Watch']);
  });

  it('refuses a path without a policy whatever the scope', () => {
    expect(outcome('/shardgate.v1.TenantService/DropEverything', identities.admin, {})).toBe(
      'permission-denied',
    );
  });

  const cases: [string, Who, unknown, string][] = [
    ['/shardgate.v1.StateService/GetState', clientA, { clientId: 'client-a' }, 'ok'],
    ['/shardgate.v1.StateService/GetState', clientA, { clientId: 'client-b' }, 'permission-denied'],
    ['/shardgate.v1.StateService/GetState', clientA, { clientId: '' }, 'permission-denied'],
    ['/shardgate.v1.StateService/GetState', clientA, {}, 'permission-denied'],
    ['/shardgate.v1.StateService/GetState', service, { clientId: 'client-b' }, 'ok'],
    ['/shardgate.v1.StateService/GetState', admin, { clientId: 'client-b' }, 'ok'],
    ['/shardgate.v1.TenantService/GetTenant', clientA, { clientId: 'client-a' }, 'ok'],
    [
      '/shardgate.v1.TenantService/CreateTenant',
      clientA,
      { clientId: 'client-a' },
      'permission-denied',
    ],
    ['/shardgate.v1.TenantService/ListTenants', clientA, {}, 'permission-denied'],
    ['/shardgate.v1.TenantService/ListTenants', service, {}, 'ok'],
    ['/shardgate.v1.SharedService/ListBenchmarks', clientA, {}, 'ok'],
    ['/shardgate.v1.SharedService/PutBenchmark', clientA, {}, 'permission-denied'],
    ['/shardgate.v1.SharedService/PutBenchmark', service, {}, 'ok'],
    ['/shardgate.v1.AdminService/Locate', service, { clientId: 'client-a' }, 'permission-denied'],
    ['/shardgate.v1.AdminService/Locate', clientA, { clientId: 'client-a' }, 'permission-denied'],
    ['/shardgate.v1.AdminService/Locate', admin, { clientId: 'client-a' }, 'ok'],
    ['/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', clientA, undefined, 'ok'],
  ];
  it.each(cases)('%s as %s with %j → %s', (path, who, request, expected) => {
    expect(outcome(path, identities[who], request)).toBe(expected);
  });
});
