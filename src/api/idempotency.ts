import type { Identity } from '../auth/identity.js';
import { requestKey, type RequestKey } from '../pg/insert-once.js';
import { withRequestIds } from '../shards/request-ids.js';
import type { ClientScope, GatewayContext } from './gateway-context.js';
import * as v from './validate.js';

/**
 * The idempotency key of a create (AIP-155), or undefined when request_id is empty. `input` is
 * the validated request minus request_id; its canonical hash tells a retry from a reuse of the
 * key for another request. A request_id that is not a UUID is INVALID_ARGUMENT.
 */
export function requestKeyOf(
  rawRequestId: string,
  method: string,
  input: unknown,
  caller?: string,
): RequestKey | undefined {
  if (rawRequestId === '') return undefined;
  return requestKey(v.uuid(rawRequestId, 'request_id'), method, input, caller);
}

/** Whose key a request_id is in a table every caller shares: the client, else the token. */
export function callerOf(identity: Identity): string {
  return identity.scope.kind === 'client' ? `client:${identity.scope.clientId}` : identity.actor;
}

/**
 * Runs a create in a client scope. Without a key it is just `run()`; with one, a schema that
 * predates the request_ids table is upgraded on demand (and the catalog told, best effort).
 */
export function createOnce<T>(
  ctx: GatewayContext,
  scope: ClientScope,
  key: RequestKey | undefined,
  run: () => Promise<T>,
  signal: AbortSignal,
): Promise<T> {
  if (!key) return run();
  const { clientId, schema } = scope.placement;
  return withRequestIds(
    scope.db,
    schema,
    run,
    (version) =>
      void ctx.catalog.setSchemaVersion(clientId, version).catch((err: unknown) => {
        ctx.log.warn({ err, clientId }, 'could not record an on-demand schema upgrade');
      }),
    signal,
  );
}
