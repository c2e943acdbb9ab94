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

/**
 * A cursor timestamp back to a Date; INVALID_ARGUMENT when the token was tampered with. Every
 * stored timestamp lies in years 1..9999, so a cursor outside them was forged (and the far ones
 * are beyond what a Postgres timestamptz holds).
 */
export function cursorDate(value: string | number | undefined): Date {
  const date = new Date(typeof value === 'number' ? value : Number.NaN);
  const year = date.getUTCFullYear();
  if (Number.isNaN(date.getTime()) || year < 1 || year > 9999)
    throw invalidArgument('page_token is not a token this API returned');
  return date;
}

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/**
 * A cursor string; INVALID_ARGUMENT when the token was tampered with. Cursor strings are ids and
 * keys, which never hold control characters; a NUL would otherwise reach Postgres, which refuses
 * it with a message that does not name the page token.
 */
export function cursorString(value: string | number | undefined): string {
  if (typeof value !== 'string' || CONTROL_CHARS.test(value))
    throw invalidArgument('page_token is not a token this API returned');
  return value;
}

/** What an answer may take of `limits.maxMessageBytes`: the rest is room for its own framing. */
export function answerBudgetBytes(maxMessageBytes: number): number {
  return maxMessageBytes - 1024;
}

/**
 * INVALID_ARGUMENT for an all-or-none answer (a batch call's; unlike a page, it cannot come back
 * shorter) estimated at `bytes`, when it would not fit; checked before anything is written.
 * `subject` starts the message ("ids: these 120 appointments"), `advice` ends it.
 */
export function refuseUnlessAnswerFits(
  bytes: number,
  maxMessageBytes: number,
  subject: string,
  advice: string,
): void {
  const limit = answerBudgetBytes(maxMessageBytes);
  if (bytes <= limit) return;
  throw invalidArgument(
    `${subject} come to about ${bytes} bytes, over this gateway's message limit of ${limit} ` +
      `bytes; ${advice}`,
  );
}

/**
 * The longest prefix of `items` whose estimated size fits `budgetBytes`, and never fewer than one
 * item so a listing always moves on. AIP-158 lets a page hold fewer than page_size items; a page
 * over the gRPC message limit could never be sent (RESOURCE_EXHAUSTED on every retry).
 */
export function fitPage<T>(items: T[], sizeOf: (item: T) => number, budgetBytes: number): T[] {
  let total = 0;
  for (let i = 0; i < items.length; i++) {
    total += sizeOf(items[i]!);
    if (total > budgetBytes && i > 0) return items.slice(0, i);
  }
  return items;
}

/**
 * One page of a keyset listing from the `limit + 1` rows its query returned: at most `limit`
 * items (fewer when `fit` trims them to the message budget), and a token for the next page when
 * rows remain.
 */
export function pageOf<T>(
  rows: T[],
  limit: number,
  filters: unknown[],
  cursorOf: (row: T) => (string | number)[],
  fit: (items: T[]) => T[] = (items) => items,
): { items: T[]; nextPageToken: string } {
  const items = fit(rows.slice(0, limit));
  const last = items.at(-1);
  const nextPageToken =
    rows.length > items.length && last ? encodePageToken(filters, cursorOf(last)) : '';
  return { items, nextPageToken };
}
