import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardState } from '../../src/gen/shardgate/v1/admin.js';
import { TenantStatus } from '../../src/gen/shardgate/v1/tenant.js';
import { ensureClientSchema } from '../../src/shards/client-schema.js';
import {
  createTestTopology,
  errorOf,
  freshClientId,
  statusOf,
  startTestGateway,
  uniqueSuffix,
  withPg,
  type TestGateway,
  type TestTopology,
  eventually,
} from '../support/harness.js';

/** Runs `fn` on every item with at most `limit` in flight; results in input order. */
async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function shardUrl(topology: TestTopology, shard: string): string {
  const found = topology.shards.find((s) => s.name === shard);
  if (!found) throw new Error(`no shard ${shard} in the topology`);
  return found.url;
}

async function stateRow(
  url: string,
  schema: string,
): Promise<{ document: unknown; version: string }> {
  return withPg(url, async (c) => {
    const res = await c.query<{ document: unknown; version: string }>(
      `SELECT document, version FROM "${schema}".state`,
    );
    return res.rows[0]!;
  });
}

describe('AdminService.GetTopology', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(topology);
  });
  afterAll(async () => gw?.close());

  it('lists the shards with weight, credential-free address and tenant counts', async () => {
    const created = await Promise.all(
      Array.from({ length: 7 }, () =>
        gw.client.tenants.createTenant({ clientId: freshClientId('topo') }),
      ),
    );
    const expectedCounts = new Map<string, number>();
    for (const { tenant } of created)
      expectedCounts.set(tenant!.shard, (expectedCounts.get(tenant!.shard) ?? 0) + 1);

    const res = await gw.client.admin.getTopology({});
    expect(res.shards).toEqual(
      topology.shards.map((s) => {
        const u = new URL(s.url);
        return {
          name: s.name,
          weight: 100,
          address: `127.0.0.1:${u.port}${u.pathname}`,
          state: ShardState.SHARD_STATE_ACTIVE,
          tenantCount: expectedCounts.get(s.name) ?? 0,
        };
      }),
    );
    expect(res.shards.reduce((n, s) => n + s.tenantCount, 0)).toBe(7);
    expect(res.ringEpoch).toBeGreaterThanOrEqual(1);
    expect(res.ringVnodes).toBe(64);

    const text = JSON.stringify(res);
    for (const s of topology.shards) {
      const u = new URL(s.url);
      expect(u.password.length).toBeGreaterThan(0);
      expect(text).not.toContain(u.password);
      expect(text).not.toContain(decodeURIComponent(u.password));
      expect(text).not.toContain(`${u.username}:`);
    }
    expect(text).not.toContain('@');
    expect(text).not.toContain('postgres://');
  });

  it('a second gateway on the same catalog leaves the ring epoch alone', async () => {
    const before = await gw.client.admin.getTopology({});
    const second = await startTestGateway(topology);
    try {
      const seen = await second.client.admin.getTopology({});
      expect(seen).toEqual(before);
    } finally {
      await second.close();
    }
  });
});

