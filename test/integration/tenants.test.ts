import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MAX_CLIENT_ID_LENGTH,
  MAX_IDENTIFIER_BYTES,
  parseClientId,
  parseShardName,
  schemaNameFor,
} from '../../src/core/ids.js';
import { TenantStatus, type Tenant } from '../../src/gen/shardgate/v1/tenant.js';
import { Database } from '../../src/pg/database.js';
import { clientMigrations } from '../../src/shards/client-migrations.js';
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
} from '../support/harness.js';

const CLIENT_TABLES = ['appointments', 'handoffs', 'request_ids', 'schema_migrations', 'state'];

function shardUrl(topology: TestTopology, shard: string): string {
  const found = topology.shards.find((s) => s.name === shard);
  if (!found) throw new Error(`no shard ${shard} in the topology`);
  return found.url;
}

/** Tables of a schema on a database, straight from pg_catalog (empty when the schema is absent). */
async function tablesOf(url: string, schema: string): Promise<string[]> {
  return withPg(url, async (c) => {
    const res = await c.query<{ relname: string }>(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY c.relname`,
      [schema],
    );
    return res.rows.map((r) => r.relname);
  });
}

async function schemaCount(url: string, schema: string): Promise<number> {
  return withPg(url, async (c) => {
    const res = await c.query<{ n: string }>(
      'SELECT count(*) AS n FROM pg_namespace WHERE nspname = $1',
      [schema],
    );
    return Number(res.rows[0]!.n);
  });
}

/** A fresh valid client id of exactly `length` characters. */
function idOfLength(length: number): string {
  const head = `len-${uniqueSuffix()}-`;
  return head + 'a'.repeat(length - head.length);
}

/** Polls `check` every 20 ms until it is true; fails after `timeoutMs`. */
async function waitFor(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function testDatabase(url: string): Database {
  return new Database({
    url,
    label: 'test shard',
    max: 2,
    idleTimeoutMs: 1_000,
    connectionTimeoutMs: 3_000,
    statementTimeoutMs: 10_000,
    maxLifetimeSeconds: 60,
    onError: () => undefined,
  });
}

describe('TenantService', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(topology);
  });
  afterAll(async () => gw?.close());

  describe('CreateTenant', () => {
    it('creates schema client_<id> with its tables on the shard it reports', async () => {
      const clientId = freshClientId('acme-hvac');
      const started = Date.now();
      const { tenant, created } = await gw.client.tenants.createTenant({ clientId });
      expect(created).toBe(true);
      const schema = `client_${clientId.replaceAll('-', '_')}`;
      expect(tenant).toMatchObject({
        clientId,
        status: TenantStatus.TENANT_STATUS_ACTIVE,
        schema,
        schemaVersion: 2,
      });
      expect(topology.shards.map((s) => s.name)).toContain(tenant!.shard);
      expect(tenant!.churnedAt).toBeUndefined();
      expect(tenant!.createdAt!.getTime()).toBeGreaterThanOrEqual(started - 1_000);

      const here = shardUrl(topology, tenant!.shard);
      expect(await tablesOf(here, schema)).toEqual(CLIENT_TABLES);
      const versions = await withPg(
        here,
        async (c) =>
          (
            await c.query<{ version: number }>(
              `SELECT version FROM "${schema}".schema_migrations ORDER BY version`,
            )
          ).rows,
      );
      expect(versions).toEqual([{ version: 1 }, { version: 2 }]);
      // The other shard has no trace of the client.
      const other = topology.shards.find((s) => s.name !== tenant!.shard)!;
      expect(await schemaCount(other.url, schema)).toBe(0);
    });

    it('a retried create returns the same tenant with created=false and makes no second schema', async () => {
      const clientId = freshClientId('retry');
      const first = await gw.client.tenants.createTenant({ clientId });
      const second = await gw.client.tenants.createTenant({ clientId });
      expect(first.created).toBe(true);
      expect(second.created).toBe(false);
      expect(second.tenant).toEqual(first.tenant);
      const schema = first.tenant!.schema;
      for (const s of topology.shards) {
        expect(await schemaCount(s.url, schema)).toBe(s.name === first.tenant!.shard ? 1 : 0);
      }
      const rows = await withPg(
        topology.catalogUrl,
        async (c) =>
          (
            await c.query('SELECT client_id FROM shardgate.tenants WHERE client_id = $1', [
              clientId,
            ])
          ).rowCount,
      );
      expect(rows).toBe(1);
    });

    it('N concurrent creates of one new id: exactly one created=true, all agree on shard and schema', async () => {
      const clientId = freshClientId('race');
      const n = 16;
      const results = await Promise.all(
        Array.from({ length: n }, () => gw.client.tenants.createTenant({ clientId })),
      );
      expect(results.filter((r) => r.created)).toHaveLength(1);
      const shards = new Set(results.map((r) => r.tenant!.shard));
      const schemas = new Set(results.map((r) => r.tenant!.schema));
      expect(shards.size).toBe(1);
      expect([...schemas]).toEqual([`client_${clientId.replaceAll('-', '_')}`]);
      for (const r of results) {
        expect(r.tenant!.status).toBe(TenantStatus.TENANT_STATUS_ACTIVE);
        expect(r.tenant!.schemaVersion).toBe(2);
      }
      const [shard] = [...shards];
      expect(await tablesOf(shardUrl(topology, shard!), [...schemas][0]!)).toEqual(CLIENT_TABLES);
      const { state } = await gw.client.state.getState({ clientId });
      expect(state).toMatchObject({ version: 0, document: {} });
    });

    it('regression: concurrent directory inserts of one client never fail on the schema_name index', async () => {
      // `ON CONFLICT (client_id)` left schema_name's unique index out of the arbiters, so a racing
      // insert of the same client failed with 23505 (ALREADY_EXISTS) about once in 20 rounds.
      const { catalog } = gw.gateway.context;
      for (let round = 0; round < 20; round++) {
        const clientId = parseClientId(freshClientId('insert-race'));
        const entry = {
          clientId,
          schema: schemaNameFor(clientId),
          shard: parseShardName('shard-1'),
        };
        const results = await Promise.all(
          Array.from({ length: 20 }, () => catalog.insertTenant(entry)),
        );
        expect(results.filter((r) => r.inserted)).toHaveLength(1);
        for (const r of results)
          expect(r.tenant).toMatchObject({ clientId, status: 'provisioning', shard: 'shard-1' });
        await catalog.deleteProvisioningTenant(clientId);
      }
    });

    it('regression: a create that times out does not strand a concurrent create of the same client', async () => {
      // The timed-out first create deleted the 'provisioning' entry while a second create waited on
      // the schema lock; the second then made the schema and failed INTERNAL ("vanished"), leaving
      // a schema no directory entry pointed to.
      const clientId = freshClientId('timeout-race');
      const schema = `client_${clientId.replaceAll('-', '_')}`;
      const lockers = await Promise.all(
        topology.shards.map(async (s) => {
          const c = new pg.Client({ connectionString: s.url });
          await c.connect();
          await c.query(`SELECT pg_advisory_lock(hashtext('shardgate:' || $1))`, [schema]);
          return c;
        }),
      );
      const waiters = async (): Promise<number> => {
        let n = 0;
        for (const s of topology.shards) {
          n += await withPg(s.url, async (c) =>
            Number(
              (
                await c.query<{ n: string }>(
                  `SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database =
                 (SELECT oid FROM pg_database WHERE datname = current_database())`,
                )
              ).rows[0]!.n,
            ),
          );
        }
        return n;
      };
      const inCatalog = async (): Promise<number> =>
        withPg(
          topology.catalogUrl,
          async (c) =>
            (await c.query('SELECT 1 FROM shardgate.tenants WHERE client_id = $1', [clientId]))
              .rowCount ?? 0,
        );
      try {
        const first = statusOf(gw.client.tenants.createTenant({ clientId }, { deadline: 2_000 }));
        await waitFor(async () => (await waiters()) === 1);
        const second = gw.client.tenants.createTenant({ clientId });
        second.catch(() => undefined); // awaited below; no unhandled rejection if a wait fails first
        await waitFor(async () => (await waiters()) === 2);
        expect(await first).toBe(Status.DEADLINE_EXCEEDED);
        // The first create's clean-up removed the still-provisioning entry.
        await waitFor(async () => (await waiters()) === 1 && (await inCatalog()) === 0);
        for (const c of lockers)
          await c.query(`SELECT pg_advisory_unlock(hashtext('shardgate:' || $1))`, [schema]);
        const { tenant, created } = await second;
        expect(created).toBe(true);
        expect(tenant).toMatchObject({
          clientId,
          schema,
          status: TenantStatus.TENANT_STATUS_ACTIVE,
          schemaVersion: 2,
        });
        expect((await gw.client.tenants.getTenant({ clientId })).tenant).toEqual(tenant);
        expect(await tablesOf(shardUrl(topology, tenant!.shard), schema)).toEqual(CLIENT_TABLES);
        expect(
          (await gw.client.state.putState({ clientId, document: { ok: true } })).state?.version,
        ).toBe(1);
      } finally {
        await Promise.all(lockers.map((c) => c.end()));
      }
    });

    it('accepts a client id of the maximum length; its schema name is exactly 63 bytes', async () => {
      expect(MAX_CLIENT_ID_LENGTH).toBe(56);
      const clientId = idOfLength(MAX_CLIENT_ID_LENGTH);
      const { tenant, created } = await gw.client.tenants.createTenant({ clientId });
      expect(created).toBe(true);
      expect(Buffer.byteLength(tenant!.schema)).toBe(MAX_IDENTIFIER_BYTES);
      // Postgres stored the whole name, not a truncated one.
      const stored = await withPg(
        shardUrl(topology, tenant!.shard),
        async (c) =>
          (
            await c.query<{ nspname: string }>(
              'SELECT nspname FROM pg_namespace WHERE nspname = $1',
              [tenant!.schema],
            )
          ).rows,
      );
      expect(stored).toEqual([{ nspname: tenant!.schema }]);
      const { state } = await gw.client.state.putState({ clientId, document: { long: true } });
      expect(state?.version).toBe(1);
    });

    it('a 55-character client id works too', async () => {
      const clientId = idOfLength(55);
      const { tenant, created } = await gw.client.tenants.createTenant({ clientId });
      expect(created).toBe(true);
      expect(Buffer.byteLength(tenant!.schema)).toBe(62);
    });

    it('an unreachable shard gives UNAVAILABLE and leaves no directory entry', async () => {
      const own = await createTestTopology(1);
      const dead: TestTopology = {
        catalogUrl: own.catalogUrl,
        shards: [{ name: 'dead', url: 'postgres://nobody:secret@127.0.0.1:1/none', weight: 100 }],
      };
      const deadGw = await startTestGateway(dead);
      try {
        const clientId = freshClientId('dead');
        const err = await errorOf(deadGw.client.tenants.createTenant({ clientId }));
        expect(err.code).toBe(Status.UNAVAILABLE);
        expect(err.details).toBe("shard 'dead' is unavailable; retry later");
        expect(err.details).not.toContain('secret');
        expect(await statusOf(deadGw.client.tenants.getTenant({ clientId }))).toBe(
          Status.NOT_FOUND,
        );
        const left = await withPg(
          own.catalogUrl,
          async (c) =>
            (await c.query('SELECT 1 FROM shardgate.tenants WHERE client_id = $1', [clientId]))
              .rowCount,
        );
        expect(left).toBe(0);
      } finally {
        await deadGw.close();
      }
    });
  });

  describe('client id validation', () => {
    const badIds: [string, string][] = [
      ['empty', ''],
      ['uppercase letter', 'A'],
      ['mixed case', 'Acme'],
      ['space', 'acme hvac'],
      ['underscore', 'acme_hvac'],
      ['leading hyphen', '-acme'],
      ['trailing hyphen', 'acme-'],
      ['double hyphen', 'acme--hvac'],
      ['SQL injection', "acme'; drop table x;--"],
      ['double quote', 'acme"'],
      ['non-ASCII letter', 'ácme'],
      ['NUL character', 'acme\u0000'],
      ['one character too long', 'a'.repeat(MAX_CLIENT_ID_LENGTH + 1)],
      ['path traversal', '../etc'],
    ];

    it.each(badIds)('CreateTenant rejects %s with INVALID_ARGUMENT', async (_name, clientId) => {
      expect(await statusOf(gw.client.tenants.createTenant({ clientId }))).toBe(
        Status.INVALID_ARGUMENT,
      );
    });

    it.each(badIds)('GetTenant rejects %s with INVALID_ARGUMENT', async (_name, clientId) => {
      expect(await statusOf(gw.client.tenants.getTenant({ clientId }))).toBe(
        Status.INVALID_ARGUMENT,
      );
    });

    it('rejected creates left nothing in the directory or on the shards', async () => {
      const storable = badIds.map(([, id]) => id).filter((id) => !id.includes('\u0000'));
      const rows = await withPg(
        topology.catalogUrl,
        async (c) =>
          (await c.query('SELECT 1 FROM shardgate.tenants WHERE client_id = ANY($1)', [storable]))
            .rowCount,
      );
      expect(rows).toBe(0);
      for (const s of topology.shards) {
        const odd = await withPg(
          s.url,
          async (c) =>
            (
              await c.query<{ nspname: string }>(
                `SELECT nspname FROM pg_namespace WHERE nspname LIKE 'client%' AND nspname !~ '^client_[a-z0-9_]+$'`,
              )
            ).rows,
        );
        expect(odd).toEqual([]);
      }
    });
  });

  describe('GetTenant', () => {
    it('returns status, shard, schema, version and timestamps', async () => {
      const clientId = freshClientId('get');
      const before = Date.now();
      const created = (await gw.client.tenants.createTenant({ clientId })).tenant!;
      const { tenant } = await gw.client.tenants.getTenant({ clientId });
      expect(tenant).toEqual(created);
      expect(tenant!.status).toBe(TenantStatus.TENANT_STATUS_ACTIVE);
      expect(tenant!.shard).toBe(created.shard);
      expect(tenant!.schema).toBe(`client_${clientId.replaceAll('-', '_')}`);
      expect(tenant!.schemaVersion).toBe(2);
      expect(tenant!.createdAt).toBeInstanceOf(Date);
      expect(tenant!.updatedAt).toBeInstanceOf(Date);
      expect(tenant!.churnedAt).toBeUndefined();
      // Stored at millisecond precision; the server's clock is this machine's.
      expect(tenant!.createdAt!.getTime()).toBeGreaterThanOrEqual(before - 1_000);
      expect(tenant!.createdAt!.getTime()).toBeLessThanOrEqual(Date.now() + 1_000);
      expect(tenant!.updatedAt!.getTime()).toBeGreaterThanOrEqual(tenant!.createdAt!.getTime());
      const row = await withPg(
        topology.catalogUrl,
        async (c) =>
          (
            await c.query<{ shard: string; created_at: Date }>(
              'SELECT shard, created_at FROM shardgate.tenants WHERE client_id = $1',
              [clientId],
            )
          ).rows[0]!,
      );
      expect(row.shard).toBe(tenant!.shard);
      expect(row.created_at.getTime()).toBe(tenant!.createdAt!.getTime());
    });

    it('NOT_FOUND for an unknown client, naming CreateTenant', async () => {
      const err = await errorOf(gw.client.tenants.getTenant({ clientId: freshClientId('nobody') }));
      expect(err.code).toBe(Status.NOT_FOUND);
      expect(err.details).toContain('CreateTenant');
    });
  });

  describe('ChurnTenant and ReactivateTenant', () => {
    it('churn refuses data calls until reactivation, keeps the data, and is idempotent', async () => {
      const clientId = freshClientId('churn');
      await gw.client.tenants.createTenant({ clientId });
      await gw.client.state.putState({ clientId, document: { plan: 'gold', seats: 3 } });

      const churned = (await gw.client.tenants.churnTenant({ clientId })).tenant!;
      expect(churned.status).toBe(TenantStatus.TENANT_STATUS_CHURNED);
      expect(churned.churnedAt).toBeInstanceOf(Date);
      expect((await gw.client.tenants.getTenant({ clientId })).tenant).toEqual(churned);

      const err = await errorOf(gw.client.state.getState({ clientId }));
      expect(err.code).toBe(Status.FAILED_PRECONDITION);
      expect(err.details).toContain('ReactivateTenant');
      expect(
        await statusOf(gw.client.state.putState({ clientId, document: { plan: 'none' } })),
      ).toBe(Status.FAILED_PRECONDITION);
      expect(await statusOf(gw.client.appointments.listAppointments({ clientId }))).toBe(
        Status.FAILED_PRECONDITION,
      );

      const again = (await gw.client.tenants.churnTenant({ clientId })).tenant!;
      expect(again).toEqual(churned);

      const reactivated = (await gw.client.tenants.reactivateTenant({ clientId })).tenant!;
      expect(reactivated.status).toBe(TenantStatus.TENANT_STATUS_ACTIVE);
      expect(reactivated.churnedAt).toBeUndefined();
      expect(reactivated.shard).toBe(churned.shard);
      const { state } = await gw.client.state.getState({ clientId });
      expect(state).toMatchObject({ version: 1, document: { plan: 'gold', seats: 3 } });

      const stillActive = (await gw.client.tenants.reactivateTenant({ clientId })).tenant!;
      expect(stillActive.status).toBe(TenantStatus.TENANT_STATUS_ACTIVE);
      expect(stillActive.updatedAt).toEqual(reactivated.updatedAt);
    });

    it('NOT_FOUND for unknown clients and INVALID_ARGUMENT for bad ids', async () => {
      const clientId = freshClientId('ghost');
      expect(await statusOf(gw.client.tenants.churnTenant({ clientId }))).toBe(Status.NOT_FOUND);
      expect(await statusOf(gw.client.tenants.reactivateTenant({ clientId }))).toBe(
        Status.NOT_FOUND,
      );
      expect(await statusOf(gw.client.tenants.churnTenant({ clientId: 'Bad_Id' }))).toBe(
        Status.INVALID_ARGUMENT,
      );
      expect(await statusOf(gw.client.tenants.reactivateTenant({ clientId: '' }))).toBe(
        Status.INVALID_ARGUMENT,
      );
    });
  });

  describe('ensureClientSchema', () => {
    it('a failing step rolls back the whole schema', async () => {
      const url = topology.shards[0]!.url;
      const db = testDatabase(url);
      const schema = `client_half_${uniqueSuffix()}`;
      try {
        const steps = [
          clientMigrations[0]!,
          { version: 2, name: 'fails', sql: () => 'SELECT 1/0' },
        ];
        await expect(ensureClientSchema(db, schema, { migrations: steps })).rejects.toMatchObject({
          code: 'invalid-argument',
        });
        expect(await schemaCount(url, schema)).toBe(0);
        // Without the failing step the same schema is made from scratch.
        expect(await ensureClientSchema(db, schema, { migrations: [clientMigrations[0]!] })).toBe(
          1,
        );
        expect(await tablesOf(url, schema)).toEqual(
          CLIENT_TABLES.filter((t) => t !== 'request_ids'),
        );
      } finally {
        await withPg(url, (c) => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
        await db.close();
      }
    });
  });
});

describe('ListTenants', () => {
  const total = 23;
  let topology: TestTopology;
  let gw: TestGateway;
  let ids: string[];
  let byId: Map<string, Tenant>;

  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(topology);
    const prefix = `list-${uniqueSuffix()}`;
    ids = Array.from({ length: total }, (_, i) => `${prefix}-${String(i).padStart(2, '0')}`);
    const created = await Promise.all(
      ids.map((clientId) => gw.client.tenants.createTenant({ clientId })),
    );
    byId = new Map(created.map((r) => [r.tenant!.clientId, r.tenant!]));
  });
  afterAll(async () => gw?.close());

  async function collect(filter: { status?: TenantStatus; shard?: string }, pageSize: number) {
    const pages: string[][] = [];
    let pageToken = '';
    do {
      const res = await gw.client.tenants.listTenants({ ...filter, pageSize, pageToken });
      pages.push(res.tenants.map((t) => t.clientId));
      for (const t of res.tenants) expect(t).toEqual(byId.get(t.clientId));
      pageToken = res.nextPageToken;
      expect(pages.length).toBeLessThan(100);
    } while (pageToken !== '');
    return pages;
  }

  it('pages of 5 cover every tenant once, in client_id order', async () => {
    const pages = await collect({}, 5);
    expect(pages.map((p) => p.length)).toEqual([5, 5, 5, 5, 3]);
    expect(pages.flat()).toEqual(ids);
  });

  it('a page size equal to the total returns one page with no token', async () => {
    const res = await gw.client.tenants.listTenants({ pageSize: total });
    expect(res.tenants.map((t) => t.clientId)).toEqual(ids);
    expect(res.nextPageToken).toBe('');
  });

  it('page_size 0 means the default of 50', async () => {
    const res = await gw.client.tenants.listTenants({});
    expect(res.tenants).toHaveLength(total);
    expect(res.nextPageToken).toBe('');
  });

  it('filters by shard', async () => {
    const all: string[] = [];
    for (const s of topology.shards) {
      const got = (await collect({ shard: s.name }, 4)).flat();
      expect(got).toEqual(ids.filter((id) => byId.get(id)!.shard === s.name));
      all.push(...got);
    }
    expect(all.sort()).toEqual(ids);
    expect((await gw.client.tenants.listTenants({ shard: 'shard-9' })).tenants).toEqual([]);
    expect(await statusOf(gw.client.tenants.listTenants({ shard: 'Shard_1' }))).toBe(
      Status.INVALID_ARGUMENT,
    );
  });

  it('filters by status', async () => {
    const toChurn = [ids[1]!, ids[7]!, ids[8]!, ids[22]!];
    for (const clientId of toChurn) {
      byId.set(clientId, (await gw.client.tenants.churnTenant({ clientId })).tenant!);
    }
    try {
      expect((await collect({ status: TenantStatus.TENANT_STATUS_CHURNED }, 3)).flat()).toEqual(
        toChurn,
      );
      expect((await collect({ status: TenantStatus.TENANT_STATUS_ACTIVE }, 5)).flat()).toEqual(
        ids.filter((id) => !toChurn.includes(id)),
      );
      expect(
        (await gw.client.tenants.listTenants({ status: TenantStatus.TENANT_STATUS_PROVISIONING }))
          .tenants,
      ).toEqual([]);
      expect(await statusOf(gw.client.tenants.listTenants({ status: 42 as TenantStatus }))).toBe(
        Status.INVALID_ARGUMENT,
      );
    } finally {
      for (const clientId of toChurn) {
        byId.set(clientId, (await gw.client.tenants.reactivateTenant({ clientId })).tenant!);
      }
    }
  });

  it('a page token reused with different filters is INVALID_ARGUMENT', async () => {
    const first = await gw.client.tenants.listTenants({ pageSize: 5 });
    expect(first.nextPageToken).not.toBe('');
    const pageToken = first.nextPageToken;
    expect(
      await statusOf(gw.client.tenants.listTenants({ pageSize: 5, pageToken, shard: 'shard-1' })),
    ).toBe(Status.INVALID_ARGUMENT);
    expect(
      await statusOf(
        gw.client.tenants.listTenants({
          pageSize: 5,
          pageToken,
          status: TenantStatus.TENANT_STATUS_ACTIVE,
        }),
      ),
    ).toBe(Status.INVALID_ARGUMENT);
    // The same filters with another page size are fine (AIP-158).
    const next = await gw.client.tenants.listTenants({ pageSize: 2, pageToken });
    expect(next.tenants.map((t) => t.clientId)).toEqual(ids.slice(5, 7));
  });

  it.each([
    ['garbage', 'not a token!'],
    ['base64 of non-JSON', Buffer.from('hello').toString('base64url')],
    ['JSON without a cursor', Buffer.from('{}').toString('base64url')],
    [
      'cursor of the wrong type',
      Buffer.from(JSON.stringify({ f: 'x', c: [{}] })).toString('base64url'),
    ],
  ])('a %s page token is INVALID_ARGUMENT', async (_name, pageToken) => {
    expect(await statusOf(gw.client.tenants.listTenants({ pageToken }))).toBe(
      Status.INVALID_ARGUMENT,
    );
  });

  it('a negative page_size is INVALID_ARGUMENT', async () => {
    expect(await statusOf(gw.client.tenants.listTenants({ pageSize: -1 }))).toBe(
      Status.INVALID_ARGUMENT,
    );
  });
});
