import { chmod, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { EmbeddedServer } from '../../src/embedded/embedded-server.js';
import { TenantStatus } from '../../src/gen/shardgate/v1/tenant.js';
import { freePort } from '../support/global-setup.js';
import { startWatch } from '../support/handoff-watch.js';
import {
  createDatabase,
  errorOf,
  statusOf,
  freshClientId,
  startTestGateway,
  uniqueSuffix,
  type TestGateway,
  withPg,
  type TestTopology,
} from '../support/harness.js';

/** How long a call to a stopped shard may take to fail: fast failure, not a hang. */
const FAIL_FAST_MS = 5_000;

describe('a shard server that goes down and comes back', () => {
  let dir: string;
  let server: EmbeddedServer | undefined;
  let topology: TestTopology;
  let gw: TestGateway;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shardgate-shard-failure-'));
    // PostgreSQL runs as the OS user `postgres` when the tests run as root: it must enter the dir.
    await chmod(dir, 0o755);
    server = await EmbeddedServer.start({
      dataDir: join(dir, 'pg'),
      port: await freePort(),
      persistent: true,
      databases: [],
    });
    const [catalogServer, shardServer] = inject('pgServers');
    const id = uniqueSuffix();
    topology = {
      catalogUrl: await createDatabase(catalogServer!.adminUrl, `t_${id}_catalog`),
      shards: [
        {
          name: 'shard-1',
          url: await createDatabase(
            server.urlFor('postgres'),
            `t_${id}_s1`,
            server.runtimeUrlFor('postgres'),
          ),
          weight: 100,
        },
        {
          name: 'shard-2',
          url: await createDatabase(shardServer!.adminUrl, `t_${id}_s2`),
          weight: 100,
        },
      ],
    };
    gw = await startTestGateway(topology);
  });

  afterAll(async () => {
    thaw();
    await gw?.close();
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Processes of the dedicated server stopped with SIGSTOP, to be continued even if a test fails. */
  let frozen: number[] = [];

  /** SIGSTOPs the dedicated server's postmaster and every backend: up, but answering nothing. */
  async function freeze(): Promise<void> {
    const postmaster = Number(
      (await readFile(join(dir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0],
    );
    const children = [];
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      // Field 4 (ppid) follows the parenthesised command name, which may itself contain spaces.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === postmaster) children.push(Number(entry));
    }
    frozen = [postmaster, ...children];
    for (const pid of frozen) process.kill(pid, 'SIGSTOP');
  }

  function thaw(): void {
    for (const pid of frozen) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // already gone
      }
    }
    frozen = [];
  }

  /** Restarts the dedicated server if an earlier test left it stopped. */
  async function ensureRunning(): Promise<void> {
    const reachable = await withPg(topology.shards[0]!.url, async () => true).catch(() => false);
    if (!reachable) await server!.restart();
  }

  /** Creates clients until there is one on each shard. */
  async function clientOnEachShard(): Promise<{ down: string; up: string }> {
    const found = new Map<string, string>();
    for (let i = 0; i < 64 && found.size < 2; i++) {
      const clientId = freshClientId('failover');
      const { tenant } = await gw.client.tenants.createTenant({ clientId });
      if (!found.has(tenant!.shard)) found.set(tenant!.shard, clientId);
    }
    expect([...found.keys()].sort()).toEqual(['shard-1', 'shard-2']);
    return { down: found.get('shard-1')!, up: found.get('shard-2')! };
  }

  async function expectFastUnavailable(call: Promise<unknown>): Promise<void> {
    const started = Date.now();
    const { code, details } = await errorOf(call);
    expect(Date.now() - started).toBeLessThan(FAIL_FAST_MS);
    expect(code).toBe(Status.UNAVAILABLE);
    expect(details).toContain("shard 'shard-1'");
  }

  it('fails calls for the stopped shard fast with UNAVAILABLE, serves the others, and recovers', async () => {
    const { down, up } = await clientOnEachShard();
    const c = gw.client;
    await c.state.putState({ clientId: down, document: { before: 'outage', n: 1 } });
    const { handoff: kept } = await c.handoffs.appendHandoff({
      clientId: down,
      handoff: { fromAgent: 'a', toAgent: 'b', version: 1, summary: { kept: true } },
    });
    await c.state.putState({ clientId: up, document: { n: 1 } });
    const watch = await startWatch(c.handoffs, { clientId: down });

    await server!.stop();

    // The watcher learns its shard is gone: the stream ends with UNAVAILABLE, not silently.
    const ended = await Promise.race([
      watch.ended,
      new Promise<'hang'>((r) => setTimeout(() => r('hang'), FAIL_FAST_MS).unref()),
    ]);
    expect(ended).not.toBe('hang');
    const watchError = (ended as { error: { code?: number; details?: string } }).error;
    expect(watchError?.code).toBe(Status.UNAVAILABLE);
    expect(watchError?.details).toContain("shard 'shard-1'");

    // Reads (retried by the client), writes and a new watch on the stopped shard fail fast.
    await expectFastUnavailable(c.state.getState({ clientId: down }));
    await expectFastUnavailable(
      c.state.putState({ clientId: down, document: { during: 'outage' } }),
    );
    await expectFastUnavailable(
      c.handoffs.appendHandoff({
        clientId: down,
        handoff: { fromAgent: 'a', toAgent: 'b', summary: {} },
      }),
    );
    await expectFastUnavailable(c.handoffs.listHandoffs({ clientId: down }));
    const started = Date.now();
    const watchErr = await startWatch(c.handoffs, { clientId: down }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(String(watchErr)).toMatch(/UNAVAILABLE.*shard 'shard-1'/);
    expect(Date.now() - started).toBeLessThan(FAIL_FAST_MS);

    // The other shard, the catalog and the gateway itself keep working.
    const put = await c.state.putState({ clientId: up, document: { n: 2 }, expectedVersion: 1 });
    expect(put.state?.version).toBe(2);
    expect((await c.state.getState({ clientId: up })).state?.document).toEqual({ n: 2 });
    const upHandoff = await c.handoffs.appendHandoff({
      clientId: up,
      handoff: { fromAgent: 'a', toAgent: 'b', summary: { during: 'outage' } },
    });
    expect((await c.handoffs.listHandoffs({ clientId: up })).handoffs).toEqual([upHandoff.handoff]);
    const topo = await c.admin.getTopology({});
    expect(topo.shards.map((s) => s.name)).toEqual(['shard-1', 'shard-2']);
    expect(topo.shards.reduce((sum, s) => sum + s.tenantCount, 0)).toBeGreaterThanOrEqual(2);
    expect((await c.tenants.getTenant({ clientId: down })).tenant?.shard).toBe('shard-1');

    // A new tenant the ring places on shard-2 is created; one placed on shard-1 fails fast.
    let stranded: string | undefined;
    for (let i = 0; i < 64 && !stranded; i++) {
      const clientId = freshClientId('during-outage');
      const started = Date.now();
      try {
        const { tenant } = await c.tenants.createTenant({ clientId });
        expect(tenant?.shard).toBe('shard-2');
        expect(tenant?.status).toBe(TenantStatus.TENANT_STATUS_ACTIVE);
      } catch (err) {
        expect((err as { code?: number }).code).toBe(Status.UNAVAILABLE);
        expect(Date.now() - started).toBeLessThan(FAIL_FAST_MS);
        stranded = clientId;
      }
    }
    expect(stranded).toBeDefined();

    await server!.restart();

    // Everything written before the outage is still there, and nothing from the failed calls.
    const after = await c.state.getState({ clientId: down });
    expect(after.state?.document).toEqual({ before: 'outage', n: 1 });
    expect(after.state?.version).toBe(1);
    expect((await c.handoffs.listHandoffs({ clientId: down })).handoffs).toEqual([kept]);
    const put2 = await c.state.putState({
      clientId: down,
      document: { after: 'outage' },
      expectedVersion: 1,
    });
    expect(put2.state?.version).toBe(2);

    // Watching works again on the restarted shard.
    const again = await startWatch(c.handoffs, { clientId: down });
    const { handoff: fresh } = await c.handoffs.appendHandoff({
      clientId: down,
      handoff: { fromAgent: 'a', toAgent: 'b', version: 1, summary: { after: true } },
    });
    await again.waitForCount(1);
    expect(again.received).toEqual([fresh]);
    again.cancel();
    await again.ended;

    // Retrying the create that failed during the outage finishes provisioning it.
    const retried = await c.tenants.createTenant({ clientId: stranded! });
    expect(retried.tenant?.shard).toBe('shard-1');
    expect(retried.tenant?.status).toBe(TenantStatus.TENANT_STATUS_ACTIVE);
    expect((await c.state.getState({ clientId: stranded! })).state?.version).toBe(0);
  });

  it('a frozen shard server (no FIN, no RST) ends its watchers with UNAVAILABLE; deadlines still hold', async () => {
    await ensureRunning();
    const { down, up } = await clientOnEachShard();
    const c = gw.client;
    const watch = await startWatch(c.handoffs, { clientId: down });

    await freeze();
    try {
      const started = Date.now();
      expect(await statusOf(c.state.getState({ clientId: down }, { deadline: 1_000 }))).toBe(
        Status.DEADLINE_EXCEEDED,
      );
      expect(Date.now() - started).toBeLessThan(2_000);
      expect((await c.state.getState({ clientId: up })).state?.version).toBe(0);

      // The LISTEN connection only reads; its heartbeat notices the silence.
      const ended = await Promise.race([
        watch.ended,
        new Promise<'hang'>((r) => setTimeout(() => r('hang'), 8_000).unref()),
      ]);
      expect(ended).not.toBe('hang');
      const error = (ended as { error: { code?: number; details?: string } }).error;
      expect(error?.code).toBe(Status.UNAVAILABLE);
      expect(error?.details).toContain("shard 'shard-1'");
    } finally {
      thaw();
    }

    const put = await c.state.putState({ clientId: down, document: { thawed: true } });
    expect(put.state?.version).toBe(1);
  });
});
