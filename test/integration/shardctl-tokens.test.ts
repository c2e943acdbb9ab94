import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { tokenJson } from '../../src/cli/token-commands.js';
import { createShardgateClient } from '../../src/client/index.js';
import {
  createTestTopology,
  freshClientId,
  startTestGateway,
  type TestGateway,
} from '../support/harness.js';
import { outcomeOf } from '../support/method-cases.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const BOOTSTRAP = `bootstrap-${randomBytes(24).toString('hex')}`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
type TokenJson = ReturnType<typeof tokenJson>;

/** Runs shardctl as an operator would; `env` is the only SHARDGATE_* environment it sees. */
function shardctl(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  const childEnv: Record<string, string | undefined> = { ...process.env };
  for (const key of Object.keys(childEnv)) if (key.startsWith('SHARDGATE_')) delete childEnv[key];
  Object.assign(childEnv, env);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/shardctl.ts', ...args],
      { cwd: repoRoot, env: childEnv, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      },
    );
  });
}

describe('shardctl tokens', () => {
  let gw: TestGateway;
  let address: string;
  const clientId = freshClientId('ctl-tok');
  /** Runs with the bootstrap token in SHARDGATE_TOKEN. */
  const asAdmin = (...args: string[]) =>
    shardctl(['--address', address, ...args], { SHARDGATE_TOKEN: BOOTSTRAP });
  const json = async <T>(...args: string[]): Promise<T> => {
    const run = await asAdmin('--json', ...args);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    return JSON.parse(run.stdout) as T;
  };

  beforeAll(async () => {
    gw = await startTestGateway(
      await createTestTopology(1),
      { auth: { required: true, adminToken: BOOTSTRAP } },
      { token: BOOTSTRAP },
    );
    address = gw.gateway.address;
    await gw.client.tenants.createTenant({ clientId });
  });
  afterAll(async () => gw?.close());

  it('creates a token (secret printed once), lists it, revokes it', async () => {
    const created = await json<{ token: TokenJson; secret: string }>(
      'tokens',
      'create',
      '--scope',
      `client:${clientId}`,
      '--name',
      'ctl test agent',
      '--ttl',
      '30d',
    );
    expect(created.token).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{16}$/) as string,
      displayName: 'ctl test agent',
      scope: `client:${clientId}`,
      createdBy: 'bootstrap',
      createdAt: expect.any(String) as string,
      expiresAt: expect.any(String) as string,
      revokedAt: null,
    });
    const days =
      (Date.parse(created.token.expiresAt!) - Date.parse(created.token.createdAt!)) / 864e5;
    expect(Math.round(days)).toBe(30);

    // The printed secret works, within its scope.
    const agent = createShardgateClient({ address, token: created.secret });
    try {
      expect(await outcomeOf(agent.state.getState({ clientId }))).toBe(Status.OK);
    } finally {
      agent.close();
    }

    const listed = await json<{ tokens: TokenJson[] }>('tokens', 'list');
    expect(listed.tokens.map((t) => t.id)).toContain(created.token.id);

    const revoked = await json<{ token: TokenJson }>('tokens', 'revoke', created.token.id);
    expect(revoked.token.revokedAt).toEqual(expect.any(String));
    expect(
      (await json<{ tokens: TokenJson[] }>('tokens', 'list')).tokens.map((t) => t.id),
    ).not.toContain(created.token.id);
    const all = await json<{ tokens: TokenJson[] }>('tokens', 'list', '--all');
    expect(all.tokens.find((t) => t.id === created.token.id)).toEqual(revoked.token);
    // Revoking again is fine and changes nothing.
    expect(await json('tokens', 'revoke', created.token.id)).toEqual(revoked);
  });

  it('prints the secret on its own last line for people', async () => {
    const run = await asAdmin('tokens', 'create', '--scope', 'service', '--name', 'human');
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^created token [0-9a-f]{16} \(scope service, never expires\)$/);
    expect(lines.at(-1)).toMatch(/^sgt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const table = await asAdmin('tokens', 'list');
    expect(table.stdout.split('\n')[0]).toMatch(
      /^ID\s+SCOPE\s+STATUS\s+EXPIRES\s+CREATED\s+CREATED BY\s+NAME$/,
    );
    expect(table.stdout).not.toContain(lines.at(-1)!);
  });

  it('takes the token from --token as well as SHARDGATE_TOKEN', async () => {
    const run = await shardctl(['--address', address, '--token', BOOTSTRAP, '--json', 'topology']);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
  });

  it('exits 1 with UNAUTHENTICATED and a hint without a token, PERMISSION_DENIED out of scope', async () => {
    const none = await shardctl(['--address', address, 'tokens', 'list']);
    expect(none.code).toBe(1);
    expect(none.stderr).toBe(
      'shardctl: UNAUTHENTICATED: this gateway requires a bearer token: send metadata `authorization: Bearer <secret>` (pass --token <secret> or set SHARDGATE_TOKEN)\n',
    );
    const { secret } = await json<{ secret: string }>(
      'tokens',
      'create',
      '--scope',
      'service',
      '--name',
      'not an admin',
    );
    const denied = await shardctl(['--address', address, 'tokens', 'list'], {
      SHARDGATE_TOKEN: secret,
    });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(
      /^shardctl: PERMISSION_DENIED: shardgate\.v1\.AdminService\/ListTokens needs a token with scope 'admin'/,
    );
    expect(denied.stderr).not.toContain(secret);
  });

  it.each([
    [['tokens', 'create', '--scope', 'root', '--name', 'x'], "a scope is 'admin', 'service'"],
    [
      ['tokens', 'create', '--scope', 'client:Bad_Id', '--name', 'x'],
      "a scope is 'admin', 'service'",
    ],
    [
      ['tokens', 'create', '--scope', 'service', '--name', 'x', '--ttl', '0d'],
      'a ttl is a positive',
    ],
    [
      ['tokens', 'create', '--scope', 'service', '--name', 'x', '--ttl', '3 weeks'],
      'a ttl is a positive',
    ],
    [['tokens', 'create', '--name', 'x'], "required option '--scope <scope>' not specified"],
    [['tokens', 'revoke', 'sgt_x'], 'a token id is 16 hex characters'],
  ])('exits 2 on bad usage: %j', async (args, message) => {
    const run = await asAdmin(...args);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(message);
  });

  it('exits 1 with NOT_FOUND for an unknown token id', async () => {
    const run = await asAdmin('tokens', 'revoke', 'ffffffffffffffff');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^shardctl: NOT_FOUND: token ffffffffffffffff does not exist/);
  });
});
