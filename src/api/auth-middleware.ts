import type { CallContext, ServerMiddlewareCall } from 'nice-grpc';
import { anonymousIdentity, type AuthContext } from '../auth/identity.js';
import type { GatewayContext } from './gateway-context.js';

// TODO(#4): token verification and scope checks are being written in this session.
/** Establishes the caller's identity and refuses calls its scope does not allow. */
export function authenticate(_ctx: GatewayContext) {
  return async function* <Request, Response>(
    call: ServerMiddlewareCall<Request, Response, AuthContext>,
    context: CallContext,
  ) {
    return yield* call.next(call.request, { ...context, identity: anonymousIdentity });
  };
}
