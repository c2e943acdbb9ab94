import { describe, expect, it } from 'vitest';
import * as v from '../../../src/api/validate.js';
import { isShardgateError } from '../../../src/core/errors.js';

function invalid(fn: () => unknown): boolean {
  try {
    fn();
  } catch (err) {
    return isShardgateError(err, 'invalid-argument');
  }
  return false;
}

function nested(depth: number): Record<string, unknown> {
  let doc: Record<string, unknown> = { leaf: true };
  for (let i = 1; i < depth; i++) doc = { n: doc };
  return doc;
}

describe('validate', () => {
  it('coerces page sizes the AIP way', () => {
    expect(v.pageSize(0)).toBe(v.DEFAULT_PAGE_SIZE);
    expect(v.pageSize(7)).toBe(7);
    expect(v.pageSize(1_000_000)).toBe(v.MAX_PAGE_SIZE);
    expect(invalid(() => v.pageSize(-1))).toBe(true);
  });

  it('serialises a JSON object within the limits', () => {
    expect(v.jsonObject({ a: [1, 'x', null] }, 'summary')).toBe('{"a":[1,"x",null]}');
    expect(v.jsonObject(nested(v.MAX_JSON_DEPTH), 'summary')).toContain('leaf');
  });

  it.each([
    ['an array', [1]],
    ['null', null],
    ['too deep', nested(v.MAX_JSON_DEPTH + 1)],
    ['too large', { s: 'x'.repeat(v.MAX_JSON_BYTES) }],
    ['a NUL character', { s: 'a\u0000b' }],
    ['a NUL in a key', { 'a\u0000b': 1 }],
    ['a NUL deep inside', { a: [{ b: ['\u0000'] }] }],
    ['a prototype key', JSON.parse('{"__proto__": {"polluted": true}}')],
    ['NaN', { n: Number.NaN }],
  ])('rejects %s', (_name, value) => {
    expect(invalid(() => v.jsonObject(value, 'summary'))).toBe(true);
  });

  // Found by fuzzing: the NUL check searched the serialised JSON for `\u0000`, which is also how
  // JSON.stringify escapes a backslash followed by `u0000`, so such text was refused as a NUL.
  it('accepts text that spells a backslash and u0000 (it is not a NUL)', () => {
    const doc = { path: 'C:\\u0000dir', ['\\u0000']: '\\\\u0000' };
    expect(JSON.parse(v.jsonObject(doc, 'summary'))).toEqual(doc);
  });

  // Limits count characters (code points), as the proto comments and PostgreSQL do, not the
  // UTF-16 units of a JavaScript string: an emoji is one character but two units.
  it('counts text limits in characters, not UTF-16 units', () => {
    const emoji = '\u{1F527}'; // 🔧
    expect(emoji.length).toBe(2);
    expect(v.agentName(emoji.repeat(128), 'from_agent')).toBe(emoji.repeat(128));
    expect(invalid(() => v.agentName(emoji.repeat(129), 'from_agent'))).toBe(true);
    expect(invalid(() => v.agentName(`${emoji.repeat(128)}x`, 'from_agent'))).toBe(true);
    expect(v.text(emoji.repeat(3), 'name', 3, 10)).toBe(emoji.repeat(3));
    // two characters in four units: fewer than the three asked for
    expect(invalid(() => v.text(emoji.repeat(2), 'name', 3, 10))).toBe(true);
    expect(invalid(() => v.text('ab', 'name', 3, 10))).toBe(true);
    expect(v.text('abc', 'name', 3, 3)).toBe('abc');
  });

  it('checks UUIDs, phones and timestamps', () => {
    expect(v.uuid('0b8a3f2e-7c1d-4e5f-9a6b-1c2d3e4f5a6b')).toBe(
      '0b8a3f2e-7c1d-4e5f-9a6b-1c2d3e4f5a6b',
    );
    expect(invalid(() => v.uuid("1' OR '1'='1"))).toBe(true);
    expect(v.phone('+1 (555) 010-2030')).toBe('+1 (555) 010-2030');
    expect(invalid(() => v.phone('call me'))).toBe(true);
    expect(invalid(() => v.timestamp(undefined, 'scheduled_at'))).toBe(true);
    expect(invalid(() => v.timestamp(new Date(Number.NaN), 'scheduled_at'))).toBe(true);
  });
});
