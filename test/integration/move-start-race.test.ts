import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Failpoints } from '../../src/core/failpoints.js';
import { startFreezableProxy, type FreezableProxy } from '../support/freezable-proxy.js';
import {
  createTestTopology,
  errorOf,
  eventually,
  freshClientId,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';
import { moveTo, startGatewayWithFailpoints } from '../support/move-helpers.js';

/**
 * A move is checked (target known, active, not the source's database) before it is journaled.
 * What the checks saw must still hold when the journal row is written, or a shard changed in
 * between (SetShardDsn, DrainShard) would slip past them.
 */
describe('starting a move while the shards change', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  let proxy: FreezableProxy;
  const failpoints = new Failpoints();

  beforeAll(async () => {
    topology = await createTestTopology(2);
    gw = await startGatewayWithFailpoints(topology, failpoints);
    proxy = await startFreezableProxy(topology.shards[1]!.url);
  });
  afterAll(async () => {
    await gw?.gateway.context.mover.idle();
    await gw?.close();
    await proxy?.close();
  });

  async function clientOn(shard: string): Promise<string> {
    for (;;) {
      const clientId = freshClientId('race');
      const { tenant } = await gw.client.tenants.createTenant({ clientId });
      if (tenant!.shard === shard) return clientId;
    }
  }

  const runningMoves = (clientId: string): Promise<number> =>
    withPg(topology.catalogUrl, async (c) => {
      const res = await c.query(
        "SELECT 1 FROM shardgate.moves WHERE client_id = $1 AND state = 'running'",
        [clientId],
      );
      return res.rowCount ?? 0;
    });

  /** Starts a move to shard-2, runs `meanwhile` after its checks and before its journal row. */
  async function moveAround(clientId: string, meanwhile: () => Promise<unknown>) {
    const gate = failpoints.hold('move.checked');
    const moving = errorOf(moveTo(gw.client, clientId, 'shard-2'));
    await gate.reached;
    try {
      await meanwhile();
    } finally {
      gate.release();
    }
    return moving;
  }

  it("is refused ABORTED when the target's URL changed after the checks, and starts when retried", async () => {
    const clientId = await clientOn('shard-1');
    const err = await moveAround(clientId, () =>
      gw.client.admin.setShardDsn({ name: 'shard-2', dsn: proxy.url }),
    );
    expect(err.code).toBe(Status.ABORTED);
    expect(err.details).toBe(
      "the connection URL of shard 'shard-1' or 'shard-2' changed while the move was starting; retry",
    );
    expect(await runningMoves(clientId)).toBe(0);
    expect((await gw.client.admin.locate({ clientId })).shard).toBe('shard-1');

    // The retry is checked against the new URL and goes through.
    await eventually(async () => expect(gw.gateway.context.pools.urlOf('shard-2')).toBe(proxy.url));
    await moveTo(gw.client, clientId, 'shard-2');
    expect((await gw.client.admin.locate({ clientId })).shard).toBe('shard-2');
    expect(proxy.open).toBeGreaterThan(0);
    await gw.client.admin.setShardDsn({ name: 'shard-2', dsn: topology.shards[1]!.url });
  });

  it('is refused when the target started draining after the checks', async () => {
    const clientId = await clientOn('shard-1');
    const err = await moveAround(clientId, () => gw.client.admin.drainShard({ name: 'shard-2' }));
    try {
      expect(err.code).toBe(Status.FAILED_PRECONDITION);
      expect(err.details).toBe("shard 'shard-2' is draining; pick another");
      expect(await runningMoves(clientId)).toBe(0);
    } finally {
      await withPg(topology.catalogUrl, (c) =>
        c.query("UPDATE shardgate.shards SET state = 'active' WHERE name = 'shard-2'"),
      );
    }
  });

  it('is refused ABORTED when the client moved elsewhere after the checks', async () => {
    const clientId = await clientOn('shard-1');
    const err = await moveAround(clientId, () =>
      withPg(topology.catalogUrl, (c) =>
        // As a move that finished in between would leave it (the schema is not needed here).
        c.query("UPDATE shardgate.tenants SET shard = 'shard-2' WHERE client_id = $1", [clientId]),
      ),
    );
    expect(err.code).toBe(Status.ABORTED);
    expect(err.details).toBe(`client '${clientId}' no longer lives on 'shard-1'; retry`);
    expect(await runningMoves(clientId)).toBe(0);
  });
});
