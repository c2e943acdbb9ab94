/**
 * The API contract of request fields, written from the proto comments, for the fuzz tests to
 * predict the status of a generated request. Each predicate takes the value as the gateway
 * receives it (see onTheWire). Lengths are in UTF-16 code units, as the gateway counts them.
 */

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
// eslint-disable-next-line no-control-regex
const CONTROL_BUT_LINE_BREAKS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
const ID = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when `raw` holds a C0 control character or DEL. */
export const hasControlCharacters = (raw: string): boolean => CONTROL.test(raw);

/** Single-line text of min..max characters (code points) without control characters. */
export const isText = (raw: string, min: number, max: number): boolean =>
  [...raw].length >= min && [...raw].length <= max && !CONTROL.test(raw);

/** Agent names: 1 to 128 printable characters. */
export const isAgent = (raw: string): boolean => isText(raw, 1, 128);

/** client_id: lowercase letters and digits in hyphen-separated runs, at most 56 (63 − `client_`). */
export const isClientId = (raw: string): boolean => raw.length <= 56 && ID.test(raw);

/** Shard names: the client-id alphabet, at most 63 characters. */
export const isShardName = (raw: string): boolean => raw.length <= 63 && ID.test(raw);

/** A UUID in any letter case (the gateway lowercases it). */
export const isUuid = (raw: string): boolean => UUID.test(raw);

/** Phone numbers: 3 to 32 of digits, spaces and `+-().`, at least one digit. */
export const isPhone = (raw: string): boolean =>
  /^[0-9+\-(). ]{3,32}$/.test(raw) && /[0-9]/.test(raw);

/** Benchmark and knowledge keys; industry keys have no `.`. */
export const isKey = (raw: string, max: number, allowDot = true): boolean =>
  raw.length <= max && (allowDot ? /^[a-z0-9][a-z0-9._-]*$/ : /^[a-z0-9][a-z0-9_-]*$/).test(raw);

/** Multi-line text: 1 character to `maxBytes` UTF-8 bytes, newline, CR and tab allowed. */
export const isLongText = (raw: string, maxBytes: number): boolean =>
  raw.length > 0 && Buffer.byteLength(raw) <= maxBytes && !CONTROL_BUT_LINE_BREAKS.test(raw);

/** Timestamps: years 1 to 9999 (UTC). */
export const isTimestamp = (d: Date): boolean =>
  !Number.isNaN(d.getTime()) && d.getUTCFullYear() >= 1 && d.getUTCFullYear() <= 9999;

/** Largest JSON document, serialised, and deepest nesting the API takes. */
export const MAX_JSON_BYTES = 256 * 1024;
export const MAX_JSON_DEPTH = 32;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * Why a JSON document (as received) must be refused, or undefined when it is fine: not an
 * object, nested deeper than 32 containers, over 256 KiB as JSON, a NUL anywhere, a prototype
 * key, or a non-finite number.
 */
export function jsonProblem(doc: unknown): string | undefined {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return 'not an object';
  const walk = (value: unknown, depth: number): string | undefined => {
    if (typeof value === 'number') return Number.isFinite(value) ? undefined : 'non-finite';
    if (typeof value === 'string') return value.includes('\u0000') ? 'NUL' : undefined;
    if (typeof value !== 'object' || value === null) return undefined;
    if (depth > MAX_JSON_DEPTH) return 'too deep';
    for (const [k, v] of Object.entries(value)) {
      if (FORBIDDEN_KEYS.has(k)) return 'forbidden key';
      if (k.includes('\u0000')) return 'NUL';
      const problem = walk(v, depth + 1);
      if (problem) return problem;
    }
    return undefined;
  };
  const problem = walk(doc, 1);
  if (problem) return problem;
  return Buffer.byteLength(JSON.stringify(doc)) > MAX_JSON_BYTES ? 'too large' : undefined;
}

/** RFC 7386 merge patch, without prototypes (the document may hold any key). */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const result: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (typeof target === 'object' && target !== null && !Array.isArray(target))
    Object.assign(result, target);
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

/** A JSON value as it comes back from jsonb: plain objects, -0 as 0. */
export function asStored(doc: unknown): unknown {
  return JSON.parse(JSON.stringify(doc)) as unknown;
}
