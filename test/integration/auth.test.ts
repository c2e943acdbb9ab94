import { randomBytes } from 'node:crypto';
import { Metadata, Status } from 'nice-grpc';
import { HealthDefinition } from 'nice-grpc-server-health';
import { createChannel, createClient } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createShardgateClient, type ShardgateClient } from '../../src/client/index.js';
import { AdminServiceDefinition } from '../../src/gen/shardgate/v1/admin.js';
import { AppointmentServiceDefinition } from '../../src/gen/shardgate/v1/appointment.js';
import { HandoffServiceDefinition } from '../../src/gen/shardgate/v1/handoff.js';
import { SharedServiceDefinition } from '../../src/gen/shardgate/v1/shared.js';
import { StateServiceDefinition } from '../../src/gen/shardgate/v1/state.js';
import { TenantServiceDefinition } from '../../src/gen/shardgate/v1/tenant.js';
import { spawnGatewayProcess, type GatewayProcess } from '../support/gateway-process.js';
import {
  createTestTopology,
  errorOf,
  eventually,
  freshClientId,
  startTestGateway,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';
import { startWatch } from '../support/handoff-watch.js';
import { methodCases, outcomeOf, type MethodCase } from '../support/method-cases.js';

const BOOTSTRAP = `bootstrap-${randomBytes(24).toString('hex')}`;

/** The callers of the table: no token, bad tokens of each kind, and each scope. */
const callers = [
  'no token',
  'garbage token',
  'wrong secret for a real id',
  'expired token',
  'revoked token',
  'admin',
  'bootstrap',
  'service',
  'client:A',
] as const;
type Caller = (typeof callers)[number];
type Target = 'A' | 'B';

const unauthenticated: readonly Caller[] = callers.slice(0, 5);

/** What `caller` must get from `m` about client `target`, from the hand-written levels. */
function expected(m: MethodCase, caller: Caller, target: Target): Status {
  if (unauthenticated.includes(caller)) return Status.UNAUTHENTICATED;
  if (caller === 'admin' || caller === 'bootstrap') return m.allowed;
  if (caller === 'service') return m.level === 'admin' ? Status.PERMISSION_DENIED : m.allowed;
  if (m.level === 'shared-read') return m.allowed;
  return m.level === 'client' && target === 'A' ? m.allowed : Status.PERMISSION_DENIED;
}

const fixtures = { churnedClientId: freshClientId('churned') };
const cases = methodCases(fixtures);

const rows: [Caller, Target][] = [
  ...unauthenticated.map((c): [Caller, Target] => [c, 'A']),
  ['admin', 'B'],
  ['bootstrap', 'B'],
  ['service', 'A'],
  ['service', 'B'],
  ['client:A', 'A'],
  ['client:A', 'B'],
];

describe('authentication and authorization', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  const ids = { A: freshClientId('auth-a'), B: freshClientId('auth-b') };
  const secrets = new Map<Caller, string>();
  const clients = new Map<Caller, ShardgateClient>();
  const clientFor = (token?: string): ShardgateClient =>
    createShardgateClient({ address: gw.gateway.address, token, defaultDeadlineMs: 15_000 });
  const newToken = async (scope: string, ttlSeconds?: number) =>
    gw.client.admin.createToken({
      displayName: `auth test ${scope}`,
      scope,
      ttl: ttlSeconds === undefined ? undefined : { seconds: ttlSeconds, nanos: 0 },
    });

  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(
      topology,
      { auth: { required: true, adminToken: BOOTSTRAP } },
      { token: BOOTSTRAP },
    );
    for (const clientId of [ids.A, ids.B, fixtures.churnedClientId])
      await gw.client.tenants.createTenant({ clientId });
    await gw.client.tenants.churnTenant({ clientId: fixtures.churnedClientId });

    const admin = await newToken('admin');
    secrets.set('admin', admin.secret);
    secrets.set('bootstrap', BOOTSTRAP);
    secrets.set('service', (await newToken('service')).secret);
    secrets.set('client:A', (await newToken(`client:${ids.A}`)).secret);
    secrets.set('expired token', (await newToken('admin', 1)).secret);
    const revoked = await newToken('admin');
    secrets.set('revoked token', revoked.secret);
    await gw.client.admin.revokeToken({ id: revoked.token!.id });
    secrets.set('garbage token', 'not-a-shardgate-token');
    // Same id and length as a real admin token; only the random part differs.
    const last = admin.secret.at(-1) === 'A' ? 'B' : 'A';
    secrets.set('wrong secret for a real id', admin.secret.slice(0, -1) + last);

    for (const caller of callers) clients.set(caller, clientFor(secrets.get(caller)));
    // A 1-second TTL: wait until it has run out rather than sleeping a guessed time.
    await eventually(async () => {
      const err = await errorOf(clients.get('expired token')!.tenants.listTenants({}));
      expect(err.details).toContain('has expired');
    });
  });
  afterAll(async () => {
    for (const client of clients.values()) client.close();
    await gw?.close();
  });

  it('the table covers every RPC of every shardgate service', () => {
    const rpcs = [
      TenantServiceDefinition,
      AppointmentServiceDefinition,
      HandoffServiceDefinition,
      StateServiceDefinition,
      SharedServiceDefinition,
      AdminServiceDefinition,
    ].flatMap((d) => Object.values(d.methods).map((m) => `/${d.fullName}/${m.name}`));
    expect(cases.map((m) => m.path).sort()).toEqual(rpcs.sort());
  });

  describe.each(rows)('%s, about client %s', (caller, target) => {
    it.each(cases.map((m) => [m.path, m] as const))('%s', async (_path, m) => {
      const status = await outcomeOf(m.invoke(clients.get(caller)!, ids[target]));
      expect(Status[status]).toBe(Status[expected(m, caller, target)]);
    });
  });

  it('never echoes a refused secret', async () => {
    for (const caller of ['garbage token', 'wrong secret for a real id'] as const) {
      const err = await errorOf(clients.get(caller)!.state.getState({ clientId: ids.A }));
      expect(err).toEqual({
        code: Status.UNAUTHENTICATED,
        details: expect.stringContaining('the bearer token is not valid') as string,
      });
      expect(err.details).not.toContain(secrets.get(caller)!);
    }
  });

  it('refuses malformed authorization metadata before looking at the token', async () => {
    const admin = secrets.get('admin')!;
    for (const authorization of [`Basic ${admin}`, 'Bearer', admin, `Bearer ${admin} extra`]) {
      const err = await errorOf(
        clients
          .get('no token')!
          .tenants.getTenant({ clientId: ids.A }, { metadata: Metadata({ authorization }) }),
      );
      expect([authorization, err.code]).toEqual([authorization, Status.UNAUTHENTICATED]);
    }
  });

  it('a denied write leaves no row: the refusal comes before any database work', async () => {
    const victim = freshClientId('auth-victim');
    await gw.client.tenants.createTenant({ clientId: victim });
    const intruder = clients.get('client:A')!;
    const writes = [
      intruder.state.putState({ clientId: victim, document: { owned: true } }),
      intruder.state.patchState({ clientId: victim, patch: { owned: true } }),
      intruder.handoffs.appendHandoff({
        clientId: victim,
        handoff: { fromAgent: 'x', toAgent: 'y', summary: {} },
      }),
      intruder.appointments.createAppointment({
        clientId: victim,
        appointment: {
          clientPhone: '+1 555 0100',
          scheduledAt: new Date('2031-01-01T09:00:00Z'),
          serviceType: 'intrusion',
        },
      }),
      clients.get('no token')!.state.putState({ clientId: victim, document: { owned: true } }),
    ];
    expect(await Promise.all(writes.map(outcomeOf))).toEqual([
      Status.PERMISSION_DENIED,
      Status.PERMISSION_DENIED,
      Status.PERMISSION_DENIED,
      Status.PERMISSION_DENIED,
      Status.UNAUTHENTICATED,
    ]);
    const { tenant } = await gw.client.tenants.getTenant({ clientId: victim });
    const shardUrl = topology.shards.find((s) => s.name === tenant!.shard)!.url;
    const counts = await withPg(shardUrl, async (pg) => {
      const res = await pg.query<{ table: string; n: string }>(
        `SELECT 'appointments' AS table, count(*) AS n FROM ${tenant!.schema}.appointments
         UNION ALL SELECT 'handoffs', count(*) FROM ${tenant!.schema}.handoffs
         UNION ALL SELECT 'state version', version FROM ${tenant!.schema}.state`,
      );
      return Object.fromEntries(res.rows.map((r) => [r.table, Number(r.n)]));
    });
    expect(counts).toEqual({ appointments: 0, handoffs: 0, 'state version': 0 });
  });

  it('a denied call about a client that does not exist is PERMISSION_DENIED, not NOT_FOUND', async () => {
    const nobody = freshClientId('auth-nobody');
    const calls = {
      clientGet: clients.get('client:A')!.state.getState({ clientId: nobody }),
      clientCreate: clients.get('client:A')!.tenants.createTenant({ clientId: nobody }),
      clientBadId: clients.get('client:A')!.state.getState({ clientId: "x'; DROP SCHEMA --" }),
      anonymous: clients.get('no token')!.state.getState({ clientId: nobody }),
      service: clients.get('service')!.state.getState({ clientId: nobody }),
    };
    const outcomes = Object.fromEntries(
      await Promise.all(
        Object.entries(calls).map(async ([k, p]) => [k, Status[await outcomeOf(p)]]),
      ),
    );
    expect(outcomes).toEqual({
      clientGet: 'PERMISSION_DENIED',
      clientCreate: 'PERMISSION_DENIED',
      clientBadId: 'PERMISSION_DENIED',
      anonymous: 'UNAUTHENTICATED',
      // Past authorization the handler runs and finds nothing.
      service: 'NOT_FOUND',
    });
    const entries = await withPg(topology.catalogUrl, (pg) =>
      pg.query('SELECT 1 FROM shardgate.tenants WHERE client_id = $1', [nobody]),
    );
    expect(entries.rowCount).toBe(0);
  });

  it('verifies a token from memory after its first use: no catalog read per call', async () => {
    const cached = clientFor((await newToken('service')).secret);
    const fresh = clientFor((await newToken('service')).secret);
    try {
      await cached.tenants.getTenant({ clientId: ids.A });
      // With the token table out of reach, only tokens already verified can work.
      await withPg(topology.catalogUrl, (pg) =>
        pg.query('ALTER TABLE shardgate.tokens RENAME TO tokens_hidden'),
      );
      try {
        for (let i = 0; i < 20; i++) await cached.tenants.getTenant({ clientId: ids.A });
        expect(await outcomeOf(fresh.tenants.getTenant({ clientId: ids.A }))).toBe(
          Status.UNAVAILABLE,
        );
      } finally {
        await withPg(topology.catalogUrl, (pg) =>
          pg.query('ALTER TABLE shardgate.tokens_hidden RENAME TO tokens'),
        );
      }
      await fresh.tenants.getTenant({ clientId: ids.A });
    } finally {
      cached.close();
      fresh.close();
    }
  });

  describe('an open WatchHandoffs does not outlive its token', () => {
    const handoff = {
      fromAgent: 'intake-agent',
      toAgent: 'dispatch-agent',
      version: 1,
      summary: { note: 'watched' },
    };
    /** Watches client A with a fresh client:A token; returns the watch and the token's id. */
    async function watchWithNewToken(ttlSeconds?: number) {
      const created = await newToken(`client:${ids.A}`, ttlSeconds);
      const agent = clientFor(created.secret);
      const watch = await startWatch(agent.handoffs, { clientId: ids.A });
      await gw.client.handoffs.appendHandoff({ clientId: ids.A, handoff });
      await watch.waitForCount(1);
      return { watch, agent, tokenId: created.token!.id };
    }
    const endStatus = (error: unknown) => ({
      code: (error as { code?: unknown }).code,
      details: (error as { details?: unknown }).details,
    });

    it('ends UNAUTHENTICATED once the token is revoked', async () => {
      const { watch, agent, tokenId } = await watchWithNewToken();
      try {
        await gw.client.admin.revokeToken({ id: tokenId });
        const { error } = await watch.ended;
        expect(endStatus(error)).toEqual({
          code: Status.UNAUTHENTICATED,
          details: `token ${tokenId} has been revoked; this stream has ended`,
        });
      } finally {
        agent.close();
      }
    });

    it('ends UNAUTHENTICATED when the token expires', async () => {
      const { watch, agent, tokenId } = await watchWithNewToken(2);
      try {
        const { error } = await watch.ended;
        expect(endStatus(error)).toEqual({
          code: Status.UNAUTHENTICATED,
          details: `token ${tokenId} has expired; this stream has ended`,
        });
      } finally {
        agent.close();
      }
    });

    it('goes on while the token is valid (a token event about another token changes nothing)', async () => {
      const { watch, agent } = await watchWithNewToken();
      try {
        const other = await newToken('service');
        await gw.client.admin.revokeToken({ id: other.token!.id });
        await gw.client.handoffs.appendHandoff({ clientId: ids.A, handoff });
        await watch.waitForCount(2);
        expect(watch.isEnded()).toBe(false);
      } finally {
        watch.cancel();
        agent.close();
      }
    });
  });

  it('health checks need no token; reflection needs a valid one', async () => {
    const channel = createChannel(gw.gateway.address);
    try {
      const health = createClient(HealthDefinition, channel);
      expect(await health.check({ service: '' })).toEqual({ status: 1 });
    } finally {
      channel.close();
    }
    const reflect = async (token?: string): Promise<Status> => {
      const ch = createChannel(gw.gateway.address);
      const { ServerReflectionService } = await import('nice-grpc-server-reflection');
      const pb =
        await import('nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb.js');
      const client = createClient(ServerReflectionService, ch);
      const req = new pb.default.ServerReflectionRequest();
      req.setListServices('');
      const metadata = token ? Metadata({ authorization: `Bearer ${token}` }) : undefined;
      async function* requests() {
        yield req;
      }
      try {
        return await outcomeOf(
          (async () => {
            for await (const res of client.serverReflectionInfo(requests(), { metadata }))
              return res;
          })(),
        );
      } finally {
        ch.close();
      }
    };
    expect(Status[await reflect()]).toBe('UNAUTHENTICATED');
    expect(Status[await reflect('nope')]).toBe('UNAUTHENTICATED');
    expect(Status[await reflect(secrets.get('client:A'))]).toBe('OK');
  });

  it('refuses to start on a non-loopback address without auth', async () => {
    const err = await startTestGateway(topology, { listen: '0.0.0.0:0' }).then(
      () => new Error('started'),
      (e: unknown) => e as Error,
    );
    expect(err.message).toMatch(/^refusing to listen on 0\.0\.0\.0:0 without authentication/);
  });

  describe('a second gateway process, open on loopback', () => {
    let proc: GatewayProcess;
    const procClient = (token?: string) =>
      createShardgateClient({ address: proc.address, token, defaultDeadlineMs: 15_000 });

    beforeAll(async () => {
      proc = await spawnGatewayProcess(topology);
    });
    afterAll(async () => proc?.stop());

    it('warns that it runs open', () => {
      expect(proc.output()).toContain('auth.required is off');
    });

    it('runs a call without a token as anonymous admin, but applies a token that is sent', async () => {
      const anonymous = procClient();
      const clientA = procClient(secrets.get('client:A'));
      const garbage = procClient('garbage');
      try {
        expect((await anonymous.admin.getTopology({})).shards).toHaveLength(2);
        expect(await outcomeOf(clientA.state.getState({ clientId: ids.A }))).toBe(Status.OK);
        expect(await outcomeOf(clientA.state.getState({ clientId: ids.B }))).toBe(
          Status.PERMISSION_DENIED,
        );
        expect(await outcomeOf(clientA.admin.getTopology({}))).toBe(Status.PERMISSION_DENIED);
        expect(await outcomeOf(garbage.admin.getTopology({}))).toBe(Status.UNAUTHENTICATED);
      } finally {
        for (const c of [anonymous, clientA, garbage]) c.close();
      }
    });

    it('stops accepting a token another gateway revoked', async () => {
      const victim = await newToken(`client:${ids.A}`);
      const here = clientFor(victim.secret);
      const there = procClient(victim.secret);
      try {
        await here.state.getState({ clientId: ids.A });
        await there.state.getState({ clientId: ids.A });
        const revoked = await gw.client.admin.revokeToken({ id: victim.token!.id });
        expect(revoked.token!.revokedAt).toBeInstanceOf(Date);
        // The revoking gateway refuses at once; the other one once the notification arrives.
        expect((await errorOf(here.state.getState({ clientId: ids.A }))).details).toMatch(
          /has been revoked/,
        );
        await eventually(async () => {
          const err = await errorOf(there.state.getState({ clientId: ids.A }));
          expect(err).toEqual({
            code: Status.UNAUTHENTICATED,
            details: `token ${victim.token!.id} has been revoked; ask an admin for a new one`,
          });
        });
      } finally {
        here.close();
        there.close();
      }
    });
  });

  it('refuses to start a process on 0.0.0.0 without auth (exit 2, clear message)', async () => {
    const err = await spawnGatewayProcess(topology, {
      env: { SHARDGATE_LISTEN: '0.0.0.0:0' },
    }).then(
      async (p) => {
        await p.stop();
        return new Error('started');
      },
      (e: unknown) => e as Error,
    );
    expect(err.message).toContain('exited (code 2');
    expect(err.message).toContain('refusing to listen on 0.0.0.0:0 without authentication');
  });
});
