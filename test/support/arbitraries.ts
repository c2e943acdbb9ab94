import fc from 'fast-check';

/**
 * fast-check generators of hostile request values, shared by the fuzz tests. Each generator mixes
 * values the API must accept with values it must refuse; the tests decide which is which from the
 * value itself (see fuzz-contract.ts), never from the generator that made it.
 */

/** SQL that would do damage if it ever reached a statement as text instead of a parameter. */
export const SQL_FRAGMENTS = [
  "'; DROP SCHEMA public CASCADE; --",
  "x'; DROP SCHEMA shardgate CASCADE;--",
  "' OR '1'='1",
  '"; DROP TABLE appointments; --',
  'client_canary"; DROP SCHEMA "client_canary',
  '$$; DROP SCHEMA shared CASCADE; $$',
  '$tag$',
  '$1',
  "E'\\x00'",
  "U&'\\0000'",
  '\\',
  '\\\\',
  "\\'",
  '\\u0000',
  '%s%n%x',
  '%00',
  '/* */',
  '-- ',
  '; SELECT pg_sleep(30); --',
  "')); DELETE FROM shardgate.tenants; --",
  'SET search_path = public, pg_catalog',
  "COPY (SELECT 1) TO PROGRAM 'id'",
  '::jsonb',
  '${jndi:ldap://127.0.0.1:1/x}',
  '{{7*7}}',
  '..',
  '../../etc/passwd',
];

/** Unicode that trips naive handling: bidi overrides, zero-width, BOM, emoji, lookalikes. */
export const UNICODE_FRAGMENTS = [
  '\u202e',
  '\u200b',
  '\u200d',
  '\ufeff',
  '\u2028',
  '\u2029',
  '\u00a0',
  '\u0085',
  '\u009b',
  '🦄',
  '👨‍👩‍👧',
  'e\u0301',
  'аcme', // Cyrillic а
  'ａｃｍｅ',
  'İ',
  'ß',
  'ﬁ',
  '𝕒',
  '\ufffd',
  '\uffff',
  '\u{10ffff}',
  'ÿ',
];

/** C0 controls and DEL: never valid in a name or short text (newline and tab are in multi-line text). */
export const CONTROL_CHARACTERS = [
  '\u0000',
  '\u0001',
  '\b',
  '\t',
  '\n',
  '\u000b',
  '\f',
  '\r',
  '\u001b',
  '\u001f',
  '\u007f',
];

/** Halves of surrogate pairs: not encodable as UTF-8, so they reach the gateway as U+FFFD. */
export const LONE_SURROGATES = ['\ud800', '\udbff', '\udc00', '\udfff'];

const fragment = fc.oneof(
  { arbitrary: fc.constantFrom(...SQL_FRAGMENTS), weight: 3 },
  { arbitrary: fc.constantFrom(...UNICODE_FRAGMENTS), weight: 3 },
  { arbitrary: fc.constantFrom(...CONTROL_CHARACTERS), weight: 2 },
  { arbitrary: fc.constantFrom(...LONE_SURROGATES), weight: 1 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 6 }), weight: 2 },
  { arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 12 }), weight: 3 },
);

/** `n` copies of `unit` (a single UTF-16 code unit keeps lengths exact). */
export function repeated(n: number, unit = 'a'): string {
  return unit.repeat(n);
}

/**
 * A hostile string: glued fragments of SQL, quotes, controls, odd Unicode; random full-range
 * Unicode; or a plain string of exactly one of `lengths` (field limits ± 1) or something huge.
 */
export function hostileString(lengths: readonly number[] = []): fc.Arbitrary<string> {
  const sizes = [...new Set(lengths.flatMap((n) => [n - 1, n, n + 1]).filter((n) => n >= 0))];
  return fc.oneof(
    {
      arbitrary: fc.array(fragment, { minLength: 1, maxLength: 6 }).map((p) => p.join('')),
      weight: 6,
    },
    { arbitrary: fc.string({ unit: 'binary', maxLength: 40 }), weight: 2 },
    { arbitrary: fc.constant(''), weight: 1 },
    ...(sizes.length > 0
      ? [
          {
            arbitrary: fc
              .tuple(fc.constantFrom(...sizes), fc.constantFrom('a', 'é', "'", '\u200b', 'Z'))
              .map(([n, unit]) => repeated(n, unit)),
            weight: 3,
          },
        ]
      : []),
    {
      arbitrary: fc
        .constantFrom(4 * 1024, 64 * 1024 + 1, 300 * 1024)
        .map((n) => `${repeated(n, 'x')}'; DROP SCHEMA public; --`),
      weight: 1,
    },
  );
}

// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/g;

/** A string of `min`..`max` printable characters: what a free-text field must accept. */
export function printableString(min: number, max: number): fc.Arbitrary<string> {
  const unit = fc.oneof(
    fc.constantFrom(...SQL_FRAGMENTS.filter((s) => s.length === 1), "'", '"', '$', '\\', ';', '%'),
    fc.constantFrom('é', 'ß', 'İ', '\u202e', '\u200b', '\ufeff', 'а', 'Z', ' '),
    fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }),
  );
  return fc
    .array(unit, { minLength: min, maxLength: max })
    .map((chars) => chars.join('').replace(CONTROL_CHARACTER, 'x'));
}

/** Client ids that look almost right: case, dots, underscores, double hyphens, length, lookalikes. */
export const NEAR_MISS_CLIENT_IDS = [
  '',
  'Acme-HVAC',
  'ACME',
  'acme..hvac',
  '..',
  '../client-x',
  'client_x',
  'client_',
  'a--b',
  '-a',
  'a-',
  '-',
  'a b',
  ' acme',
  'acme ',
  'acme\n',
  'acme\t',
  'acme\u0000',
  '\u0000',
  'аcme', // Cyrillic а
  'ａcme',
  'acme\u200b',
  'ﬁsh',
  'İstanbul',
  'acme/hvac',
  'acme.hvac',
  'acme:hvac',
  '*',
  '%',
  "acme'",
  "x'; DROP SCHEMA public CASCADE;--",
  'a'.repeat(57),
  `${'a'.repeat(56)}-`,
  'a'.repeat(64),
  'a'.repeat(300),
];

/** A syntactically valid client id of 1..56 characters (most are unknown to any gateway). */
export const validClientId = fc
  .tuple(
    fc.stringMatching(/^[a-z0-9]{1,12}$/),
    fc.array(fc.stringMatching(/^[a-z0-9]{1,8}$/), { maxLength: 5 }),
  )
  .map(([head, rest]) => [head, ...rest].join('-').slice(0, 56).replace(/-$/, ''));

/**
 * Valid values four times in five, hostile ones otherwise: a request has several fields, and
 * enough of them must be valid together for the fuzz to reach the database too.
 */
export function mostly<T>(valid: fc.Arbitrary<T>, hostile: fc.Arbitrary<T>): fc.Arbitrary<T> {
  return fc.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: hostile, weight: 1 });
}

/** Client ids that must be refused: near misses and hostile strings (some may still be valid). */
export const hostileClientId = fc.oneof(
  fc.constantFrom(...NEAR_MISS_CLIENT_IDS),
  hostileString([56]),
);

/**
 * Requests valid except for a few fields: a third entirely valid, half with one field taken from
 * `hostile`, the rest with several. A "hostile" value may still be valid; the test's contract
 * decides. One bad field at a time also checks that the error names that field.
 */
export function requestArb<T extends object>(
  valid: { [K in keyof T]: fc.Arbitrary<T[K]> },
  hostile: { [K in keyof T]?: fc.Arbitrary<T[K]> },
): fc.Arbitrary<T> {
  const keys = Object.keys(hostile) as (keyof T & string)[];
  const which = fc.oneof(
    { arbitrary: fc.constant<(keyof T & string)[]>([]), weight: 3 },
    { arbitrary: fc.constantFrom(...keys).map((k) => [k]), weight: 5 },
    { arbitrary: fc.subarray(keys), weight: 2 },
  );
  return fc
    .tuple(
      fc.record(valid) as fc.Arbitrary<T>,
      fc.record(hostile as { [K in keyof T]: fc.Arbitrary<T[K]> }) as fc.Arbitrary<T>,
      which,
    )
    .map(([v, h, chosen]) => {
      const out = { ...v };
      for (const k of chosen) out[k] = h[k];
      return out;
    });
}

/**
 * Client ids: mostly `known` ones (existing tenants), else valid unknown ones, near misses and
 * hostile strings.
 */
export function clientIdArb(known: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    ...(known.length > 0 ? [{ arbitrary: fc.constantFrom(...known), weight: 12 }] : []),
    { arbitrary: validClientId, weight: 2 },
    { arbitrary: fc.constantFrom(...NEAR_MISS_CLIENT_IDS), weight: 2 },
    { arbitrary: hostileString([56]), weight: 2 },
  );
}

