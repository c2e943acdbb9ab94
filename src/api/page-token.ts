import { createHash } from 'node:crypto';
import { invalidArgument } from '../core/errors.js';

/**
 * Opaque AIP-158 page tokens: the keyset position of the last item returned, bound to the
 * request's filters so a token cannot be replayed against a different query. Start `filters` with
 * the listing's name: two RPCs whose filters are both unset would otherwise accept each other's
 * tokens.
 */
export function encodePageToken(filters: unknown[], cursor: (string | number)[]): string {
  return Buffer.from(JSON.stringify({ f: fingerprint(filters), c: cursor })).toString('base64url');
}

/** The cursor of a token from encodePageToken; undefined for an empty token (first page). */
export function decodePageToken(
  token: string,
  filters: unknown[],
): (string | number)[] | undefined {
  if (token === '') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw invalidArgument('page_token is not a token this API returned');
  }
  if (
    typeof parsed !== 'object' ||
    parsed === null ||
    !Array.isArray((parsed as { c?: unknown }).c) ||
    !(parsed as { c: unknown[] }).c.every((v) => typeof v === 'string' || typeof v === 'number')
  ) {
    throw invalidArgument('page_token is not a token this API returned');
  }
  if ((parsed as { f?: unknown }).f !== fingerprint(filters)) {
    throw invalidArgument(
      "page_token was issued for different filters; repeat the first request's filters or start over",
    );
  }
  return (parsed as { c: (string | number)[] }).c;
}

function fingerprint(filters: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(filters)).digest('base64url').slice(0, 16);
}

/** A cursor timestamp back to a Date; INVALID_ARGUMENT when the token was tampered with. */
export function cursorDate(value: string | number | undefined): Date {
  const date = new Date(typeof value === 'number' ? value : Number.NaN);
  if (Number.isNaN(date.getTime()))
    throw invalidArgument('page_token is not a token this API returned');
  return date;
}

/** A cursor string; INVALID_ARGUMENT when the token was tampered with. */
export function cursorString(value: string | number | undefined): string {
  if (typeof value !== 'string')
    throw invalidArgument('page_token is not a token this API returned');
  return value;
}
