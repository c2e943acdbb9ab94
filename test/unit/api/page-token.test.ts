import { describe, expect, it } from 'vitest';
import {
  cursorDate,
  cursorString,
  decodePageToken,
  encodePageToken,
  fitPage,
} from '../../../src/api/page-token.js';
import { isShardgateError } from '../../../src/core/errors.js';

function invalid(fn: () => unknown): boolean {
  try {
    fn();
  } catch (err) {
    return isShardgateError(err, 'invalid-argument');
  }
  return false;
}

describe('page tokens', () => {
  it('round-trips a cursor for the same filters', () => {
    const token = encodePageToken(['acme', 5], [1_700_000_000_000, 'b3c1']);
    expect(decodePageToken(token, ['acme', 5])).toEqual([1_700_000_000_000, 'b3c1']);
  });

  it('treats an empty token as the first page', () => {
    expect(decodePageToken('', ['x'])).toBeUndefined();
  });

  it('rejects a token replayed with other filters', () => {
    const token = encodePageToken(['acme'], ['k']);
    expect(invalid(() => decodePageToken(token, ['other']))).toBe(true);
  });

  it.each([
    ['not base64 json'],
    ['e30'],
    [Buffer.from('{"f":"x","c":[{}]}').toString('base64url')],
  ])('rejects garbage %s', (token) => {
    expect(invalid(() => decodePageToken(token, []))).toBe(true);
  });

  // Found by fuzzing: a forged cursor with a correct fingerprint reached Postgres as a date of
  // year 275760 (answered OK), or of year -271821, which a timestamptz cannot hold.
  it.each([[8.64e15], [-8.64e15], [253_402_300_800_000], [-62_135_596_800_001], [Number.NaN]])(
    'a forged cursor date outside years 1..9999 (%d) is INVALID_ARGUMENT',
    (ms) => {
      expect(invalid(() => cursorDate(ms))).toBe(true);
    },
  );

  it('accepts cursor dates at both ends of years 1..9999', () => {
    expect(cursorDate(-62_135_596_800_000).toISOString()).toBe('0001-01-01T00:00:00.000Z');
    expect(cursorDate(253_402_300_799_999).toISOString()).toBe('9999-12-31T23:59:59.999Z');
  });

  // Found by fuzzing: a forged cursor string with a NUL reached Postgres, which answered
  // "the catalog rejected a value: invalid byte sequence for encoding UTF8: 0x00".
  it.each([['a\u0000b'], ['\n'], ['x\u007f']])(
    'a forged cursor string with a control character (%j) is INVALID_ARGUMENT',
    (value) => {
      expect(invalid(() => cursorString(value))).toBe(true);
    },
  );

  it('accepts the cursor strings listings issue', () => {
    expect(cursorString('acme-hvac')).toBe('acme-hvac');
    expect(cursorString('first_time_fix.rate')).toBe('first_time_fix.rate');
  });

  it('fits a page to a byte budget, keeping at least one item', () => {
    const size = (n: number): number => n;
    expect(fitPage([3, 3, 3, 3], size, 7)).toEqual([3, 3]);
    expect(fitPage([3, 3], size, 6)).toEqual([3, 3]);
    expect(fitPage([9, 1], size, 5)).toEqual([9]);
    expect(fitPage([], size, 5)).toEqual([]);
  });
});
