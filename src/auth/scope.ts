import { invalidArgument } from '../core/errors.js';
import { isClientId, MAX_CLIENT_ID_LENGTH } from '../core/ids.js';
import type { Scope } from './identity.js';

const CLIENT_PREFIX = 'client:';

/**
 * A scope from its text form (`admin`, `service`, `client:<client_id>`), as CreateToken takes it
 * and the catalog stores it; INVALID_ARGUMENT names the accepted forms.
 */
export function parseScope(raw: string, field = 'scope'): Scope {
  if (raw === 'admin' || raw === 'service') return Object.freeze({ kind: raw });
  if (raw.startsWith(CLIENT_PREFIX)) {
    const clientId = raw.slice(CLIENT_PREFIX.length);
    if (isClientId(clientId)) return Object.freeze({ kind: 'client', clientId });
    throw invalidArgument(
      `${field} 'client:<client_id>' needs a valid client id (lowercase letters and digits separated by single hyphens, at most ${MAX_CLIENT_ID_LENGTH} characters)`,
    );
  }
  throw invalidArgument(`${field} must be 'admin', 'service' or 'client:<client_id>'`);
}

/** The text form of a scope; `parseScope(formatScope(s))` equals `s`. */
export function formatScope(scope: Scope): string {
  return scope.kind === 'client' ? `${CLIENT_PREFIX}${scope.clientId}` : scope.kind;
}
