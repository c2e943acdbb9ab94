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
  /** When the token stops working (ms since the epoch); undefined for never. */
  readonly expiresAtMs?: number | undefined;
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

/** The identity of a call bearing the configured bootstrap secret (`auth.adminToken`). */
export const bootstrapIdentity: Identity = Object.freeze({
  actor: 'bootstrap',
  actorName: 'bootstrap admin token',
  scope: Object.freeze({ kind: 'admin' as const }),
});

/**
 * The identity the auth middleware put in a call context. Throws (a bug, not a caller error)
 * when there is none, so a handler can never run as nobody.
 */
export function identityOf(context: object): Identity {
  const identity = (context as Partial<AuthContext>).identity;
  if (!identity) throw new Error('no identity in the call context: is callGate() installed?');
  return identity;
}
