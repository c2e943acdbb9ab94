import { invalidArgument } from '../core/errors.js';

/** AIP-158: page_size 0 means the default; larger than the maximum is coerced to it. */
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;
/** Largest JSON document (summary, state, patch) accepted, serialised. */
export const MAX_JSON_BYTES = 256 * 1024;
/** Deepest nesting accepted in a JSON document. */
export const MAX_JSON_DEPTH = 32;

// Control characters (NUL included) never belong in a name or a short text field.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PHONE = /^[0-9+\-(). ]{3,32}$/;
const KEY = /^[a-z0-9][a-z0-9._-]*$/;
const KEY_WITHOUT_DOT = /^[a-z0-9][a-z0-9_-]*$/;

/** Most items a Batch* call takes. */
export const MAX_BATCH_SIZE = 1000;

/** A Batch* call's item count: 1 to MAX_BATCH_SIZE. */
export function batchSize(n: number, field: string): void {
  if (n === 0) throw invalidArgument(`${field} must not be empty`);
  if (n > MAX_BATCH_SIZE)
    throw invalidArgument(`${field} takes at most ${MAX_BATCH_SIZE} items per call`);
}

export function pageSize(raw: number): number {
  if (raw < 0) throw invalidArgument('page_size must not be negative');
  return raw === 0 ? DEFAULT_PAGE_SIZE : Math.min(raw, MAX_PAGE_SIZE);
}

/**
 * A single-line text of `min`..`max` characters without control characters. Characters are
 * Unicode code points, as PostgreSQL counts them: an emoji is one, though a JavaScript string
 * holds it in two UTF-16 units.
 */
export function text(raw: string, field: string, min: number, max: number): string {
  // Code points never outnumber UTF-16 units, so only a string near a bound needs counting.
  if (raw.length < min || (min > 1 && raw.length < 2 * min && characters(raw) < min))
    throw invalidArgument(
      min === 1 ? `${field} is required` : `${field} must be at least ${min} characters`,
    );
  if (raw.length > max && characters(raw) > max)
    throw invalidArgument(`${field} must be at most ${max} characters`);
  if (CONTROL_CHARS.test(raw))
    throw invalidArgument(`${field} must not contain control characters`);
  return raw;
}

/** Unicode code points in `s` (a surrogate pair counts once). */
function characters(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** An agent name: 1 to 128 printable characters. */
export function agentName(raw: string, field: string): string {
  return text(raw, field, 1, 128);
}

/** An optional agent filter: empty means none. */
export function optionalAgent(raw: string, field: string): string | undefined {
  return raw === '' ? undefined : agentName(raw, field);
}

/**
 * A lowercase key such as a metric or topic; `allowDot: false` for an industry, whose alphabet
 * (shared.proto) has no `.`.
 */
export function key(raw: string, field: string, max: number, allowDot = true): string {
  text(raw, field, 1, max);
  if (!(allowDot ? KEY : KEY_WITHOUT_DOT).test(raw)) {
    const chars = allowDot ? "'.', '_' or '-'" : "'_' or '-'";
    throw invalidArgument(
      `${field} must be lowercase letters, digits, ${chars}, starting with a letter or digit`,
    );
  }
  return raw;
}

export function uuid(raw: string, field = 'id'): string {
  if (raw === '') throw invalidArgument(`${field} is required`);
  if (!UUID.test(raw)) throw invalidArgument(`${field} must be a UUID`);
  return raw.toLowerCase();
}

export function phone(raw: string, field = 'client_phone'): string {
  if (raw === '') throw invalidArgument(`${field} is required`);
  if (!PHONE.test(raw) || !/[0-9]/.test(raw)) {
    throw invalidArgument(`${field} must be 3 to 32 digits, spaces or '+-().' characters`);
  }
  return raw;
}

/** A timestamp a Postgres timestamptz can hold and a caller plausibly meant (years 1..9999). */
export function timestamp(raw: Date | undefined, field: string): Date {
  if (raw === undefined) throw invalidArgument(`${field} is required`);
  return optionalTimestamp(raw, field)!;
}

export function optionalTimestamp(raw: Date | undefined, field: string): Date | undefined {
  if (raw === undefined) return undefined;
  const year = raw.getUTCFullYear();
  if (Number.isNaN(raw.getTime()) || year < 1 || year > 9999) {
    throw invalidArgument(`${field} must be between years 1 and 9999`);
  }
  return raw;
}

/**
 * Checks a JSON object (a decoded google.protobuf.Struct) and returns it serialised, ready for a
 * jsonb parameter. Rejects NUL characters (jsonb cannot store them), prototype keys, documents
 * deeper than MAX_JSON_DEPTH and larger than MAX_JSON_BYTES.
 */
export function jsonObject(raw: unknown, field: string): string {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw invalidArgument(`${field} must be a JSON object`);
  }
  checkValues(raw, field, 1);
  const json = JSON.stringify(raw);
  if (Buffer.byteLength(json) > MAX_JSON_BYTES) {
    throw invalidArgument(`${field} must be at most ${MAX_JSON_BYTES} bytes as JSON`);
  }
  return json;
}

const NUL = '\u0000';

/**
 * Depth, keys, numbers and NUL, checked on the values themselves: the serialised text cannot tell
 * a NUL (escaped `\u0000`) from a string that spells a backslash and `u0000`.
 */
function checkValues(value: unknown, field: string, depth: number): void {
  if (typeof value !== 'object' || value === null) {
    if (typeof value === 'number' && !Number.isFinite(value)) {
      throw invalidArgument(`${field} must not contain NaN or Infinity`);
    }
    if (typeof value === 'string' && value.includes(NUL)) {
      throw invalidArgument(`${field} must not contain NUL characters`);
    }
    return;
  }
  if (depth > MAX_JSON_DEPTH)
    throw invalidArgument(`${field} must be nested at most ${MAX_JSON_DEPTH} levels deep`);
  for (const [k, v] of Object.entries(value)) {
    if (k === '__proto__' || k === 'constructor' || k === 'prototype') {
      throw invalidArgument(`${field} must not use the key '${k}'`);
    }
    if (k.includes(NUL)) throw invalidArgument(`${field} must not contain NUL characters`);
    checkValues(v, field, depth + 1);
  }
}