/** Shard names: `known` ones, valid unknown ones, and the same near misses as client ids. */
export function shardNameArb(known: readonly string[] = []): fc.Arbitrary<string> {
  return fc.oneof(
    ...(known.length > 0 ? [{ arbitrary: fc.constantFrom(...known), weight: 2 }] : []),
    { arbitrary: validClientId.map((s) => `zz-${s}`.slice(0, 63).replace(/-$/, '')), weight: 2 },
    {
      arbitrary: fc.constantFrom(...NEAR_MISS_CLIENT_IDS, 'a'.repeat(63), 'a'.repeat(64)),
      weight: 3,
    },
    { arbitrary: hostileString([63]), weight: 3 },
  );
}

/** int32 values at and around every limit the API has (page sizes, weights, batch sizes). */
export const int32Arb = fc.oneof(
  {
    arbitrary: fc.constantFrom(0, 1, -1, 2, 16, 17, 50, 999, 1000, 1001, 10_000, 10_001),
    weight: 3,
  },
  { arbitrary: fc.constantFrom(2 ** 31 - 1, -(2 ** 31), 2 ** 30, -(2 ** 30)), weight: 1 },
  { arbitrary: fc.integer(), weight: 2 },
);

/** int64 values a JavaScript number can carry exactly, including the extremes. */
export const int64Arb = fc.oneof(
  fc.constantFrom(0, 1, -1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2 ** 31, 2 ** 32),
  fc.maxSafeInteger(),
);

/** Doubles, including NaN, ±Infinity, -0, subnormals and the extremes. */
export const doubleArb = fc.oneof(
  fc.constantFrom(Number.NaN, Infinity, -Infinity, -0, Number.MIN_VALUE, Number.MAX_VALUE, 0.78),
  fc.double(),
);

const YEAR_1 = new Date('0001-01-01T00:00:00.000Z').getTime();
const AFTER_YEAR_9999 = new Date('+010000-01-01T00:00:00.000Z').getTime();

/** Dates inside and outside years 1..9999, up to the ends of what a JavaScript Date can hold. */
export const dateArb = fc.oneof(
  {
    arbitrary: fc.date({
      min: new Date(YEAR_1),
      max: new Date(AFTER_YEAR_9999 - 1),
      noInvalidDate: true,
    }),
    weight: 8,
  },
  {
    arbitrary: fc.constantFrom(
      new Date(YEAR_1),
      new Date(YEAR_1 - 1),
      new Date(AFTER_YEAR_9999 - 1),
      new Date(AFTER_YEAR_9999),
      new Date(8.64e15),
      new Date(-8.64e15),
      new Date(0),
      new Date(-1),
    ),
    weight: 2,
  },
  { arbitrary: fc.date({ noInvalidDate: true }), weight: 1 },
);

/** UUID-ish ids: real ones from `known`, random valid ones, near misses and hostile strings. */
export function uuidArb(known: readonly string[] = []): fc.Arbitrary<string> {
  return fc.oneof(
    ...(known.length > 0 ? [{ arbitrary: fc.constantFrom(...known), weight: 6 }] : []),
    { arbitrary: fc.uuid(), weight: 2 },
    { arbitrary: fc.uuid().map((u) => u.toUpperCase()), weight: 1 },
    {
      arbitrary: fc
        .uuid()
        .chain((u) =>
          fc.constantFrom(
            `{${u}}`,
            u.replaceAll('-', ''),
            `${u} `,
            `${u}\u0000`,
            `${u}'--`,
            u.slice(1),
          ),
        ),
      weight: 2,
    },
    {
      arbitrary: fc.constantFrom(
        '00000000-0000-0000-0000-000000000000',
        'ffffffff-ffff-ffff-ffff-ffffffffffff',
      ),
      weight: 1,
    },
    { arbitrary: hostileString([36]), weight: 1 },
  );
}

/** Base64url of arbitrary text, as a caller forging a page token would send. */
export function base64url(text: string): string {
  return Buffer.from(text).toString('base64url');
}

/**
 * Page tokens that no listing issued: garbage text, base64 of random JSON, and token-shaped JSON
 * with a made-up fingerprint. Real tokens (the test collects them) are mixed in by the caller.
 */
export const forgedPageToken = fc.oneof(
  hostileString(),
  fc.jsonValue().map((j) => base64url(JSON.stringify(j))),
  fc
    .record({
      f: fc.string({ maxLength: 20 }),
      c: fc.array(fc.oneof(fc.string(), fc.double(), fc.uuid())),
    })
    .map((t) => base64url(JSON.stringify(t))),
  fc.constantFrom(base64url('null'), base64url('[]'), base64url('{"c":[1,2]}'), '====', '%%%', '.'),
);

