import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Status } from 'nice-grpc';
import { generate } from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createShardgateClient,
  type ShardgateClient,
  type ShardgateTlsOptions,
} from '../../src/client/index.js';
import {
  createTestTopology,
  startTestGateway,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';
import { outcomeOf } from '../support/method-cases.js';

interface Pem {
  cert: string;
  key: string;
}

/** A CA certificate that may sign others. */
async function makeCa(name: string): Promise<Pem> {
  const pems = await generate([{ name: 'commonName', value: name }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/** A leaf certificate signed by `ca`: a server's (127.0.0.1 and localhost) or a client's. */
async function makeLeaf(ca: Pem, use: 'server' | 'client'): Promise<Pem> {
  const pems = await generate(
    [{ name: 'commonName', value: use === 'server' ? 'localhost' : 'shardgate test client' }],
    {
      keyType: 'ec',
      algorithm: 'sha256',
      ca: { key: ca.key, cert: ca.cert },
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
        use === 'server'
          ? { name: 'extKeyUsage', serverAuth: true }
          : { name: 'extKeyUsage', clientAuth: true },
        ...(use === 'server'
          ? [
              {
                name: 'subjectAltName' as const,
                altNames: [
                  { type: 2 as const, value: 'localhost' },
                  { type: 7 as const, ip: '127.0.0.1' },
                ],
              },
            ]
          : []),
      ],
    },
  );
  return { cert: pems.cert, key: pems.private };
}

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** Runs shardctl as a child process with exactly these arguments and no SHARDGATE_* env. */
function shardctl(
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('SHARDGATE_')) delete env[key];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/shardctl.ts', ...args],
      { cwd: repoRoot, env, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      },
    );
  });
}

describe('TLS and mutual TLS', () => {
  let topology: TestTopology;
  let dir: string;
  let ca: Pem;
  let otherCa: Pem;
  let server: Pem;
  let client: Pem;
  let strangerClient: Pem;
  const file = (name: string, content: string): string => {
    const path = join(dir, name);
    writeFileSync(path, content, { mode: 0o600 });
    return path;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shardgate-tls-'));
    topology = await createTestTopology(1);
    [ca, otherCa] = await Promise.all([makeCa('shardgate test CA'), makeCa('some other CA')]);
    [server, client, strangerClient] = await Promise.all([
      makeLeaf(ca, 'server'),
      makeLeaf(ca, 'client'),
      makeLeaf(otherCa, 'client'),
    ]);
  });

  /** Whether a call through a client with `tls` (or plaintext) gets through: OK or its status. */
  async function topologyCall(address: string, tls?: ShardgateTlsOptions): Promise<string> {
    const c: ShardgateClient = createShardgateClient({ address, tls, defaultDeadlineMs: 5_000 });
    try {
      return Status[await outcomeOf(c.admin.getTopology({}))];
    } finally {
      c.close();
    }
  }

  describe('server TLS', () => {
    let gw: TestGateway;
    beforeAll(async () => {
      gw = await startTestGateway(
        topology,
        {
          tls: {
            certFile: file('server.pem', server.cert),
            keyFile: file('server.key', server.key),
          },
        },
        { tls: { ca: ca.cert } },
      );
    });
    afterAll(async () => gw?.close());

    it('serves a client that trusts its CA', async () => {
      expect((await gw.client.admin.getTopology({})).shards).toHaveLength(1);
      expect(await topologyCall(`localhost:${gw.gateway.port}`, { ca: ca.cert })).toBe('OK');
    });

    it('refuses a plaintext client and a client trusting another CA', async () => {
      expect(await topologyCall(gw.gateway.address)).toBe('UNAVAILABLE');
      expect(await topologyCall(gw.gateway.address, { ca: otherCa.cert })).toBe('UNAVAILABLE');
    });

    it('shardctl connects with --tls-ca and not without it', async () => {
      const caFile = file('ca.pem', ca.cert);
      const ok = await shardctl([
        '--address',
        gw.gateway.address,
        '--tls-ca',
        caFile,
        '--json',
        'topology',
      ]);
      expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: '' });
      expect((JSON.parse(ok.stdout) as { shards: unknown[] }).shards).toHaveLength(1);
      const plain = await shardctl([
        '--address',
        gw.gateway.address,
        '--deadline-ms',
        '3000',
        'topology',
      ]);
      expect(plain.code).toBe(3);
      expect(plain.stderr).toMatch(/^shardctl: UNAVAILABLE: cannot reach the gateway/);
    });
  });

  describe('mutual TLS', () => {
    let gw: TestGateway;
    beforeAll(async () => {
      gw = await startTestGateway(
        topology,
        {
          tls: {
            certFile: file('server.pem', server.cert),
            keyFile: file('server.key', server.key),
            clientCaFile: file('client-ca.pem', ca.cert),
          },
        },
        { tls: { ca: ca.cert, cert: client.cert, key: client.key } },
      );
    });
    afterAll(async () => gw?.close());

    it('serves a client presenting a certificate the client CA signed', async () => {
      expect((await gw.client.admin.getTopology({})).shards).toHaveLength(1);
    });

    it('refuses a client without a certificate, or with one another CA signed', async () => {
      expect(await topologyCall(gw.gateway.address, { ca: ca.cert })).toBe('UNAVAILABLE');
      expect(
        await topologyCall(gw.gateway.address, {
          ca: ca.cert,
          cert: strangerClient.cert,
          key: strangerClient.key,
        }),
      ).toBe('UNAVAILABLE');
    });

    it('shardctl connects with --tls-cert and --tls-key', async () => {
      const args = ['--address', gw.gateway.address, '--tls-ca', file('ca.pem', ca.cert)];
      const mtls = [
        ...args,
        '--tls-cert',
        file('c.pem', client.cert),
        '--tls-key',
        file('c.key', client.key),
      ];
      expect((await shardctl([...mtls, 'topology'])).code).toBe(0);
      expect((await shardctl([...args, '--deadline-ms', '3000', 'topology'])).code).toBe(3);
      const half = await shardctl([...args, '--tls-cert', file('c.pem', client.cert), 'topology']);
      expect(half.code).toBe(2);
      expect(half.stderr).toContain('--tls-cert and --tls-key go together');
    });
  });

  it('refuses to start with a certificate file it cannot read', async () => {
    const err = await startTestGateway(topology, {
      tls: { certFile: join(dir, 'missing.pem'), keyFile: file('server.key', server.key) },
    }).then(
      () => new Error('started'),
      (e: unknown) => e as Error,
    );
    expect(err.message).toBe(
      `tls.certFile names ${join(dir, 'missing.pem')}, which cannot be read (ENOENT)`,
    );
  });
});
