import type { CallContext } from 'nice-grpc';
import { anonymousIdentity, type Identity } from '../auth/identity.js';
import { accessOf, checkAccess } from '../auth/policy.js';
import { bearerSecret } from '../auth/token-secret.js';
import { ShardgateError } from '../core/errors.js';
import type { GatewayContext } from './gateway-context.js';

/**
 * The caller's identity from the `authorization: Bearer <secret>` metadata, checked against the
 * method's access policy, before any handler (and so any database work) runs: UNAUTHENTICATED for
 * a missing (when `auth.required`), malformed, unknown, revoked or expired token;
 * PERMISSION_DENIED for a valid token outside its scope. Without `auth.required`, a call with no
 * token runs as `anonymousIdentity` (admin); a token that is sent is still verified and its scope
 * applies. Health checks need no token. Synchronous when no token has to be verified (the
 * open-mode hot path), so such a call pays no promise.
 */
export function createCallerCheck(
  ctx: GatewayContext,
): (
  path: string,
  request: unknown,
  metadata: CallContext['metadata'],
) => Identity | Promise<Identity> {
  const required = ctx.config.auth.required;
  return (path, request, metadata) => {
    if (accessOf(path) === 'public') return anonymousIdentity;
    if (!metadata.has('authorization')) {
      if (required) {
        throw new ShardgateError(
          'unauthenticated',
          'this gateway requires a bearer token: send metadata `authorization: Bearer <secret>`',
        );
      }
      checkAccess(path, anonymousIdentity, request);
      return anonymousIdentity;
    }
    return verified(ctx, path, request, metadata.getAll('authorization'));
  };
}

async function verified(
  ctx: GatewayContext,
  path: string,
  request: unknown,
  headers: string[],
): Promise<Identity> {
  const secret = headers.length === 1 ? bearerSecret(headers[0]!) : undefined;
  if (secret === undefined) {
    throw new ShardgateError(
      'unauthenticated',
      'the authorization metadata must be exactly one `Bearer <secret>` value',
    );
  }
  const identity = await ctx.verifier.verify(secret);
  checkAccess(path, identity, request);
  return identity;
}
