import type { CallContext, ServerMiddlewareCall } from 'nice-grpc';
import type { AuthContext } from '../auth/identity.js';
import { ShardgateError } from '../core/errors.js';
import { auditAdminActions, auditedMethods } from './audit-middleware.js';
import { createCallerCheck } from './caller-check.js';
import { toServerError } from './error-status.js';
import type { GatewayContext } from './gateway-context.js';
import { rejectUndecodable } from './lenient-decoding.js';
import { CallLimits } from './call-limits.js';

/**
 * Everything a call passes before its handler, in one middleware layer, and the one mapping of
 * every error that leaves it to a gRPC status (toServerError): authentication and the
 * access policy (nothing runs before them), refusal of undecodable requests (after
 * authentication, so an unauthenticated caller learns nothing from a garbage request), the audit
 * record of admin actions (whatever their outcome, limits included), then the per-client limits
 * and the deadline cap. One layer rather than five: every nice-grpc layer costs each call an async
 * generator, two copies of the call object and several promise hops.
 */
export function callGate(ctx: GatewayContext) {
  const logUnexpected = (err: unknown): void => ctx.log.error({ err }, 'call failed');
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

  /**
   * A server stream (WatchHandoffs, MoveTenant, Rebalance) outlives the check at its start, so it
   * ends UNAUTHENTICATED as soon as its token expires or is revoked: a revoked agent must not keep
   * receiving a client's handoffs.
   */
  async function* whileTokenValid<Request, Response>(
    call: ServerMiddlewareCall<Request, Response, AuthContext>,
    context: CallContext & AuthContext,
  ) {
    const stopped = new AbortController();
    const onCallerAbort = (): void => stopped.abort(context.signal.reason);
    if (context.signal.aborted) onCallerAbort();
    else context.signal.addEventListener('abort', onCallerAbort, { once: true });
    let invalid: string | undefined;
    const unwatch = ctx.verifier.watch(context.identity, (reason) => {
      invalid = reason;
      stopped.abort(new ShardgateError('unauthenticated', reason));
    });
    const refused = (): ShardgateError =>
      new ShardgateError('unauthenticated', `${invalid}; this stream has ended`);
    const streamContext = { ...context, signal: stopped.signal };
    try {
      const result = auditedMethods.has(call.method.path)
        ? yield* auditedNext(call, streamContext)
        : yield* limited(call, call.request, streamContext);
      if (invalid !== undefined) throw refused();
      return result;
    } catch (err) {
      throw invalid !== undefined ? refused() : err;
    } finally {
      unwatch();
      context.signal.removeEventListener('abort', onCallerAbort);
    }
  }

  function auditedNext<Request, Response>(
    call: ServerMiddlewareCall<Request, Response, AuthContext>,
    context: CallContext & AuthContext,
  ) {
    // The audit middleware hands on the context it was given, identity included.
    const next = (request: Request, auditedContext: CallContext) =>
      limited(call, request, auditedContext as CallContext & AuthContext);
    return audit({ ...call, next } as unknown as ServerMiddlewareCall<Request, Response>, context);
  }

  return async function* <Request, Response>(
    call: ServerMiddlewareCall<Request, Response, AuthContext>,
    context: CallContext,
  ) {
    try {
      const path = call.method.path;
      const checked = checkCaller(path, call.request, context.metadata);
      const identity = checked instanceof Promise ? await checked : checked;
      rejectUndecodable(path, call.request);
      if (!call.responseStream && !auditedMethods.has(path)) {
        // The hot path, every unary call but admin actions: `limited` inlined, so the call costs
        // one generator and one copy of the context.
        const admitted = limits.enter(
          path,
          call.request,
          identity,
          false,
          call.requestStream,
          context.signal,
        );
        if (!admitted) return yield* call.next(call.request, { ...context, identity });
        try {
          if (admitted.turn) await admitted.turn;
          return yield* call.next(call.request, { ...context, identity, signal: admitted.signal });
        } catch (err) {
          throw admitted.failure(err);
        } finally {
          admitted.exit();
        }
      }
      const authed = { ...context, identity };
      if (call.responseStream) return yield* whileTokenValid(call, authed);
      return yield* auditedNext(call, authed);
    } catch (err) {
      throw toServerError(err, logUnexpected);
    }
  };
}
