import { describe, expect, it } from 'vitest';
import { formatScope, parseScope } from '../../../src/auth/scope.js';
import {
  bearerSecret,
  generateTokenSecret,
  hashSecret,
  parseTokenId,
  tokenIdOf,
} from '../../../src/auth/token-secret.js';
import { exposureProblem, isLoopbackListen } from '../../../src/auth/exposure.js';

describe('token secrets', () => {
  it('generates sgt_<id>_<43 base64url chars> secrets whose id parses back', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const t = generateTokenSecret();
      expect(t.secret).toMatch(/^sgt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
      expect(tokenIdOf(t.secret)).toBe(t.id);
      expect(t.secretSha256.equals(hashSecret(t.secret))).toBe(true);
      seen.add(t.secret);
    }
    expect(seen.size).toBe(200);
  });

  it.each([
    '',
    'garbage',
    'sgt_',
    'sgt_0123456789abcdef',
    'sgt_0123456789abcdef_short',
    'sgt_0123456789ABCDEF_' + 'a'.repeat(43),
    'sgt_0123456789abcdef_' + 'a'.repeat(44),
    'sgt_0123456789abcdef_' + 'a'.repeat(42) + '=',
    'xgt_0123456789abcdef_' + 'a'.repeat(43),
    "sgt_0123456789abcdef_' OR 1=1 --" + 'a'.repeat(28),
  ])('refuses %j as a token secret', (raw) => {
    expect(tokenIdOf(raw)).toBeUndefined();
  });

  it('reads `Bearer <secret>` case-insensitively and nothing else', () => {
    expect(bearerSecret('Bearer abc')).toBe('abc');
    expect(bearerSecret('bearer abc')).toBe('abc');
    expect(bearerSecret('BEARER  abc ')).toBe('abc');
    expect(bearerSecret('Basic abc')).toBeUndefined();
    expect(bearerSecret('Bearer')).toBeUndefined();
    expect(bearerSecret('Bearer ')).toBeUndefined();
    expect(bearerSecret('abc')).toBeUndefined();
    expect(bearerSecret('Bearer a, Bearer b')).toBeUndefined();
    expect(bearerSecret(`Bearer ${'a'.repeat(600)}`)).toBeUndefined();
  });

  it('validates token ids for RevokeToken', () => {
    expect(parseTokenId('0123456789abcdef')).toBe('0123456789abcdef');
    expect(() => parseTokenId('')).toThrow(/id is required/);
    expect(() => parseTokenId('sgt_0123456789abcdef')).toThrow(/16 hex characters/);
  });
});

describe('scopes', () => {
  it.each(['admin', 'service', 'client:acme-hvac', 'client:a1'])('round-trips %s', (raw) => {
    expect(formatScope(parseScope(raw))).toBe(raw);
  });

  it.each(['', 'Admin', 'client:', 'client:Acme', 'client:a_b', 'clients:acme', 'service '])(
    'refuses %j with INVALID_ARGUMENT',
    (raw) => {
      expect(() => parseScope(raw)).toThrow(
        expect.objectContaining({ code: 'invalid-argument' }) as Error,
      );
    },
  );
});

describe('exposure', () => {
  it.each([
    ['127.0.0.1:50051', true],
    ['127.1.2.3:1', true],
    ['localhost:50051', true],
    ['[::1]:50051', true],
    ['unix:/tmp/shardgate.sock', true],
    ['0.0.0.0:50051', false],
    ['[::]:50051', false],
    ['10.0.0.5:50051', false],
    ['gateway.example.com:50051', false],
    ['127.0.0.1.example.com:50051', false],
    ['50051', false],
  ])('%s is loopback: %s', (listen, loopback) => {
    expect(isLoopbackListen(listen)).toBe(loopback);
  });

  it('refuses an exposed listen address only while auth is off', () => {
    expect(exposureProblem({ listen: '0.0.0.0:1', auth: { required: false } })).toMatch(
      /refusing to listen on 0\.0\.0\.0:1 without authentication/,
    );
    expect(exposureProblem({ listen: '0.0.0.0:1', auth: { required: true } })).toBeUndefined();
    expect(exposureProblem({ listen: '127.0.0.1:1', auth: { required: false } })).toBeUndefined();
  });
});
