import { describe, expect, it } from 'vitest';
import { decodePageToken, encodePageToken } from '../../../src/api/page-token.js';
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
});