describe('AdminService.Locate', () => {
  let topology: TestTopology;
  let gw1: TestGateway;
  let gw2: TestGateway;
  beforeAll(async () => {
    topology = await createTestTopology();
    gw1 = await startTestGateway(topology);
    gw2 = await startTestGateway(topology);
  });
  afterAll(async () => {
    await gw1?.close();
    await gw2?.close();
  });

  it('locates a fresh tenant on its ring shard', async () => {
    const clientId = freshClientId('loc');
    const { tenant } = await gw1.client.tenants.createTenant({ clientId });
    const loc = await gw1.client.admin.locate({ clientId });
    expect(loc).toEqual({
      clientId,
      shard: tenant!.shard,
      schema: `client_${clientId.replaceAll('-', '_')}`,
      ringShard: tenant!.shard,
      placementDiffers: false,
      status: TenantStatus.TENANT_STATUS_ACTIVE,
      placementEpoch: 1,
    });
  });

  it('NOT_FOUND for an unknown client, INVALID_ARGUMENT for a bad id', async () => {
    const err = await errorOf(gw1.client.admin.locate({ clientId: freshClientId('nobody') }));
    expect(err.code).toBe(Status.NOT_FOUND);
    expect(err.details).toContain('CreateTenant');
    for (const clientId of [
      '',
      'Acme',
      'acme_hvac',
      "x'; drop table shardgate.tenants;--",
      'a'.repeat(57),
    ]) {
      expect(await statusOf(gw1.client.admin.locate({ clientId }))).toBe(Status.INVALID_ARGUMENT);
    }
  });

  it('two gateways place 200 clients identically', async () => {
    const prefix = `ring-${uniqueSuffix()}`;
    const ids = Array.from({ length: 200 }, (_, i) => `${prefix}-${i}`);
    const created = await mapLimit(ids, 16, (clientId) =>
      gw1.client.tenants.createTenant({ clientId }),
    );
    const [from1, from2] = await Promise.all([
      mapLimit(ids, 16, (clientId) => gw1.client.admin.locate({ clientId })),
      mapLimit(ids, 16, (clientId) => gw2.client.admin.locate({ clientId })),
    ]);
    ids.forEach((clientId, i) => {
      expect(created[i]!.created).toBe(true);
      expect(from2[i]).toEqual(from1[i]);
      expect(from2[i]).toMatchObject({
        clientId,
        shard: created[i]!.tenant!.shard,
        placementDiffers: false,
      });
      expect(from2[i]!.ringShard).toBe(created[i]!.tenant!.shard);
    });
    // Both shards take a share (equal weights: about half each).
    const onFirst = from1.filter((l) => l.shard === 'shard-1').length;
    expect(onFirst).toBeGreaterThan(40);
    expect(onFirst).toBeLessThan(160);
    // Ids never created get the same ring shard from both gateways too.
    for (let i = 0; i < 200; i++) {
      const id = `${prefix}-never-${i}`;
      expect(gw2.gateway.context.router.ring.shardFor(id)).toBe(
        gw1.gateway.context.router.ring.shardFor(id),
      );
    }
  });

  it('a tenant created through one gateway is served by the other at once', async () => {
    const clientId = freshClientId('cross');
    const { tenant } = await gw1.client.tenants.createTenant({ clientId });
    expect(await gw2.client.admin.locate({ clientId })).toMatchObject({
      shard: tenant!.shard,
      placementDiffers: false,
    });
    const put = await gw2.client.state.putState({ clientId, document: { via: 'gw2' } });
    expect(put.state?.version).toBe(1);
    expect((await gw1.client.state.getState({ clientId })).state?.document).toEqual({ via: 'gw2' });
  });

  it("a churn through one gateway reaches the other gateway's cache", async () => {
    const clientId = freshClientId('churn-x');
    await gw1.client.tenants.createTenant({ clientId });
    // Warm gateway 2's placement cache.
    expect((await gw2.client.state.getState({ clientId })).state?.version).toBe(0);
    await gw1.client.tenants.churnTenant({ clientId });
    await eventually(async () =>
      expect(await statusOf(gw2.client.state.getState({ clientId }))).toBe(
        Status.FAILED_PRECONDITION,
      ),
    );
    await gw1.client.tenants.reactivateTenant({ clientId });
    await eventually(async () =>
      expect((await gw2.client.state.getState({ clientId })).state?.version).toBe(0),
    );
  });

  it('a placement moved in the catalog is followed by both gateways without restart', async () => {
    const clientId = freshClientId('moved');
    const { tenant } = await gw1.client.tenants.createTenant({ clientId });
    const from = tenant!.shard;
    const to = topology.shards.find((s) => s.name !== from)!.name;
    const schema = tenant!.schema;

    // Both gateways cache the old placement and write to the old schema.
    await gw1.client.state.putState({ clientId, document: { where: 'old' } });
    expect((await gw2.client.state.getState({ clientId })).state?.document).toEqual({
      where: 'old',
    });

    // Behind the gateways' back: make the schema on the other shard, mark it, and repoint.
    expect(await ensureClientSchema(gw1.gateway.context.pools.get(to), schema)).toBe(2);
    await withPg(shardUrl(topology, to), (c) =>
      c.query(`UPDATE "${schema}".state SET document = '{"where": "new"}', version = 10`),
    );
    await withPg(topology.catalogUrl, (c) =>
      c.query('UPDATE shardgate.tenants SET shard = $1 WHERE client_id = $2', [to, clientId]),
    );

    for (const gw of [gw1, gw2]) {
      expect(await gw.client.admin.locate({ clientId })).toEqual({
        clientId,
        shard: to,
        schema,
        ringShard: from,
        placementDiffers: true,
        status: TenantStatus.TENANT_STATUS_ACTIVE,
        // Moved by hand in the catalog, not by a move: the epoch only counts flips.
        placementEpoch: 1,
      });
      await eventually(async () =>
        expect((await gw.client.state.getState({ clientId })).state).toMatchObject({
          document: { where: 'new' },
          version: 10,
        }),
      );
    }

    await gw1.client.state.putState({ clientId, document: { via: 'gw1' } });
    expect(await stateRow(shardUrl(topology, to), schema)).toEqual({
      document: { via: 'gw1' },
      version: '11',
    });
    await gw2.client.state.putState({ clientId, document: { via: 'gw2' } });
    expect(await stateRow(shardUrl(topology, to), schema)).toEqual({
      document: { via: 'gw2' },
      version: '12',
    });
    // The old schema saw none of it.
    expect(await stateRow(shardUrl(topology, from), schema)).toEqual({
      document: { where: 'old' },
      version: '1',
    });

    const onShard = await gw2.client.tenants.listTenants({ shard: to, pageSize: 1000 });
    expect(onShard.tenants.map((t) => t.clientId)).toContain(clientId);
  });
});