const cursorNumber = fc.oneof(
  { arbitrary: fc.integer({ min: -62_135_596_800_000, max: 253_402_300_799_999 }), weight: 3 },
  {
    arbitrary: fc.constantFrom(
      8.64e15,
      -8.64e15,
      8.64e15 + 1,
      1e300,
      -1,
      0.5,
      253_402_300_800_000,
      -62_135_596_800_001,
    ),
    weight: 2,
  },
  { arbitrary: doubleArb.filter((n) => Number.isFinite(n)), weight: 1 },
);
const cursorText = fc.oneof(fc.uuid(), validClientId, hostileString());

/**
 * A keyset cursor as a forger might put it in a token whose fingerprint is right: mostly the
 * shapes real cursors have (time and id, or two keys) with hostile contents.
 */
export const hostileCursor: fc.Arbitrary<(string | number)[]> = fc.oneof(
  { arbitrary: fc.tuple(cursorNumber, cursorText), weight: 4 },
  { arbitrary: fc.tuple(cursorText, cursorText), weight: 2 },
  { arbitrary: fc.tuple(cursorText), weight: 2 },
  { arbitrary: fc.array(fc.oneof(cursorNumber, cursorText), { maxLength: 3 }), weight: 2 },
);

/** update_mask paths: real ones, `*`, output-only, nested, unknown, duplicates, hostile. */
export const updateMaskArb = fc.option(
  fc.array(
    fc.oneof(
      {
        arbitrary: fc.constantFrom('client_phone', 'scheduled_at', 'service_type', 'status', '*'),
        weight: 16,
      },
      {
        arbitrary: fc.constantFrom(
          'id',
          'created_at',
          'updated_at',
          'appointment.status',
          'status.value',
          'STATUS',
          'clientPhone',
          'service_type ',
          '',
          '__proto__',
          'constructor',
          '*.*',
        ),
        weight: 1,
      },
      { arbitrary: hostileString(), weight: 1 },
    ),
    { maxLength: 4 },
  ),
  { nil: undefined, freq: 3 },
);

/** Keys that are special to JavaScript objects, to jsonb, or to SQL. */
export const HOSTILE_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'hasOwnProperty',
  'toString',
  'valueOf',
  '',
  ' ',
  'a\u0000b',
  '\u0000',
  "'; DROP TABLE state; --",
  '$$',
  '\\',
  '"',
  '🦄',
  '\ud800',
  'a.b',
  '$where',
  'null',
];

/** An object with exactly these own, enumerable keys (`__proto__` included, as JSON.parse makes). */
export function objectOf(
  entries: readonly (readonly [string, unknown])[],
): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of entries) {
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return o;
}

/** A short hostile string (no huge ones), for JSON keys and leaves. */
export const shortHostileString = fc.array(fragment, { maxLength: 4 }).map((p) => p.join(''));

const jsonKey = fc.oneof(
  { arbitrary: fc.string({ maxLength: 8 }), weight: 4 },
  { arbitrary: shortHostileString, weight: 2 },
  { arbitrary: fc.constantFrom(...HOSTILE_KEYS), weight: 1 },
);

const jsonLeaf = fc.oneof(
  { arbitrary: fc.constant(null), weight: 1 },
  { arbitrary: fc.boolean(), weight: 1 },
  { arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }), weight: 2 },
  { arbitrary: fc.integer(), weight: 2 },
  { arbitrary: fc.constantFrom(Number.NaN, Infinity, -Infinity), weight: 1 },
  { arbitrary: fc.string({ maxLength: 12 }), weight: 2 },
  { arbitrary: shortHostileString, weight: 3 },
);

const jsonTree = fc.letrec<{ value: unknown; array: unknown[]; object: Record<string, unknown> }>(
  (tie) => ({
    value: fc.oneof({ depthSize: 'small' }, jsonLeaf, tie('array'), tie('object')),
    array: fc.array(tie('value'), { maxLength: 4 }),
    object: fc.array(fc.tuple(jsonKey, tie('value')), { maxLength: 5 }).map(objectOf),
  }),
);

const safeString = shortHostileString.filter((v) => !v.includes('\u0000'));
const safeKey = fc
  .oneof(fc.string({ maxLength: 8 }), safeString, fc.constantFrom(...HOSTILE_KEYS))
  .filter((k) => !k.includes('\u0000') && !['__proto__', 'constructor', 'prototype'].includes(k));
