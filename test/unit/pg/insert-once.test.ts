import { describe, expect, it } from 'vitest';
import { canonicalJson, requestKey } from '../../../src/pg/insert-once.js';

describe('canonicalJson', () => {
  it('sorts object keys at every level and keeps array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, 1], c: null } })).toBe(
      '{"a":{"c":null,"d":[3,1]},"b":1}',
    );
    expect(canonicalJson({ a: { c: null, d: [3, 1] }, b: 1 })).toBe(
      canonicalJson({ b: 1, a: { d: [3, 1], c: null } }),
    );
  });

  it('writes Dates as ISO strings and leaves out undefined fields', () => {
    expect(canonicalJson({ at: new Date(Date.UTC(2031, 0, 2)), gone: undefined })).toBe(
      '{"at":"2031-01-02T00:00:00.000Z"}',
    );
  });

  it('escapes keys and strings as JSON does', () => {
    expect(canonicalJson({ 'a"b': 'x\ny', '\u0001': 'é' })).toBe('{"\\u0001":"é","a\\"b":"x\\ny"}');
  });
});

describe('requestKey', () => {
  const id = '3f1c1a5e-8d7b-4a6e-9f00-0c2f6b1d9e10';

  it('fingerprints the input whatever its key order; method and input both count', () => {
    const a = requestKey(id, 'AppendHandoff', { x: 1, y: { p: 1, q: 2 } });
    const b = requestKey(id, 'AppendHandoff', { y: { q: 2, p: 1 }, x: 1 });
    expect(b.sha256.equals(a.sha256)).toBe(true);
    expect(requestKey(id, 'AddKnowledgeEntry', { x: 1, y: { p: 1, q: 2 } }).sha256).not.toEqual(
      a.sha256,
    );
    expect(requestKey(id, 'AppendHandoff', { x: 2, y: { p: 1, q: 2 } }).sha256).not.toEqual(
      a.sha256,
    );
    expect(a.sha256).toHaveLength(32);
  });

  it('carries the caller only when given', () => {
    expect('caller' in requestKey(id, 'M', {})).toBe(false);
    expect(requestKey(id, 'M', {}, 'client:acme').caller).toBe('client:acme');
  });
});
