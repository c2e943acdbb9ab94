import type { CallContext, ServerMiddlewareCall } from 'nice-grpc';
import type { AuthContext } from '../auth/identity.js';
import type { GatewayContext } from './gateway-context.js';

// TODO(#4): per-client rate limits and the deadline cap are being written in this session.
/** Per-client rate and concurrency limits, and a cap on how long a unary call may run. */
export function enforceLimits(_ctx: GatewayContext) {
  return async function* <Request, Response>(
    call: ServerMiddlewareCall<Request, Response>,
    context: CallContext & AuthContext,
  ) {
    return yield* call.next(call.request, context);
  };
}