const safeTree = fc.letrec<{ value: unknown; array: unknown[]; object: Record<string, unknown> }>(
  (tie) => ({
    value: fc.oneof(
      { depthSize: 'small' },
      fc.constant(null),
      fc.boolean(),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.integer(),
      safeString,
      tie('array'),
      tie('object'),
    ),
    array: fc.array(tie('value'), { maxLength: 4 }),
    object: fc.array(fc.tuple(safeKey, tie('value')), { maxLength: 5 }).map(objectOf),
  }),
);

/**
 * JSON documents the API must store exactly: odd keys (`toString`, `$$`, quotes, emoji, lone
 * surrogates), SQL and Unicode in strings, extreme doubles; never NUL, prototype keys or NaN.
 */
export const validJsonDocumentArb: fc.Arbitrary<Record<string, unknown>> = safeTree.object;

/** `levels` nested containers: objects, arrays, or alternating, with a leaf at the bottom. */
export function nestedDocument(
  levels: number,
  shape: 'object' | 'array' | 'mixed',
): Record<string, unknown> {
  let doc: unknown = 'leaf';
  for (let i = levels - 1; i >= 1; i--) {
    const asArray = shape === 'array' || (shape === 'mixed' && i % 2 === 0);
    doc = asArray ? [doc] : { d: doc };
  }
  return { root: doc };
}

/** A document whose serialised JSON is exactly `bytes` bytes long. */
export function documentOfSize(bytes: number): Record<string, unknown> {
  return { blob: repeated(Math.max(0, bytes - '{"blob":""}'.length), 'x') };
}

/** Bytes of the largest document the API takes (validate.ts MAX_JSON_BYTES, 256 KiB). */
const MAX_DOC = 256 * 1024;

/**
 * JSON documents for google.protobuf.Struct fields: random trees with hostile keys and values,
 * nesting around the 32-level limit and far past it (1000), sizes around 256 KiB and past the
 * 4 MiB message limit, NaN and ±Infinity (a Struct carries them; JSON cannot).
 */
export const jsonDocumentArb: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  { arbitrary: jsonTree.object, weight: 8 },
  {
    arbitrary: fc
      .tuple(
        fc.constantFrom(2, 31, 32, 33, 34, 50, 1000),
        fc.constantFrom('object', 'array', 'mixed') as fc.Arbitrary<'object' | 'array' | 'mixed'>,
      )
      .map(([levels, shape]) => nestedDocument(levels, shape)),
    weight: 3,
  },
  {
    arbitrary: fc
      .constantFrom(MAX_DOC - 1, MAX_DOC, MAX_DOC + 1, 1024 * 1024, 5 * 1024 * 1024)
      .map(documentOfSize),
    weight: 1,
  },
  {
    arbitrary: fc.constantFrom(...HOSTILE_KEYS).chain((k) =>
      jsonLeaf.map((v) =>
        objectOf([
          [k, v],
          ['ok', 1],
        ]),
      ),
    ),
    weight: 2,
  },
);

/** A page token with where it came from: the test knows which query, if any, issued it. */
export interface PageTokenCase {
  token: string;
  origin: 'none' | 'forged' | 'issued' | 'cursor';
  /** For `issued`: the name of the query that issued it (the test's own label). */
  issuedFor?: string;
  /** For `cursor`: the keyset a forger put behind a correct fingerprint. */
  cursor?: unknown[];
}

/**
 * Page tokens: none, forged ones, tokens real listings issued (`issued`, labelled by query), and
 * tokens with a correct fingerprint but a hostile keyset, made by `forge` (the listing's filters
 * are public: anyone can compute the fingerprint).
 */
export function pageTokenArb(
  issued: Readonly<Record<string, string>>,
  forge?: (cursor: (string | number)[]) => string,
): fc.Arbitrary<PageTokenCase> {
  const real = Object.entries(issued).filter(([, token]) => token !== '');
  return fc.oneof(
    { arbitrary: fc.constant<PageTokenCase>({ token: '', origin: 'none' }), weight: 4 },
    {
      arbitrary: forgedPageToken
        .filter((token) => token !== '')
        .map((token): PageTokenCase => ({ token, origin: 'forged' })),
      weight: 2,
    },
    ...(real.length > 0
      ? [
          {
            arbitrary: fc
              .constantFrom(...real)
              .map(([issuedFor, token]): PageTokenCase => ({ token, origin: 'issued', issuedFor })),
            weight: 3,
          },
        ]
      : []),
    ...(forge
      ? [
          {
            arbitrary: hostileCursor.map((cursor): PageTokenCase => ({
              token: forge(cursor),
              origin: 'cursor',
              cursor,
            })),
            weight: 3,
          },
        ]
      : []),
  );
}
