import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startEmbeddedCluster, type EmbeddedCluster } from '../../src/embedded/embedded-cluster.js';
import { MoveState } from '../../src/gen/shardgate/v1/admin.js';
import { appointmentInput, moveTo } from '../support/move-helpers.js';
import { freshClientId, startTestGateway, withPg, type TestGateway } from '../support/harness.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A base port whose next two ports are free too (catalog + two shards). */
async function freeRun(): Promise<number> {
  const free = (port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen({ host: '127.0.0.1', port, exclusive: true }, () =>
        srv.close(() => resolve(true)),
      );
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    if ((await Promise.all([0, 1, 2].map((i) => free(base + i)))).every(Boolean)) return base;
  }
  throw new Error('no run of free ports');
}

const databasesOf = (i: number): string[] =>
  i === 0 ? ['shardgate_catalog', 'shardgate_shared'] : ['shardgate'];

/** Objects in the databases' own schemas that a superuser owns (all of them, before the upgrade). */
async function superuserOwned(cluster: EmbeddedCluster): Promise<number> {
  let n = 0;
  for (const [i, server] of cluster.servers.entries()) {
    for (const db of databasesOf(i)) {
      n += await withPg(server.urlFor(db), async (c) => {
        const res = await c.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM (
             SELECT nspowner AS owner FROM pg_namespace WHERE nspname IN ('shardgate', 'shared')
               OR nspname LIKE 'client\\_%'
             UNION ALL
             SELECT c.relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname IN ('shardgate', 'shared') OR n.nspname LIKE 'client\\_%'
           ) o JOIN pg_roles r ON r.oid = o.owner WHERE r.rolsuper`,
        );
        return res.rows[0]!.n;
      });
    }
  }
  return n;
}

describe('an embedded data directory initialised before the runtime role existed', () => {
  it('is upgraded at start: the role is made, owns what the superuser made, and moves work as it', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'shardgate-upgrade-'));
    await chmod(dataDir, 0o755);
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const basePort = await freeRun();
    const start = async (): Promise<EmbeddedCluster> => {
      const cluster = await startEmbeddedCluster({ dataDir, basePort, shardCount: 2 });
      cleanups.push(() => cluster.stop());
      return cluster;
    };
    const gateway = async (
      urls: { catalogUrl: string; sharedUrl: string; shards: string[] },
      allowSuperuser: boolean,
    ): Promise<TestGateway> => {
      const gw = await startTestGateway(
        {
          catalogUrl: urls.catalogUrl,
          shards: urls.shards.map((url, i) => ({ name: `shard-${i + 1}`, url, weight: 100 })),
        },
        { sharedUrl: urls.sharedUrl, database: { allowSuperuser } },
      );
      let closed: Promise<void> | undefined;
      const close = (): Promise<void> => (closed ??= gw.close());
      cleanups.push(close);
      return { ...gw, close };
    };

    // What a gateway from before the runtime role left: everything made, and every shard
    // registered in the catalog, as the superuser.
    const old = await start();
    const [catalog, ...shards] = old.servers;
    const before = await gateway(
      {
        catalogUrl: catalog!.urlFor('shardgate_catalog'),
        sharedUrl: catalog!.urlFor('shardgate_shared'),
        shards: shards.map((s) => s.urlFor('shardgate')),
      },
      true,
    );
    const clientId = freshClientId('upgrade');
    const { tenant } = await before.client.tenants.createTenant({ clientId });
    await before.client.state.putState({ clientId, document: { kept: true } });
    const { appointment } = await before.client.appointments.createAppointment(
      appointmentInput(clientId, 1),
    );
    await before.close();
    expect(await superuserOwned(old)).toBeGreaterThan(0);
    for (const [i, server] of old.servers.entries()) {
      for (const db of databasesOf(i)) {
        await withPg(server.urlFor(db), (c) => c.query('DROP OWNED BY shardgate'));
      }
      await withPg(server.urlFor('postgres'), (c) => c.query('DROP ROLE shardgate'));
      await rm(`${join(dataDir, i === 0 ? 'catalog' : `shard-${i}`)}.runtime.password`);
    }
    await old.stop();

    const upgraded = await start();
    expect(await superuserOwned(upgraded)).toBe(0);
    const registered = await withPg(upgraded.servers[0]!.urlFor('shardgate_catalog'), (c) =>
      c.query<{ url: string }>('SELECT url FROM shardgate.shards ORDER BY name'),
    );
    expect(registered.rows.map((r) => r.url)).toEqual(upgraded.shards.map((s) => s.url));
    expect(upgraded.shards.map((s) => new URL(s.url).username)).toEqual(['shardgate', 'shardgate']);

    const after = await gateway(
      {
        catalogUrl: upgraded.catalogUrl,
        sharedUrl: upgraded.sharedUrl,
        shards: upgraded.shards.map((s) => s.url),
      },
      false,
    );
    expect((await after.client.state.getState({ clientId })).state).toMatchObject({
      document: { kept: true },
      version: 1,
    });
    const to = tenant!.shard === 'shard-1' ? 'shard-2' : 'shard-1';
    const moves = await moveTo(after.client, clientId, to);
    expect(moves.at(-1)?.state).toBe(MoveState.MOVE_STATE_SUCCEEDED);
    expect((await after.client.tenants.getTenant({ clientId })).tenant?.shard).toBe(to);
    const put = await after.client.state.putState({ clientId, document: { moved: true } });
    expect(put.state?.version).toBe(2);
    const got = await after.client.appointments.getAppointment({ clientId, id: appointment!.id });
    expect(got.appointment?.serviceType).toBe('service 1');
  }, 120_000);
});
