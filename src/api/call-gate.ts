import type { CallContext, ServerMiddlewareCall } from 'nice-grpc';
import type { AuthContext } from '../auth/identity.js';
import { auditAdminActions, auditedMethods } from './audit-middleware.js';
import { createCallerCheck } from './caller-check.js';
import type { GatewayContext } from './gateway-context.js';
import { rejectUndecodable } from './lenient-decoding.js';
import { CallLimits } from './call-limits.js';

/**
 * Everything a call passes before its handler, in one middleware layer: authentication and the
 * access policy (nothing runs before them), refusal of undecodable requests (after
 * authentication, so an unauthenticated caller learns nothing from a garbage request), the audit
 * record of admin actions (whatever their outcome, limits included), then the per-client limits
 * and the deadline cap. One layer rather than four: every nice-grpc layer costs each call an async
 * generator, two copies of the call object and several promise hops.
 */
export function callGate(ctx: GatewayContext) {
  const checkCaller = createCallerCheck(ctx);
  const limits = new CallLimits(ctx.config.limits, ctx.config.pool);
  const audit = auditAdminActions(ctx);

  async function* limited<Request, Response>(
    call: ServerMiddlewareCall<Request, Response, AuthContext>,
    request: Request,
    context: CallContext & AuthContext,
  ) {
    const admitted = limits.enter(
      call.method.path,
      request,
      context.identity,
      call.responseStream,
      call.requestStream,
      context.signal,
    );
    if (!admitted) return yield* call.next(request, context);
    try {
      if (admitted.turn) await admitted.turn;
      const signal = admitted.signal;
      return yield* call.next(
        request,
        signal === context.signal ? context : { ...context, signal },
      );
    } catch (err) {
      throw admitted.failure(err);
    } finally {
      admitted.exit();
    }
  }

  return async function* <Request, Response>(
    call: ServerMiddlewareCall<Request, Response, AuthContext>,
    context: CallContext,
  ) {
    const path = call.method.path;
    const checked = checkCaller(path, call.request, context.metadata);
    const identity = checked instanceof Promise ? await checked : checked;
    rejectUndecodable(path, call.request);
    const authed = { ...context, identity };
    if (!auditedMethods.has(path)) return yield* limited(call, call.request, authed);
    // The audit middleware hands on the context it was given, identity included.
    const next = (request: Request, auditedContext: CallContext) =>
      limited(call, request, auditedContext as CallContext & AuthContext);
    return yield* audit(
      { ...call, next } as unknown as ServerMiddlewareCall<Request, Response>,
      authed,
    );
  };
}
