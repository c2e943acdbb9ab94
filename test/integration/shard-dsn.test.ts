import { Status } from 'nice-grpc';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { followHandoffs } from '../../src/client/index.js';
import type { Handoff } from '../../src/gen/shardgate/v1/handoff.js';
import { startFreezableProxy, type FreezableProxy } from '../support/freezable-proxy.js';
import { waitUntil } from '../support/handoff-watch.js';
import {
  createDatabase,
  createTestTopology,
  errorOf,
  eventually,
  freshClientId,
  startTestGateway,
  uniqueSuffix,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

/**
 * SetShardDsn: a shard's database reached by a new URL (a rotated password, a new host), here the
 * same database behind a loopback proxy on another port.
 */
describe('SetShardDsn', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  let other: TestGateway;
  let proxy: FreezableProxy;
  let shard1Url: string;
  const onShard1: string[] = [];

  beforeAll(async () => {
    topology = await createTestTopology();
    shard1Url = topology.shards[0]!.url;
    gw = await startTestGateway(topology);
    other = await startTestGateway(topology); // a second replica on the same catalog
    proxy = await startFreezableProxy(shard1Url);
    while (onShard1.length < 2) {
      const clientId = freshClientId('dsn');
      const { tenant } = await gw.client.tenants.createTenant({ clientId });
      if (tenant!.shard === 'shard-1') onShard1.push(clientId);
    }
  });

  afterAll(async () => {
    await other?.close();
    await gw?.close();
    await proxy?.close();
  });

  // A failed test must not leave shard-1 behind a (frozen) proxy for the ones after it.
  afterEach(async () => {
    proxy.thaw();
    if (gw.gateway.context.pools.urlOf('shard-1') !== shard1Url) {
      await gw.client.admin.setShardDsn({ name: 'shard-1', dsn: shard1Url });
    }
  });

  const addressOf = async (shard: string): Promise<string | undefined> =>
    (await gw.client.admin.getTopology({})).shards.find((s) => s.name === shard)?.address;

  it('moves every gateway to the new URL, and watches follow over it', async () => {
    const [clientId] = onShard1;
    const received: Handoff[] = [];
    const reconnects: unknown[] = [];
    const stop = new AbortController();
    let subscribed = 0;
    const following = (async () => {
      for await (const h of followHandoffs(
        gw.client,
        { clientId: clientId! },
        {
          signal: stop.signal,
          onSubscribed: () => subscribed++,
          onReconnect: (e) => reconnects.push(e),
        },
      )) {
        received.push(h);
      }
    })();
    await waitUntil(() => subscribed === 1, 'the subscription');
    expect(proxy.open).toBe(0);

    const before = (await gw.client.admin.getTopology({})).ringEpoch;
    const { shard, ringEpoch } = await gw.client.admin.setShardDsn({
      name: 'shard-1',
      dsn: proxy.url,
    });
    expect(shard?.address).toBe(
      `127.0.0.1:${new URL(proxy.url).port}${new URL(proxy.url).pathname}`,
    );
    expect(shard?.tenantCount).toBeGreaterThanOrEqual(2);
    expect(ringEpoch).toBeGreaterThan(before);

    // This gateway's calls now go through the new URL, the watch was re-made over it…
    await gw.client.handoffs.appendHandoff({
      clientId: clientId!,
      handoff: { fromAgent: 'a', toAgent: 'b', version: 1, summary: { after: true } },
    });
    await waitUntil(() => received.length === 1, 'the handoff appended after the change');
    expect(reconnects.length).toBe(1);
    expect(subscribed).toBe(2);
    expect(proxy.open).toBeGreaterThan(0);
    // …and the other replica followed through the catalog's change feed.
    await eventually(async () =>
      expect(other.gateway.context.pools.urlOf('shard-1')).toBe(proxy.url),
    );
    expect((await other.client.state.getState({ clientId: onShard1[1]! })).state?.version).toBe(0);

    stop.abort();
    await following;
    // Back to the original URL: the same checks pass the other way.
    await gw.client.admin.setShardDsn({ name: 'shard-1', dsn: shard1Url });
    expect(await addressOf('shard-1')).toBe(
      `${new URL(shard1Url).hostname}:${new URL(shard1Url).port}${new URL(shard1Url).pathname}`,
    );
    await eventually(async () =>
      expect(other.gateway.context.pools.urlOf('shard-1')).toBe(shard1Url),
    );
  });

  it('moves off a shard URL that went silent at once, without waiting for its stuck statements', async () => {
    const [clientId] = onShard1;
    await gw.client.admin.setShardDsn({ name: 'shard-1', dsn: proxy.url });
    await gw.client.state.getState({ clientId: clientId! }); // a pooled connection via the proxy
    proxy.freeze();
    try {
      // A call stuck on the silent path, as calls are when a host dies…
      const stuck = gw.client.state.getState({ clientId: clientId! }, { deadline: 60_000 });
      stuck.catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
      // …does not hold up the operator pointing the shard at its new address.
      const started = Date.now();
      await gw.client.admin.setShardDsn({ name: 'shard-1', dsn: shard1Url }, { deadline: 5_000 });
      expect(Date.now() - started).toBeLessThan(3_000);
      expect((await gw.client.state.getState({ clientId: clientId! })).state?.version).toBe(0);
    } finally {
      proxy.thaw();
    }
  });

  it('registers a shard while another one is silent, within the probe bound', async () => {
    await gw.client.admin.setShardDsn({ name: 'shard-1', dsn: proxy.url });
    await gw.client.state.getState({ clientId: onShard1[0]! }); // a pooled connection via the proxy
    const fresh = await createDatabase(inject('pgServers')[1]!.adminUrl, `t_${uniqueSuffix()}_new`);
    proxy.freeze();
    try {
      const started = Date.now();
      const { shard } = await gw.client.admin.addShard(
        { name: 'while-silent', dsn: fresh, weight: 1 },
        { deadline: 10_000 },
      );
      expect(shard?.name).toBe('while-silent');
      expect(Date.now() - started).toBeLessThan(6_000);
    } finally {
      proxy.thaw();
    }
    await gw.client.admin.removeShard({ name: 'while-silent' });
    await gw.client.admin.setShardDsn({ name: 'shard-1', dsn: shard1Url });
  });

  it("refuses a database that is not the shard's, or is another shard's, and changes nothing", async () => {
    const address = await addressOf('shard-1');
    // An empty database: none of shard-1's client schemas.
    const empty = await createDatabase(
      inject('pgServers')[1]!.adminUrl,
      `t_${uniqueSuffix()}_empty`,
    );
    const notIt = await errorOf(gw.client.admin.setShardDsn({ name: 'shard-1', dsn: empty }));
    expect(notIt.code).toBe(Status.FAILED_PRECONDITION);
    expect(notIt.details).toMatch(
      /lacks the schemas of \d+ of the \d+ client\(s\) placed on shard 'shard-1'/,
    );

    // A shard with no clients yet, pointed at shard-2's database: two names for one database.
    await gw.client.admin.addShard({ name: 'spare', dsn: empty, weight: 1 });
    await gw.client.admin.drainShard({ name: 'spare' });
    const twice = await errorOf(
      gw.client.admin.setShardDsn({ name: 'spare', dsn: topology.shards[1]!.url }),
    );
    expect(twice.code).toBe(Status.ALREADY_EXISTS);
    expect(twice.details).toContain("already registered as shard 'shard-2'");

    const malformed = await errorOf(
      gw.client.admin.setShardDsn({ name: 'shard-1', dsn: 'db2:5432' }),
    );
    expect(malformed.code).toBe(Status.INVALID_ARGUMENT);
    const unreachable = await errorOf(
      gw.client.admin.setShardDsn({ name: 'shard-1', dsn: 'postgres://gw:pw@127.0.0.1:1/shard' }),
    );
    expect(unreachable.code).toBe(Status.UNAVAILABLE);
    expect(await addressOf('shard-1')).toBe(address);
    await gw.client.admin.removeShard({ name: 'spare' });
  });

  it('warns at start when the configured URL of a shard is not the registered one, and uses the registered one', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
    const stale = new URL(proxy.url);
    stale.password = 'configured-secret';
    const configured: TestTopology = {
      ...topology,
      shards: topology.shards.map((s) =>
        s.name === 'shard-1' ? { ...s, url: stale.toString() } : s,
      ),
    };
    const third = await startTestGateway(configured, {}, { log });
    try {
      expect(third.gateway.context.pools.urlOf('shard-1')).toBe(shard1Url);
      const warnings = lines.filter((l) => l.includes('differs from the one registered'));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain('shardctl set-dsn shard-1 <dsn>');
      expect(lines.join('')).not.toContain('configured-secret');
    } finally {
      await third.close();
    }
  });

  it('is refused while a move to or from the shard runs', async () => {
    await withPg(topology.catalogUrl, (c) =>
      c.query(
        `INSERT INTO shardgate.moves (client_id, source_shard, target_shard, reason, phase, state)
         VALUES ('dsn-test-move', 'shard-1', 'shard-2', 'manual', 'copying', 'running')`,
      ),
    );
    try {
      const refused = await errorOf(
        gw.client.admin.setShardDsn({ name: 'shard-1', dsn: proxy.url }),
      );
      expect(refused.code).toBe(Status.FAILED_PRECONDITION);
      expect(refused.details).toContain("a move to or from shard 'shard-1' is running");
    } finally {
      await withPg(topology.catalogUrl, (c) =>
        c.query("DELETE FROM shardgate.moves WHERE client_id = 'dsn-test-move'"),
      );
    }
  });
});
