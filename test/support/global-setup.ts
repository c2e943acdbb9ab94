import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { EmbeddedServer } from '../../src/embedded/embedded-server.js';

/**
 * Separate PostgreSQL server processes shared by all test files: [catalog, shard A, B, C]. Each
 * has the gateway's runtime role (`shardgate`, NOSUPERUSER) as production does; the gateways under
 * test connect as that role, and only checks behind their back use the superuser.
 */
export interface ProvidedServer {
  port: number;
  /** Superuser URL of the `postgres` database; tests create their own databases from it. */
  adminUrl: string;
  /** The runtime role's URL of the `postgres` database; harness createDatabase reuses it. */
  runtimeUrl: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    pgServers: ProvidedServer[];
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), 'shardgate-test-'));
  // PostgreSQL runs as the OS user `postgres` when the tests run as root: it must enter the dir.
  await chmod(dir, 0o755);
  const servers: EmbeddedServer[] = [];
  try {
    for (const name of ['catalog', 'shard-a', 'shard-b', 'shard-c']) {
      servers.push(
        await EmbeddedServer.start({
          dataDir: join(dir, name),
          port: await freePort(),
          persistent: false,
          databases: [],
        }),
      );
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    throw err;
  }
  project.provide(
    'pgServers',
    servers.map((s) => ({
      port: s.port,
      adminUrl: s.urlFor('postgres'),
      runtimeUrl: s.runtimeUrlFor('postgres'),
    })),
  );
  return async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await rm(dir, { recursive: true, force: true });
  };
}
