import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createShardgateClient } from '../../src/client/index.js';
import { TenantStatus } from '../../src/gen/shardgate/v1/tenant.js';
import { spawnGatewayProcess, type GatewayProcess } from '../support/gateway-process.js';
import { freshClientId } from '../support/harness.js';

/** A base port whose next four ports are free (catalog + three shards). */
async function freeRun(length: number): Promise<number> {
  const free = (port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const checks = await Promise.all(Array.from({ length }, (_, i) => free(base + i)));
    if (checks.every(Boolean)) return base;
  }
  throw new Error('no run of free ports');
}

describe('the gateway as npm start runs it (embedded PostgreSQL)', () => {
  const started: GatewayProcess[] = [];
  let dataRoot = '';
  afterAll(async () => {
    await Promise.all(started.map((g) => g.stop()));
    if (dataRoot) await rm(dataRoot, { recursive: true, force: true });
  });

  it('serves three embedded shards and finds its tenants again after a restart', async () => {
    dataRoot = await mkdtemp(join(tmpdir(), 'shardgate-start-'));
    await chmod(dataRoot, 0o755);
    const env = {
      SHARDGATE_DATA_DIR: join(dataRoot, 'data'),
      SHARDGATE_EMBEDDED_PORT: String(await freeRun(4)),
    };
    const clientId = freshClientId('laptop');

    const first = await spawnGatewayProcess(undefined, { env, startMs: 60_000 });
    started.push(first);
    const c1 = createShardgateClient({ address: first.address });
    const topology = await c1.admin.getTopology({});
    expect(topology.shards.map((s) => s.name)).toEqual(['shard-1', 'shard-2', 'shard-3']);
    await c1.tenants.createTenant({ clientId });
    await c1.state.putState({ clientId, document: { kept: true } });
    c1.close();
    await first.stop();

    const second = await spawnGatewayProcess(undefined, { env, startMs: 60_000 });
    started.push(second);
    const c2 = createShardgateClient({ address: second.address });
    const { tenant } = await c2.tenants.getTenant({ clientId });
    expect(tenant?.status).toBe(TenantStatus.TENANT_STATUS_ACTIVE);
    expect((await c2.state.getState({ clientId })).state).toMatchObject({
      document: { kept: true },
      version: 1,
    });
    c2.close();
    await second.stop();
  }, 120_000);
});
