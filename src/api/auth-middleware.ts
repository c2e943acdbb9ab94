import type { CallContext, ServerMiddlewareCall } from 'nice-grpc';
import { anonymousIdentity, type AuthContext, type Identity } from '../auth/identity.js';
import { accessOf, checkAccess } from '../auth/policy.js';
import { bearerSecret } from '../auth/token-secret.js';
import { ShardgateError } from '../core/errors.js';
import type { GatewayContext } from './gateway-context.js';

/**
 * Establishes the caller's identity from the `authorization: Bearer <secret>` metadata and
 * refuses calls its scope does not allow, before any handler (and so any database work) runs:
 * UNAUTHENTICATED for a missing (when `auth.required`), malformed, unknown, revoked or expired
 * token; PERMISSION_DENIED for a valid token outside its scope. Without `auth.required`, a call
 * with no token runs as `anonymousIdentity` (admin); a token that is sent is still verified and
 * its scope applies. Health checks need no token.
 */
export function authenticate(ctx: GatewayContext) {
  const required = ctx.config.auth.required;
  return async function* <Request, Response>(
    call: ServerMiddlewareCall<Request, Response, AuthContext>,
    context: CallContext,
  ) {
    const path = call.method.path;
    if (accessOf(path) === 'public') {
      return yield* call.next(call.request, { ...context, identity: anonymousIdentity });
    }
    const identity = await identify(ctx, context, required);
    checkAccess(path, identity, call.request);
    return yield* call.next(call.request, { ...context, identity });
  };
}

async function identify(
  ctx: GatewayContext,
  context: CallContext,
  required: boolean,
): Promise<Identity> {
  const headers = context.metadata.getAll('authorization');
  if (headers.length === 0) {
    if (!required) return anonymousIdentity;
    throw new ShardgateError(
      'unauthenticated',
      'this gateway requires a bearer token: send metadata `authorization: Bearer <secret>`',
    );
  }
  const secret = headers.length === 1 ? bearerSecret(headers[0]!) : undefined;
  if (secret === undefined) {
    throw new ShardgateError(
      'unauthenticated',
      'the authorization metadata must be exactly one `Bearer <secret>` value',
    );
  }
  return ctx.verifier.verify(secret);
}
