import type { CallContext, ServerMiddlewareCall } from 'nice-grpc';
import type { AuthContext } from '../auth/identity.js';
import type { GatewayContext } from './gateway-context.js';

// TODO(#4): being written in this session.
/** Records every admin action (who, what, when, outcome) in the catalog's audit log. */
export function auditAdminActions(_ctx: GatewayContext) {
  return async function* <Request, Response>(
    call: ServerMiddlewareCall<Request, Response>,
    context: CallContext & AuthContext,
  ) {
    return yield* call.next(call.request, context);
  };
}
