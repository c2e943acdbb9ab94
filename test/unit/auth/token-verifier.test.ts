import { describe, expect, it } from 'vitest';
import { bootstrapIdentity } from '../../../src/auth/identity.js';
import { generateTokenSecret } from '../../../src/auth/token-secret.js';
import { TokenVerifier, type TokenVerifierOptions } from '../../../src/auth/token-verifier.js';
import type { TokenRecord } from '../../../src/catalog/token-store.js';
import { isShardgateError } from '../../../src/core/errors.js';

/** An in-memory token table that counts reads, standing in for the catalog. */
class FakeTokens {
  readonly rows = new Map<string, TokenRecord>();
  loads = 0;
  /** When set, reads wait for this before answering. */
  gate: Promise<void> | undefined;

  add(scope: string, overrides: Partial<TokenRecord> = {}): { id: string; secret: string } {
    const t = generateTokenSecret();
    this.rows.set(t.id, {
      id: t.id,
      secretSha256: t.secretSha256,
      displayName: `token ${t.id}`,
      scope,
      createdBy: 'test',
      createdAt: new Date(),
      expiresAt: null,
      revokedAt: null,
      ...overrides,
    });
    return t;
  }

  load = async (id: string): Promise<TokenRecord | undefined> => {
    this.loads++;
    // The row as of the read; the answer may arrive after it changed, like a real query's.
    const row = this.rows.get(id);
    await this.gate;
    return row;
  };
}

function setup(options: Partial<TokenVerifierOptions> = {}) {
  const tokens = new FakeTokens();
  let trusted = true;
  let nowMs = Date.parse('2030-01-01T00:00:00Z');
  const verifier = new TokenVerifier({
    loadToken: tokens.load,
    cacheTrusted: () => trusted,
    now: () => nowMs,
    ...options,
  });
  return {
    tokens,
    verifier,
    setTrusted: (t: boolean) => (trusted = t),
    advance: (ms: number) => (nowMs += ms),
    nowMs: () => nowMs,
  };
}

