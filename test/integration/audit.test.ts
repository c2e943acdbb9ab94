import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Metadata, Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { bootstrapIdentity } from '../../src/auth/identity.js';
import type { auditEventJson } from '../../src/cli/audit-commands.js';
import { Failpoints } from '../../src/core/failpoints.js';
import { MoveState, type AuditEvent } from '../../src/gen/shardgate/v1/admin.js';
import { moveTo } from '../support/move-helpers.js';
import {
  createDatabase,
  createTestTopology,
  errorOf,
  eventually,
  freshClientId,
  startTestGateway,
  statusOf,
  uniqueSuffix,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

const ADMIN = 'shardgate.v1.AdminService';
const TENANT = 'shardgate.v1.TenantService';
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** What a test checks of an event: everything but its id and time. */
const summary = (e: AuditEvent) => ({
  method: e.method,
  target: e.target,
  actor: e.actor,
  actorName: e.actorName,
  outcome: e.outcome,
  error: e.error,
});

/** Runs shardctl as a child process against `address`, with no SHARDGATE_* from the parent. */
function shardctl(
  address: string,
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('SHARDGATE_')) delete env[key];
  const argv = ['--import', 'tsx', 'src/cli/shardctl.ts', '--address', address, ...args];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      argv,
      { cwd: repoRoot, env, timeout: 30_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

describe('the audit log of admin actions', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  const failpoints = new Failpoints();

  beforeAll(async () => {
    topology = await createTestTopology(2);
    gw = await startTestGateway(topology, {}, { failpoints });
  }, 60_000);
  afterAll(async () => {
    await gw?.gateway.context.mover.idle();
    await gw?.close();
  });

  /** Every event (newest first) whose target is one of `targets`, through the API. */
  async function eventsOn(...targets: string[]): Promise<AuditEvent[]> {
    const { events, nextPageToken } = await gw.client.admin.listAuditEvents({ pageSize: 1000 });
    expect(nextPageToken).toBe('');
    return events.filter((e) => targets.includes(e.target));
  }

  async function auditRowCount(): Promise<number> {
    return withPg(topology.catalogUrl, async (c) => {
      const res = await c.query<{ n: string }>('SELECT count(*) AS n FROM shardgate.audit_events');
      return Number(res.rows[0]!.n);
    });
  }

  /** A new, empty database to register as a shard; its URL carries the superuser password. */
  async function spareDatabase(): Promise<{ name: string; url: string }> {
    const server = inject('pgServers')[3]!;
    const suffix = uniqueSuffix();
    return {
      name: `spare-${suffix}`,
      url: await createDatabase(server.adminUrl, `t_${suffix}_spare`),
    };
  }

  const ok = (method: string, target: string) => ({
    method,
    target,
    actor: 'anonymous',
    actorName: '',
    outcome: 'OK',
    error: '',
  });

  it('records each audited admin action once: method, target, actor anonymous, outcome OK', async () => {
    const startedAt = Date.now();
    const spare = await spareDatabase();
    await gw.client.admin.addShard({ name: spare.name, dsn: spare.url, weight: 50 });
    await gw.client.admin.setShardWeight({ name: spare.name, weight: 70 });
    await gw.client.admin.drainShard({ name: spare.name });
    await gw.client.admin.removeShard({ name: spare.name });

    const clientId = freshClientId('audited');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    const toShard = topology.shards.find((s) => s.name !== tenant!.shard)!.name;
    const progress = await moveTo(gw.client, clientId, toShard);
    expect(progress.at(-1)!.state).toBe(MoveState.MOVE_STATE_SUCCEEDED);
    await gw.client.tenants.churnTenant({ clientId });
    await gw.client.tenants.reactivateTenant({ clientId });

    const events = await eventsOn(spare.name, clientId);
    expect(events.map(summary)).toEqual([
      ok(`${TENANT}/ReactivateTenant`, clientId),
      ok(`${TENANT}/ChurnTenant`, clientId),
      ok(`${ADMIN}/MoveTenant`, clientId),
      ok(`${ADMIN}/RemoveShard`, spare.name),
      ok(`${ADMIN}/DrainShard`, spare.name),
      ok(`${ADMIN}/SetShardWeight`, spare.name),
      ok(`${ADMIN}/AddShard`, spare.name),
    ]);
    const byMethod = new Map(events.map((e) => [e.method.split('/')[1], e]));
    expect(JSON.parse(byMethod.get('SetShardWeight')!.requestJson)).toEqual({
      name: spare.name,
      weight: 70,
    });
    expect(JSON.parse(byMethod.get('MoveTenant')!.requestJson)).toEqual({ clientId, toShard });
    for (const e of events) {
      expect(e.createdAt!.getTime()).toBeGreaterThanOrEqual(startedAt - 1000);
      expect(e.createdAt!.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
    }
    const ids = events.map((e) => BigInt(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0)));
  });

  it("stores AddShard's DSN without its password, anywhere in the audit table", async () => {
    const spare = await spareDatabase();
    const password = decodeURIComponent(new URL(spare.url).password);
    expect(password.length).toBeGreaterThan(0);
    await gw.client.admin.addShard({ name: spare.name, dsn: spare.url, weight: 50 });
    await gw.client.admin.drainShard({ name: spare.name });
    await gw.client.admin.removeShard({ name: spare.name });

    const [added] = (await eventsOn(spare.name)).filter((e) => e.method.endsWith('/AddShard'));
    const u = new URL(spare.url);
    expect(JSON.parse(added!.requestJson)).toEqual({
      name: spare.name,
      dsn: `postgres://${u.username}@${u.host}${u.pathname}`,
      weight: 50,
    });
    const everything = await withPg(topology.catalogUrl, async (c) => {
      const res = await c.query<{ t: string }>('SELECT e::text AS t FROM shardgate.audit_events e');
      return res.rows.map((r) => r.t).join('\n');
    });
    expect(everything).toContain(spare.name);
    expect(everything).not.toContain(password);
    expect(everything).not.toContain(encodeURIComponent(password));
  });

  it('records CancelMove with the move id, and the MoveTenant it cut short', async () => {
    const clientId = freshClientId('cancelled');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    const toShard = topology.shards.find((s) => s.name !== tenant!.shard)!.name;
    const gate = failpoints.hold('move.copying');
    const moving = moveTo(gw.client, clientId, toShard);
    await gate.reached;
    const [move] = (await gw.client.admin.listMoves({ clientId })).moves;
    await gw.client.admin.cancelMove({ id: move!.id });
    gate.release();
    expect((await moving).at(-1)!.state).toBe(MoveState.MOVE_STATE_CANCELLED);

    // Newest first: the move's event was written when it was requested, before the cancel.
    expect((await eventsOn(clientId, move!.id)).map(summary)).toEqual([
      ok(`${ADMIN}/CancelMove`, move!.id),
      ok(`${ADMIN}/MoveTenant`, clientId),
    ]);
  });

  it('leaves a record when the caller of MoveTenant disconnects mid-stream', async () => {
    const clientId = freshClientId('left');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    const toShard = topology.shards.find((s) => s.name !== tenant!.shard)!.name;
    const gate = failpoints.hold('move.copying');
    const controller = new AbortController();
    const stream = gw.client.admin.moveTenant({ clientId, toShard }, { signal: controller.signal });
    const first = await stream[Symbol.asyncIterator]().next();
    expect(first.done).toBe(false);
    await gate.reached;
    controller.abort();
    gate.release();
    const [event] = await eventually(async () => {
      const found = await eventsOn(clientId);
      expect(found.map((e) => e.outcome)).toEqual(['CANCELLED']);
      return found;
    });
    expect(summary(event!)).toEqual({
      ...ok(`${ADMIN}/MoveTenant`, clientId),
      outcome: 'CANCELLED',
      error:
        'the caller disconnected before the stream ended; moves it started go on (see ListMoves)',
    });
    await gw.gateway.context.mover.idle();
  });

  it('records a refused admin call with its status name and the message the caller got', async () => {
    const clientId = freshClientId('holder');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    const shard = tenant!.shard;
    const refused = await errorOf(gw.client.admin.removeShard({ name: shard }));
    expect(refused.code).toBe(Status.FAILED_PRECONDITION);
    const invalid = await errorOf(gw.client.admin.drainShard({ name: 'Not A Shard' }));
    expect(invalid.code).toBe(Status.INVALID_ARGUMENT);

    const [removal] = (await eventsOn(shard)).filter((e) => e.method.endsWith('/RemoveShard'));
    expect(summary(removal!)).toEqual({
      ...ok(`${ADMIN}/RemoveShard`, shard),
      outcome: 'FAILED_PRECONDITION',
      error: refused.details,
    });
    expect((await eventsOn('Not A Shard')).map(summary)).toEqual([
      {
        ...ok(`${ADMIN}/DrainShard`, 'Not A Shard'),
        outcome: 'INVALID_ARGUMENT',
        error: invalid.details,
      },
    ]);
  });

  it('records nothing for read-only calls', async () => {
    const clientId = freshClientId('reader');
    await gw.client.tenants.createTenant({ clientId });
    const before = await auditRowCount();
    await gw.client.admin.getTopology({});
    await gw.client.admin.locate({ clientId });
    await gw.client.admin.planRebalance({});
    await gw.client.admin.listMoves({});
    await errorOf(gw.client.admin.getMove({ id: '00000000-0000-4000-8000-000000000000' }));
    await gw.client.admin.listTokens({}).catch(() => undefined);
    await gw.client.admin.listAuditEvents({});
    await gw.client.tenants.getTenant({ clientId });
    await gw.client.tenants.listTenants({});
    expect(await auditRowCount()).toBe(before);
  });

  describe('listing', () => {
    const actor = `paging-${uniqueSuffix()}`;
    const ROWS = 60;
    /** Ids of the rows inserted for this actor, newest (highest id) first. */
    let inserted: string[] = [];

    beforeAll(async () => {
      inserted = await withPg(topology.catalogUrl, async (c) => {
        const res = await c.query<{ id: string }>(
          `INSERT INTO shardgate.audit_events (actor, actor_name, method, target, request, outcome)
           SELECT $1, 'pager', CASE WHEN i % 2 = 0 THEN $2 ELSE $3 END, 'p-' || i, '{}', 'OK'
           FROM generate_series(1, $4::int) AS i RETURNING id::text AS id`,
          [actor, `${ADMIN}/DrainShard`, `${TENANT}/ChurnTenant`, ROWS],
        );
        return res.rows.map((r) => r.id).sort((a, b) => Number(b) - Number(a));
      });
    });

    it('pages newest first: 50 by default, at most 1000, with an opaque token', async () => {
      const first = await gw.client.admin.listAuditEvents({ actor });
      expect(first.events.map((e) => e.id)).toEqual(inserted.slice(0, 50));
      expect(first.nextPageToken).not.toBe('');
      const second = await gw.client.admin.listAuditEvents({
        actor,
        pageToken: first.nextPageToken,
      });
      expect(second.events.map((e) => e.id)).toEqual(inserted.slice(50));
      expect(second.nextPageToken).toBe('');
      const capped = await gw.client.admin.listAuditEvents({ actor, pageSize: 5000 });
      expect(capped.events.map((e) => e.id)).toEqual(inserted);
      expect(capped.events[0]).toMatchObject({ actor, actorName: 'pager', outcome: 'OK' });
    });

    it('follows small pages to the end without gaps or repeats', async () => {
      const seen: string[] = [];
      let pageToken = '';
      do {
        const page = await gw.client.admin.listAuditEvents({ actor, pageSize: 7, pageToken });
        expect(page.events.length).toBeLessThanOrEqual(7);
        seen.push(...page.events.map((e) => e.id));
        pageToken = page.nextPageToken;
      } while (pageToken !== '');
      expect(seen).toEqual(inserted);
    });

    it('filters by method: full name, full path or just the name', async () => {
      const drains = await withPg(topology.catalogUrl, async (c) => {
        const res = await c.query<{ id: string }>(
          `SELECT id::text AS id FROM shardgate.audit_events WHERE actor = $1 AND method = $2 ORDER BY id DESC`,
          [actor, `${ADMIN}/DrainShard`],
        );
        return res.rows.map((r) => r.id);
      });
      expect(drains).toHaveLength(ROWS / 2);
      for (const method of [`${ADMIN}/DrainShard`, `/${ADMIN}/DrainShard`, 'DrainShard']) {
        const { events } = await gw.client.admin.listAuditEvents({ actor, method, pageSize: 1000 });
        expect(events.map((e) => e.id)).toEqual(drains);
      }
      const anyActor = await gw.client.admin.listAuditEvents({
        method: 'DrainShard',
        pageSize: 1000,
      });
      expect(anyActor.events.filter((e) => e.actor === actor).map((e) => e.id)).toEqual(drains);
      expect(anyActor.events.every((e) => e.method === `${ADMIN}/DrainShard`)).toBe(true);
    });

    it('filters by actor, and finds nothing for an actor that never acted', async () => {
      const shard = `gone-${uniqueSuffix()}`;
      await errorOf(gw.client.admin.drainShard({ name: shard }));
      const anonymous = await gw.client.admin.listAuditEvents({
        actor: 'anonymous',
        pageSize: 1000,
      });
      expect(anonymous.events.filter((e) => e.target === shard).map(summary)).toEqual([
        {
          ...ok(`${ADMIN}/DrainShard`, shard),
          outcome: 'NOT_FOUND',
          error: `shard '${shard}' does not exist`,
        },
      ]);
      expect(anonymous.events.every((e) => e.actor === 'anonymous')).toBe(true);
      const nobody = await gw.client.admin.listAuditEvents({ actor: 'tok-nobody' });
      expect(nobody).toEqual({ events: [], nextPageToken: '' });
    });

    it('refuses an unaudited method, a foreign page token and a negative page size', async () => {
      const unknown = await errorOf(gw.client.admin.listAuditEvents({ method: 'GetTopology' }));
      expect(unknown.code).toBe(Status.INVALID_ARGUMENT);
      expect(unknown.details).toMatch(
        /^method 'GetTopology' is never audited; audited methods are: AddShard, /,
      );
      const { nextPageToken } = await gw.client.admin.listAuditEvents({ actor, pageSize: 1 });
      const replayed = await errorOf(
        gw.client.admin.listAuditEvents({ actor, method: 'ChurnTenant', pageToken: nextPageToken }),
      );
      expect(replayed.code).toBe(Status.INVALID_ARGUMENT);
      const fromMoves = (await gw.client.admin.listMoves({ pageSize: 1 })).nextPageToken;
      if (fromMoves !== '') {
        expect(
          (await errorOf(gw.client.admin.listAuditEvents({ pageToken: fromMoves }))).code,
        ).toBe(Status.INVALID_ARGUMENT);
      }
      expect((await errorOf(gw.client.admin.listAuditEvents({ pageSize: -1 }))).code).toBe(
        Status.INVALID_ARGUMENT,
      );
    });

    it('shardctl audit prints them, as a table and as JSON', async () => {
      const json = await shardctl(gw.gateway.address, [
        '--json',
        'audit',
        '--actor',
        actor,
        '--method',
        'DrainShard',
        '--limit',
        '3',
      ]);
      expect({ code: json.code, stderr: json.stderr }).toEqual({ code: 0, stderr: '' });
      const doc = JSON.parse(json.stdout) as {
        events: ReturnType<typeof auditEventJson>[];
        nextPageToken: string;
      };
      const api = await gw.client.admin.listAuditEvents({
        actor,
        method: 'DrainShard',
        pageSize: 3,
      });
      expect(doc).toEqual({
        events: api.events.map((e) => ({
          ...e,
          createdAt: e.createdAt!.toISOString(),
        })),
        nextPageToken: api.nextPageToken,
      });

      const table = await shardctl(gw.gateway.address, ['audit', '--actor', actor, '--limit', '2']);
      expect({ code: table.code, stderr: table.stderr }).toEqual({ code: 0, stderr: '' });
      const lines = table.stdout.trimEnd().split('\n');
      expect(lines[0]).toMatch(/^TIME +ACTOR +METHOD +TARGET +OUTCOME +ERROR$/);
      const newest = await gw.client.admin.listAuditEvents({ actor, pageSize: 2 });
      expect(lines.slice(1, 3).map((l) => l.split(/ {2,}/))).toEqual(
        newest.events.map((e) => [
          e.createdAt!.toISOString(),
          `${actor} (pager)`,
          e.method.split('/')[1],
          e.target,
          'OK',
        ]),
      );
      expect(lines.at(-1)).toMatch(/^more: add --page-token \S+ \(or a larger --limit\)$/);
    });
  });
});

describe('the audit log with token authentication', () => {
  const bootstrapSecret = `bootstrap-${uniqueSuffix()}-${'b'.repeat(32)}`;
  let topology: TestTopology;
  let gw: TestGateway;
  const as = (secret: string) => ({ metadata: Metadata({ authorization: `Bearer ${secret}` }) });

  beforeAll(async () => {
    topology = await createTestTopology(1);
    gw = await startTestGateway(topology, {
      auth: { required: true, adminToken: bootstrapSecret },
    });
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
  });

  it("records the token's id as the actor, and CreateToken's secret nowhere", async () => {
    const created = await gw.client.admin.createToken(
      { displayName: 'ops-alice', scope: 'admin' },
      as(bootstrapSecret),
    );
    const tokenId = created.token!.id;
    const readOnly = await gw.client.admin.createToken(
      { displayName: 'agent', scope: 'service' },
      as(bootstrapSecret),
    );
    await gw.client.admin.setShardWeight({ name: 'shard-1', weight: 80 }, as(created.secret));
    await gw.client.admin.revokeToken({ id: tokenId }, as(bootstrapSecret));
    // Refused by authentication, before the audit: attempts are not admin actions.
    expect(await statusOf(gw.client.admin.drainShard({ name: 'shard-1' }))).toBe(
      Status.UNAUTHENTICATED,
    );
    expect(
      await statusOf(gw.client.admin.drainShard({ name: 'shard-1' }, as(readOnly.secret))),
    ).toBe(Status.PERMISSION_DENIED);
    expect(
      await statusOf(gw.client.admin.drainShard({ name: 'shard-1' }, as(created.secret))),
    ).toBe(Status.UNAUTHENTICATED);

    const { events } = await gw.client.admin.listAuditEvents({}, as(bootstrapSecret));
    const bootstrap = { actor: 'bootstrap', actorName: bootstrapIdentity.actorName };
    expect(events.map(summary)).toEqual([
      { method: `${ADMIN}/RevokeToken`, target: tokenId, ...bootstrap, outcome: 'OK', error: '' },
      {
        method: `${ADMIN}/SetShardWeight`,
        target: 'shard-1',
        actor: tokenId,
        actorName: 'ops-alice',
        outcome: 'OK',
        error: '',
      },
      {
        method: `${ADMIN}/CreateToken`,
        target: readOnly.token!.id,
        ...bootstrap,
        outcome: 'OK',
        error: '',
      },
      { method: `${ADMIN}/CreateToken`, target: tokenId, ...bootstrap, outcome: 'OK', error: '' },
    ]);
    expect(JSON.parse(events.at(-1)!.requestJson)).toEqual({
      displayName: 'ops-alice',
      scope: 'admin',
    });
    const byToken = await gw.client.admin.listAuditEvents({ actor: tokenId }, as(bootstrapSecret));
    expect(byToken.events.map((e) => e.method)).toEqual([`${ADMIN}/SetShardWeight`]);

    const everything = await withPg(topology.catalogUrl, async (c) => {
      const res = await c.query<{ t: string }>('SELECT e::text AS t FROM shardgate.audit_events e');
      return res.rows.map((r) => r.t).join('\n');
    });
    expect(everything).toContain(tokenId);
    for (const secret of [created.secret, readOnly.secret, bootstrapSecret]) {
      expect(everything).not.toContain(secret);
      // Nor its random tail: a secret cut or re-encoded on the way would still leak.
      expect(everything).not.toContain(secret.slice(-16));
    }
  });
});
