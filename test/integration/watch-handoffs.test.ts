import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createShardgateClient, type ShardgateClient } from '../../src/client/index.js';
import type { Handoff } from '../../src/gen/shardgate/v1/handoff.js';
import { spawnGatewayProcess, type GatewayProcess } from '../support/gateway-process.js';
import {
  createTestTopology,
  freshClientId,
  startTestGateway,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';
import { isAbortError, startWatch, waitUntil } from '../support/handoff-watch.js';

describe('WatchHandoffs', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(topology);
  });
  afterAll(async () => gw?.close());

  async function newClient(
    client: ShardgateClient = gw.client,
  ): Promise<{ clientId: string; shard: string }> {
    const clientId = freshClientId('watch');
    const { tenant } = await client.tenants.createTenant({ clientId });
    return { clientId, shard: tenant!.shard };
  }

  async function append(
    client: ShardgateClient,
    clientId: string,
    toAgent: string,
    n: number,
  ): Promise<Handoff> {
    const { handoff } = await client.handoffs.appendHandoff({
      clientId,
      handoff: {
        fromAgent: 'sender',
        toAgent,
        version: 2,
        summary: { n, items: [n, `item-${n}`] },
      },
    });
    return handoff!;
  }

  /** LISTEN connections the gateways hold on a shard database. */
  async function listenersOn(shard: string): Promise<number> {
    const url = topology.shards.find((s) => s.name === shard)!.url;
    return withPg(url, async (pg) => {
      const { rows } = await pg.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'shardgate-listener'`,
      );
      return Number(rows[0]!.n);
    });
  }

  describe('in one process', () => {
    it('sends its response header once subscribed, before any handoff (regression: an empty header was never sent)', async () => {
      const { clientId } = await newClient();
      const controller = new AbortController();
      const header = new Promise<string | undefined>((resolve) => {
        const stream = gw.client.handoffs.watchHandoffs(
          { clientId },
          { signal: controller.signal, onHeader: (h) => resolve(h.get('shardgate-watch')) },
        );
        void (async () => {
          try {
            for await (const _ of stream) break;
          } catch {
            // cancelled below
          }
        })();
      });
      const value = await Promise.race([
        header,
        new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5_000).unref()),
      ]);
      controller.abort();
      expect(value).toBe('subscribed');
    });

    it('delivers each appended handoff exactly once, in order', async () => {
      const { clientId } = await newClient();
      const watch = await startWatch(gw.client.handoffs, { clientId });
      const appended: Handoff[] = [];
      for (let n = 0; n < 8; n++)
        appended.push(await append(gw.client, clientId, `agent-${n % 3}`, n));
      await watch.waitForCount(8);
      // A sentinel appended last: once it arrived, any duplicate of the earlier ones would have too.
      appended.push(await append(gw.client, clientId, 'agent-0', 99));
      await watch.waitForCount(9);
      expect(watch.received).toEqual(appended);
      watch.cancel();
      expect(isAbortError((await watch.ended).error)).toBe(true);
    });

    it('with to_agent delivers only handoffs to that agent', async () => {
      const { clientId } = await newClient();
      const watch = await startWatch(gw.client.handoffs, { clientId, toAgent: 'dispatch' });
      const appended: Handoff[] = [];
      for (const [n, to] of [
        'dispatch',
        'billing',
        'dispatch',
        'intake',
        'billing',
        'dispatch',
      ].entries()) {
        appended.push(await append(gw.client, clientId, to, n));
      }
      // The last one is to dispatch, so every earlier one had its chance to (wrongly) arrive first.
      await watch.waitForCount(3);
      expect(watch.received).toEqual(appended.filter((h) => h.toAgent === 'dispatch'));
      expect(watch.received.map((h) => h.summary)).toEqual([
        { n: 0, items: [0, 'item-0'] },
        { n: 2, items: [2, 'item-2'] },
        { n: 5, items: [5, 'item-5'] },
      ]);
      watch.cancel();
      await watch.ended;
    });

    it('gives two watchers of different clients on the same shard only their own handoffs', async () => {
      // Two shards: among three clients, two share one (pigeonhole); create until they do.
      const byShard = new Map<string, string[]>();
      let pair: string[] | undefined;
      while (!pair) {
        const { clientId, shard } = await newClient();
        const ids = byShard.get(shard) ?? [];
        ids.push(clientId);
        byShard.set(shard, ids);
        if (ids.length === 2) pair = ids;
      }
      const [first, second] = pair as [string, string];
      const watchFirst = await startWatch(gw.client.handoffs, { clientId: first });
      const watchSecond = await startWatch(gw.client.handoffs, { clientId: second });
      const toFirst: Handoff[] = [];
      const toSecond: Handoff[] = [];
      for (let n = 0; n < 4; n++) {
        toFirst.push(await append(gw.client, first, 'agent', n));
        toSecond.push(await append(gw.client, second, 'agent', 10 + n));
      }
      toFirst.push(await append(gw.client, first, 'agent', 99));
      await watchFirst.waitForCount(5);
      await watchSecond.waitForCount(4);
      expect(watchFirst.received).toEqual(toFirst);
      expect(watchSecond.received).toEqual(toSecond);
      watchFirst.cancel();
      watchSecond.cancel();
      await Promise.all([watchFirst.ended, watchSecond.ended]);
    });

    it('ends the stream cleanly on cancel and releases the LISTEN connection', async () => {
      const { clientId, shard } = await newClient();
      const watch = await startWatch(gw.client.handoffs, { clientId });
      expect(await listenersOn(shard)).toBe(1);
      const first = await append(gw.client, clientId, 'agent', 1);
      await watch.waitForCount(1);

      watch.cancel();
      const { error } = await watch.ended;
      expect(isAbortError(error)).toBe(true);
      // The server unsubscribed: the shard's feed had no other watcher, so its connection closes.
      await waitUntil(
        async () => (await listenersOn(shard)) === 0,
        'the LISTEN connection to close',
        3_000,
      );

      // The gateway keeps working, and a new watch starts afresh.
      await append(gw.client, clientId, 'agent', 2);
      expect(watch.received).toEqual([first]);
      const again = await startWatch(gw.client.handoffs, { clientId });
      const third = await append(gw.client, clientId, 'agent', 3);
      await again.waitForCount(1);
      expect(again.received).toEqual([third]);
      again.cancel();
      await again.ended;
    });
  });

  describe('the shard feed behind it', () => {
    it('a subscriber joining in the same tick as the last one leaves still receives handoffs (regression: it joined a closed feed)', async () => {
      const { clientId, shard } = await newClient();
      const { tenant } = await gw.client.tenants.getTenant({ clientId });
      const feed = gw.gateway.context.feed;
      const ignore = { onHandoff: () => undefined, onError: () => undefined };
      const leave = await feed.subscribe(shard, tenant!.schema, ignore);
      const received: { id: string }[] = [];
      const errors: Error[] = [];
      leave();
      const unsubscribe = await feed.subscribe(shard, tenant!.schema, {
        onHandoff: (h) => received.push(h),
        onError: (err) => errors.push(err),
      });
      try {
        const appended = await append(gw.client, clientId, 'agent', 1);
        await waitUntil(
          () => received.length > 0 || errors.length > 0,
          'the handoff on the feed',
          3_000,
        );
        expect(errors).toEqual([]);
        expect(received.map((h) => h.id)).toEqual([appended.id]);
      } finally {
        unsubscribe();
      }
    });
  });

  describe('across gateway processes', () => {
    let child: GatewayProcess;
    let childClient: ShardgateClient;
    beforeAll(async () => {
      child = await spawnGatewayProcess(topology);
      childClient = createShardgateClient({ address: child.address, defaultDeadlineMs: 15_000 });
    }, 40_000);
    afterAll(async () => {
      childClient?.close();
      await child?.stop();
    });

    it('delivers handoffs appended through another process to a watcher here', async () => {
      const { clientId } = await newClient();
      const watch = await startWatch(gw.client.handoffs, { clientId });
      const appended: Handoff[] = [];
      for (let n = 0; n < 4; n++) appended.push(await append(childClient, clientId, 'agent', n));
      await watch.waitForCount(4);
      appended.push(await append(gw.client, clientId, 'agent', 99));
      await watch.waitForCount(5);
      expect(watch.received).toEqual(appended);
      watch.cancel();
      await watch.ended;
    });

    it('delivers handoffs appended here to a watcher on another process', async () => {
      // Created through the child: it learns of the tenant from the shared catalog either way.
      const { clientId } = await newClient(childClient);
      const watch = await startWatch(childClient.handoffs, { clientId, toAgent: 'dispatch' });
      const appended: Handoff[] = [];
      for (const [n, to] of ['dispatch', 'other', 'dispatch', 'dispatch'].entries()) {
        appended.push(await append(gw.client, clientId, to, n));
      }
      await watch.waitForCount(3);
      expect(watch.received).toEqual(appended.filter((h) => h.toAgent === 'dispatch'));
      watch.cancel();
      expect(isAbortError((await watch.ended).error)).toBe(true);
    });
  });
});