/** The error code and message verify() fails with. */
async function failure(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    if (isShardgateError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected verify to fail');
}

describe('TokenVerifier', () => {
  it('reads a token from the catalog once, then verifies it from memory', async () => {
    const { tokens, verifier } = setup();
    const t = tokens.add('client:acme');
    for (let i = 0; i < 100; i++) {
      expect(await verifier.verify(t.secret)).toEqual({
        actor: t.id,
        actorName: `token ${t.id}`,
        scope: { kind: 'client', clientId: 'acme' },
      });
    }
    expect(tokens.loads).toBe(1);
  });

  it('refuses a wrong secret for a real id with the same message as an unknown id', async () => {
    const { tokens, verifier } = setup();
    const t = tokens.add('admin');
    await verifier.verify(t.secret);
    const forged = t.secret.slice(0, -4) + (t.secret.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    const wrong = await failure(verifier.verify(forged));
    const unknown = await failure(verifier.verify(generateTokenSecret().secret));
    expect(wrong.code).toBe('unauthenticated');
    expect(wrong.message).toBe(unknown.message);
    expect(wrong.message).not.toContain(forged);
    expect(tokens.loads).toBe(2);
  });

  it('refuses garbage without reading the catalog', async () => {
    const { tokens, verifier } = setup();
    for (const secret of ['', 'x', 'sgt_nothex_x', 'Bearer x', 'a'.repeat(10_000)]) {
      expect((await failure(verifier.verify(secret))).code).toBe('unauthenticated');
    }
    expect(tokens.loads).toBe(0);
  });

  it('remembers unknown ids in a bounded set: replays stay in memory, floods cannot grow it', async () => {
    const { tokens, verifier } = setup({ maxUnknownEntries: 100 });
    const guessed = generateTokenSecret().secret;
    for (let i = 0; i < 10; i++) await failure(verifier.verify(guessed));
    expect(tokens.loads).toBe(1);
    for (let i = 0; i < 1_000; i++) await failure(verifier.verify(generateTokenSecret().secret));
    expect(verifier.size.unknown).toBe(100);
  });

  it('bounds remembered tokens too', async () => {
    const { tokens, verifier } = setup({ maxEntries: 10 });
    for (let i = 0; i < 50; i++) await verifier.verify(tokens.add('service').secret);
    expect(verifier.size.tokens).toBe(10);
  });

  it('checks expiry on every call, without reading the catalog again', async () => {
    const { tokens, verifier, advance, nowMs } = setup();
    const t = tokens.add('service', { expiresAt: new Date(nowMs() + 60_000) });
    await verifier.verify(t.secret);
    advance(59_999);
    await verifier.verify(t.secret);
    advance(1);
    expect(await failure(verifier.verify(t.secret))).toEqual({
      code: 'unauthenticated',
      message: `token ${t.id} has expired; ask an admin for a new one`,
    });
    expect(tokens.loads).toBe(1);
  });

  it('refuses a revoked token once the change feed says it changed (forget)', async () => {
    const { tokens, verifier } = setup();
    const t = tokens.add('admin');
    await verifier.verify(t.secret);
    tokens.rows.set(t.id, { ...tokens.rows.get(t.id)!, revokedAt: new Date() });
    await verifier.verify(t.secret); // still cached: no event yet
    verifier.forget(t.id);
    expect((await failure(verifier.verify(t.secret))).message).toMatch(/has been revoked/);
    // The revoked row is remembered: a replay costs no catalog read.
    await failure(verifier.verify(t.secret));
    expect(tokens.loads).toBe(2);
  });

  it('reads the catalog on every call while the change feed is down', async () => {
    const { tokens, verifier, setTrusted } = setup();
    const t = tokens.add('admin');
    setTrusted(false);
    for (let i = 0; i < 5; i++) await verifier.verify(t.secret);
    expect(tokens.loads).toBe(5);
    expect(verifier.size).toEqual({ tokens: 0, unknown: 0 });
  });

  it('does not cache a read that raced with a forget (the row may be older than the event)', async () => {
    const { tokens, verifier } = setup();
    const t = tokens.add('admin');
    let release!: () => void;
    tokens.gate = new Promise((r) => (release = r));
    const pending = verifier.verify(t.secret);
    await Promise.resolve();
    tokens.rows.set(t.id, { ...tokens.rows.get(t.id)!, revokedAt: new Date() });
    verifier.forget(t.id);
    release();
    await pending; // read before the revocation: this one call passes
    tokens.gate = undefined;
    expect((await failure(verifier.verify(t.secret))).message).toMatch(/has been revoked/);
  });

  it('shares one catalog read among concurrent calls with the same token', async () => {
    const { tokens, verifier } = setup();
    const t = tokens.add('service');
    let release!: () => void;
    tokens.gate = new Promise((r) => (release = r));
    const calls = Array.from({ length: 20 }, () => verifier.verify(t.secret));
    release();
    await Promise.all(calls);
    expect(tokens.loads).toBe(1);
  });

  it('fails UNAVAILABLE instead of queueing past maxConcurrentLookups', async () => {
    const { tokens, verifier } = setup({ maxConcurrentLookups: 2 });
    let release!: () => void;
    tokens.gate = new Promise((r) => (release = r));
    const first = [0, 1].map(() => failure(verifier.verify(generateTokenSecret().secret)));
    expect((await failure(verifier.verify(generateTokenSecret().secret))).code).toBe('unavailable');
    release();
    expect((await Promise.all(first)).map((f) => f.code)).toEqual([
      'unauthenticated',
      'unauthenticated',
    ]);
  });

  it('accepts the bootstrap secret as admin without reading the catalog', async () => {
    const bootstrapSecret = 'a-bootstrap-secret-of-at-least-32-chars';
    const { tokens, verifier } = setup({ bootstrapSecret });
    expect(await verifier.verify(bootstrapSecret)).toBe(bootstrapIdentity);
    expect((await failure(verifier.verify(`${bootstrapSecret}x`))).code).toBe('unauthenticated');
    expect(tokens.loads).toBe(0);
  });

  it('turns a catalog failure into UNAVAILABLE and caches nothing', async () => {
    const verifier = new TokenVerifier({
      loadToken: () => Promise.reject(new Error('connection refused')),
      cacheTrusted: () => true,
    });
    expect((await failure(verifier.verify(generateTokenSecret().secret))).code).toBe('unavailable');
    expect(verifier.size).toEqual({ tokens: 0, unknown: 0 });
  });

  it('refuses a row whose stored scope does not parse', async () => {
    const { tokens, verifier } = setup();
    const t = tokens.add('superuser');
    expect((await failure(verifier.verify(t.secret))).message).toMatch(/scope this gateway/);
  });
});
