import { Status, type CallContext, type ServerMiddlewareCall } from 'nice-grpc';
import type { AuditEventEnd } from '../catalog/audit-log.js';
import { isShardgateError, ShardgateError } from '../core/errors.js';
import type { AuthContext, Identity } from '../auth/identity.js';
import {
  AdminServiceDefinition as Admin,
  type CreateTokenResponse,
} from '../gen/shardgate/v1/admin.js';
import { TenantServiceDefinition as Tenant } from '../gen/shardgate/v1/tenant.js';
import { toServerError } from './error-status.js';
import { LONE_SURROGATE } from '../core/well-formed.js';
import type { GatewayContext } from './gateway-context.js';

/** How one audited method is recorded: what it acts on and its request without secrets. */
export interface AuditRule {
  /** The full RPC name as recorded, e.g. `shardgate.v1.AdminService/AddShard`. */
  readonly method: string;
  /** The shard, client, move or token the request names; empty when it names none. */
  target(request: unknown): string;
  /** The request in proto3 JSON with secrets removed. */
  requestJson(request: unknown): unknown;
  /** The target when only the response names it (CreateToken's new token id). */
  targetOfResponse?(response: unknown): string | undefined;
}

interface MethodOf<Req> {
  readonly name: string;
  readonly requestType: { toJSON(message: Req): unknown };
}

/** A rule for `method` of `service`, keyed by its full path (`/package.Service/Method`). */
function audited<Req>(
  service: { readonly fullName: string },
  method: MethodOf<Req>,
  describe: {
    target?: (request: Req) => string;
    redact?: (request: Req) => Req;
    targetOfResponse?: (response: unknown) => string | undefined;
  } = {},
): [string, AuditRule] {
  const name = `${service.fullName}/${method.name}`;
  const rule: AuditRule = {
    method: name,
    target: (request) => describe.target?.(request as Req) ?? '',
    requestJson: (request) =>
      method.requestType.toJSON(describe.redact?.(request as Req) ?? (request as Req)),
    targetOfResponse: describe.targetOfResponse,
  };
  return [`/${name}`, rule];
}

const byName = (r: { name: string }) => r.name;
const byId = (r: { id: string }) => r.id;
const byClient = (r: { clientId: string }) => r.clientId;

/**
 * Every audited method, by full path: the AdminService calls that change something, and the
 * tenant lifecycle changes that amount to purges. Every other AdminService method must be in
 * `readOnlyAdminMethods`; a unit test fails when a new admin RPC is in neither.
 */
export const auditedMethods: ReadonlyMap<string, AuditRule> = new Map([
  audited(Admin, Admin.methods.addShard, {
    target: byName,
    redact: (r) => ({ ...r, dsn: redactDsn(r.dsn) }),
  }),
  audited(Admin, Admin.methods.drainShard, { target: byName }),
  audited(Admin, Admin.methods.removeShard, { target: byName }),
  audited(Admin, Admin.methods.setShardWeight, { target: byName }),
  audited(Admin, Admin.methods.setShardDsn, {
    target: byName,
    redact: (r) => ({ ...r, dsn: redactDsn(r.dsn) }),
  }),
  audited(Admin, Admin.methods.moveTenant, { target: byClient }),
  audited(Admin, Admin.methods.rebalance),
  audited(Admin, Admin.methods.cancelMove, { target: byId }),
  // Only the new token's id is taken from the response: its secret must never be stored.
  audited(Admin, Admin.methods.createToken, {
    targetOfResponse: (r) => (r as Partial<CreateTokenResponse> | undefined)?.token?.id,
  }),
  audited(Admin, Admin.methods.revokeToken, { target: byId }),
  audited(Tenant, Tenant.methods.churnTenant, { target: byClient }),
  audited(Tenant, Tenant.methods.reactivateTenant, { target: byClient }),
]);

/** The AdminService methods that change nothing and so are not audited, by full path. */
export const readOnlyAdminMethods: ReadonlySet<string> = new Set(
  [
    'GetTopology',
    'Locate',
    'PlanRebalance',
    'ListMoves',
    'GetMove',
    'ListTokens',
    'ListAuditEvents',
  ].map((name) => `/${Admin.fullName}/${name}`),
);

/**
 * A connection URL as recorded: scheme, user, host, port and database. Its password never, nor its
 * query, which may carry `password=` or `sslpassword=`.
 */
export function redactDsn(dsn: string): string {
  try {
    const u = new URL(dsn);
    return `${u.protocol}//${u.username === '' ? '' : `${u.username}@`}${u.host}${u.pathname}`;
  } catch {
    return '(unparseable url)';
  }
}

/** Longest string kept from a request field, target or error message. */
const MAX_RECORDED_CHARS = 1000;
// Lone UTF-16 surrogates (jsonb refuses them) and NUL (neither text nor jsonb can hold it).
const UNSTORABLE = new RegExp(`\\u0000|${LONE_SURROGATE.source}`, 'g');

