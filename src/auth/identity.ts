import type { ClientId } from '../core/ids.js';

/** What a caller may do: everything, any client's data, or one client's data only. */
export type Scope =
  | { readonly kind: 'admin' }
  | { readonly kind: 'service' }
  | { readonly kind: 'client'; readonly clientId: ClientId };

/**
 * Who is calling, established once per call by the auth middleware from the verified token (never
 * from the request body) and passed on in the call context as `identity`.
 */
export interface Identity {
  /** The token id, or `bootstrap` (the configured admin secret) or `anonymous` (open mode). */
  readonly actor: string;
  /** The token's display name; empty when there is none. */
  readonly actorName: string;
  readonly scope: Scope;
}

/** The call context extension every middleware after authentication can rely on. */
export interface AuthContext {
  readonly identity: Identity;
}

/** The identity of a call without a token while auth is not required (the loopback quick start). */
export const anonymousIdentity: Identity = Object.freeze({
  actor: 'anonymous',
  actorName: '',
  scope: Object.freeze({ kind: 'admin' as const }),
});
