import { createHash, randomBytes } from 'node:crypto';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createShardgateClient } from '../../src/client/index.js';
import type { Token } from '../../src/gen/shardgate/v1/admin.js';
import {
  createTestTopology,
  errorOf,
  startTestGateway,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

const BOOTSTRAP = `bootstrap-${randomBytes(24).toString('hex')}`;
const DAY_SECONDS = 86_400;

describe('AdminService tokens', () => {
  let topology: TestTopology;
  let gw: TestGateway;

  beforeAll(async () => {
    topology = await createTestTopology(1);
    gw = await startTestGateway(
      topology,
      { auth: { required: true, adminToken: BOOTSTRAP } },
      { token: BOOTSTRAP },
    );
  });
  afterAll(async () => gw?.close());

  const create = (displayName: string, scope = 'service', ttlSeconds?: number) =>
    gw.client.admin.createToken({
      displayName,
      scope,
      ttl: ttlSeconds === undefined ? undefined : { seconds: ttlSeconds, nanos: 0 },
    });

  it('creates a token whose secret is shown once and stored only as its SHA-256', async () => {
    const before = Date.now();
    const { token, secret } = await create('acme scheduler', 'client:acme-hvac', 30 * DAY_SECONDS);
    expect(secret).toMatch(new RegExp(`^sgt_${token!.id}_[A-Za-z0-9_-]{43}$`));
    expect(token).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{16}$/) as string,
      displayName: 'acme scheduler',
      scope: 'client:acme-hvac',
      createdBy: 'bootstrap',
      createdAt: expect.any(Date) as Date,
      expiresAt: expect.any(Date) as Date,
      revokedAt: undefined,
    });
    const ttlMs = token!.expiresAt!.getTime() - before;
    expect(ttlMs).toBeGreaterThanOrEqual(30 * DAY_SECONDS * 1000);
    expect(ttlMs).toBeLessThan(30 * DAY_SECONDS * 1000 + 60_000);

    const row = await withPg(topology.catalogUrl, async (pg) => {
      const res = await pg.query<{ hash: Buffer; everything: string }>(
        'SELECT secret_sha256 AS hash, t::text AS everything FROM shardgate.tokens t WHERE id = $1',
        [token!.id],
      );
      return res.rows[0]!;
    });
    expect(row.hash.equals(createHash('sha256').update(secret).digest())).toBe(true);
    expect(row.everything).not.toContain(secret.slice(22));
  });

  it('records which token created a token', async () => {
    const admin = await create('an admin', 'admin');
    const client = createShardgateClient({ address: gw.gateway.address, token: admin.secret });
    try {
      const made = await client.admin.createToken({ displayName: 'made by admin', scope: 'admin' });
      expect(made.token!.createdBy).toBe(admin.token!.id);
    } finally {
      client.close();
    }
  });

  it.each([
    [{ displayName: '', scope: 'service' }, 'display_name is required'],
    [{ displayName: 'x'.repeat(129), scope: 'service' }, 'display_name must be at most 128'],
    [{ displayName: 'a\nb', scope: 'service' }, 'control characters'],
    [
      { displayName: 'x', scope: 'root' },
      "scope must be 'admin', 'service' or 'client:<client_id>'",
    ],
    [{ displayName: 'x', scope: 'client:Not_Valid' }, 'needs a valid client id'],
    [{ displayName: 'x', scope: 'service', ttl: { seconds: 0, nanos: 0 } }, 'ttl must be positive'],
    [
      { displayName: 'x', scope: 'service', ttl: { seconds: -5, nanos: 0 } },
      'ttl must be positive',
    ],
    [
      { displayName: 'x', scope: 'service', ttl: { seconds: 11 * 366 * DAY_SECONDS, nanos: 0 } },
      'ttl must be at most',
    ],
  ])('refuses %j with INVALID_ARGUMENT', async (request, message) => {
    const err = await errorOf(gw.client.admin.createToken(request));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toContain(message);
  });

  it('lists newest first in pages, hiding revoked tokens unless show_revoked', async () => {
    const made: Token[] = [];
    for (let i = 0; i < 5; i++) made.push((await create(`page ${i}`)).token!);
    await gw.client.admin.revokeToken({ id: made[1]!.id });
    const listAll = async (showRevoked: boolean) => {
      const ids: string[] = [];
      let pageToken = '';
      do {
        const page = await gw.client.admin.listTokens({ pageSize: 2, pageToken, showRevoked });
        expect(page.tokens.length).toBeLessThanOrEqual(2);
        ids.push(...page.tokens.map((t) => t.id));
        pageToken = page.nextPageToken;
      } while (pageToken !== '');
      return ids;
    };
    const newestFirst = made.map((t) => t.id).reverse();
    const everything = await listAll(true);
    expect(everything.slice(0, 5)).toEqual(newestFirst);
    const active = await listAll(false);
    expect(active.slice(0, 4)).toEqual(newestFirst.filter((id) => id !== made[1]!.id));
    expect(everything.length - active.length).toBe(1);
  });

  it('refuses a page token issued for the other show_revoked', async () => {
    await create('one');
    await create('two');
    const first = await gw.client.admin.listTokens({ pageSize: 1, showRevoked: true });
    const err = await errorOf(
      gw.client.admin.listTokens({ pageSize: 1, pageToken: first.nextPageToken }),
    );
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
  });

  it('revokes idempotently: the second revoke returns the first revocation', async () => {
    const { token } = await create('to revoke');
    const first = await gw.client.admin.revokeToken({ id: token!.id });
    const second = await gw.client.admin.revokeToken({ id: token!.id });
    expect(first.token!.revokedAt).toBeInstanceOf(Date);
    expect(second.token).toEqual(first.token);
  });

  it('answers NOT_FOUND for an unknown id and INVALID_ARGUMENT for a malformed one', async () => {
    expect((await errorOf(gw.client.admin.revokeToken({ id: 'ffffffffffffffff' }))).code).toBe(
      Status.NOT_FOUND,
    );
    for (const id of ['', 'sgt_ffffffffffffffff', "'; DELETE FROM shardgate.tokens; --"]) {
      expect((await errorOf(gw.client.admin.revokeToken({ id }))).code).toBe(
        Status.INVALID_ARGUMENT,
      );
    }
  });
});