/**
 * A string Postgres can store, cut to MAX_RECORDED_CHARS UTF-16 units (never inside a surrogate
 * pair): hostile input must not block an audit.
 */
export function storableText(s: string): string {
  let cut = s;
  if (s.length > MAX_RECORDED_CHARS) {
    const high = s.charCodeAt(MAX_RECORDED_CHARS - 1);
    const end = high >= 0xd800 && high <= 0xdbff ? MAX_RECORDED_CHARS - 1 : MAX_RECORDED_CHARS;
    cut = `${s.slice(0, end)}…`;
  }
  return cut.replace(UNSTORABLE, '\uFFFD');
}

/** A JSON value with every string (keys included) made storable. */
function storableJson(value: unknown): unknown {
  if (typeof value === 'string') return storableText(value);
  if (Array.isArray(value)) return value.map(storableJson);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [storableText(k), storableJson(v)]),
    );
  }
  return value;
}

/** The recorded request of an audited call: proto3 JSON, secrets removed, storable. */
export function auditedRequestJson(rule: AuditRule, request: unknown): string {
  return JSON.stringify(storableJson(rule.requestJson(request)) ?? {});
}

/** Written ahead of the action; a row left like this means the gateway stopped before it ended. */
const NOT_ENDED: AuditEventEnd = {
  outcome: Status[Status.UNKNOWN],
  error: 'not ended: still running, or the gateway stopped before recording the outcome',
};
/** A stream the caller left: what it started (moves) goes on without it. */
const CALLER_LEFT: AuditEventEnd = {
  outcome: Status[Status.CANCELLED],
  error: 'the caller disconnected before the stream ended; moves it started go on (see ListMoves)',
};

/** The outcome of a failed call as the caller sees it: the status name and message after mapping. */
export function failedOutcome(err: unknown): AuditEventEnd {
  // The gate's error mapping (around this middleware) logs unexpected errors; logging here would
  // say it twice.
  const mapped = toServerError(err, () => undefined);
  return { outcome: Status[mapped.code], error: storableText(mapped.details) };
}

/**
 * Records every audited call (see `auditedMethods`) in the catalog's audit log: who (the verified
 * identity), what, on what, the request without secrets, and how it ended. The event is written
 * before the action runs and completed after it, so a caller leaving or the gateway dying still
 * leaves a record. An event that cannot be written first refuses the action (fail closed: an
 * admin action must not go unrecorded, and the catalog it would be written to is the database
 * almost every admin action changes anyway); a failed completion is logged and never turns the
 * action's own result into an error. Every other call passes through after one Map lookup.
 */
export function auditAdminActions(ctx: GatewayContext) {
  return async function* <Request, Response>(
    call: ServerMiddlewareCall<Request, Response>,
    context: CallContext & AuthContext,
  ) {
    const rule = auditedMethods.get(call.method.path);
    if (!rule) return yield* call.next(call.request, context);

    const id = await recordStart(ctx, rule, call.request, context);
    let end = call.responseStream ? CALLER_LEFT : NOT_ENDED;
    try {
      const response = yield* call.next(call.request, context);
      end =
        call.responseStream && context.signal.aborted
          ? CALLER_LEFT
          : { outcome: Status[Status.OK], error: '', target: targetOf(rule, response) };
      return response;
    } catch (err) {
      end = failedOutcome(err);
      throw err;
    } finally {
      // Not the call's signal: a caller who left must not stop the record of what it did.
      await ctx.audit.complete(id, end).catch((err: unknown) => {
        ctx.log.error(
          { err, auditEventId: id, method: rule.method, outcome: end.outcome },
          'could not record the outcome of an admin action in the audit log',
        );
      });
    }
  };
}

async function recordStart(
  ctx: GatewayContext,
  rule: AuditRule,
  request: unknown,
  context: CallContext & AuthContext,
): Promise<string> {
  const identity: Identity = context.identity;
  try {
    return await ctx.audit.record(
      {
        actor: identity.actor,
        actorName: identity.actorName,
        method: rule.method,
        target: storableText(rule.target(request)),
        requestJson: auditedRequestJson(rule, request),
        ...NOT_ENDED,
      },
      context.signal,
    );
  } catch (err) {
    if (context.signal.aborted && isShardgateError(err)) throw err;
    ctx.log.error({ err, method: rule.method }, 'could not write the audit log; action refused');
    throw new ShardgateError(
      isShardgateError(err, 'unavailable') ? 'unavailable' : 'internal',
      `${rule.method} was not run: the audit log in the catalog could not be written; retry`,
      { cause: err },
    );
  }
}

function targetOf(rule: AuditRule, response: unknown): string | undefined {
  const target = rule.targetOfResponse?.(response);
  return target === undefined ? undefined : storableText(target);
}
