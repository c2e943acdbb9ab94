import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardName } from '../../src/core/ids.js';
import { MoveState } from '../../src/gen/shardgate/v1/admin.js';
import { TenantStatus, type Tenant } from '../../src/gen/shardgate/v1/tenant.js';
import { migrateClientSchemas } from '../../src/jobs/schema-migrator.js';
import { clientMigrations, type ClientMigration } from '../../src/shards/client-migrations.js';
import {
  createTestTopology,
  eventually,
  freshClientId,
  startTestGateway,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';
import { moveTo } from '../support/move-helpers.js';

const addNotes: ClientMigration = {
  version: 3,
  name: 'appointment notes',
  sql: (s) => `ALTER TABLE ${s}.appointments ADD COLUMN notes text`,
};

describe('migrateClientSchemas', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  let tenants: Tenant[];

  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(topology);
    tenants = [];
    for (const name of ['mig-a', 'mig-b', 'mig-c']) {
      tenants.push(
        (await gw.client.tenants.createTenant({ clientId: freshClientId(name) })).tenant!,
      );
    }
    // One of them churned: its schema still evolves with the others.
    await gw.client.tenants.churnTenant({ clientId: tenants[2]!.clientId });
  });
  afterAll(async () => gw?.close());

  const shards = (): ShardName[] => topology.shards.map((s) => s.name as ShardName);
  const urlOf = (t: Tenant): string => topology.shards.find((s) => s.name === t.shard)!.url;

  async function hasNotes(t: Tenant): Promise<boolean> {
    return withPg(urlOf(t), async (c) => {
      const res = await c.query(
        `SELECT 1 FROM information_schema.columns
         WHERE table_schema = $1 AND table_name = 'appointments' AND column_name = 'notes'`,
        [t.schema],
      );
      return res.rowCount === 1;
    });
  }

  async function versionsOf(t: Tenant): Promise<{ version: number; name: string }[]> {
    return withPg(
      urlOf(t),
      async (c) =>
        (
          await c.query<{ version: number; name: string }>(
            `SELECT version, name FROM "${t.schema}".schema_migrations ORDER BY version`,
          )
        ).rows,
    );
  }

  it('brings every schema to the new version, records it, and a second run does nothing', async () => {
    const ids = tenants.map((t) => t.clientId).sort();
    const { context } = gw.gateway;
    const migrations = [...clientMigrations, addNotes];

    const report = await migrateClientSchemas({
      catalog: context.catalog,
      pools: context.pools,
      shards: shards(),
      migrations,
    });
    expect(report.failed).toEqual([]);
    expect([...report.migrated].sort()).toEqual(ids);

    for (const t of tenants) {
      expect(await hasNotes(t)).toBe(true);
      expect(await versionsOf(t)).toEqual([
        { version: 1, name: 'appointments, handoffs, state' },
        { version: 2, name: 'request ids' },
        { version: 3, name: 'appointment notes' },
      ]);
      const { tenant } = await gw.client.tenants.getTenant({ clientId: t.clientId });
      expect(tenant!.schemaVersion).toBe(3);
    }
    // The churned tenant stayed churned; the others still serve, on the new table shape.
    expect(
      (await gw.client.tenants.getTenant({ clientId: tenants[2]!.clientId })).tenant!.status,
    ).toBe(TenantStatus.TENANT_STATUS_CHURNED);
    expect(
      (await gw.client.appointments.listAppointments({ clientId: tenants[0]!.clientId }))
        .appointments,
    ).toEqual([]);

    const again = await migrateClientSchemas({
      catalog: context.catalog,
      pools: context.pools,
      shards: shards(),
      migrations,
    });
    expect(again).toEqual({ migrated: [], failed: [] });
  });

  it('a schema whose step fails is reported and skipped; the others migrate', async () => {
    const { context } = gw.gateway;
    const broken = tenants[1]!;
    const addTags: ClientMigration = {
      version: 4,
      name: 'appointment tags',
      sql: (s) =>
        s === `"${broken.schema}"`
          ? 'SELECT 1/0'
          : `ALTER TABLE ${s}.appointments ADD COLUMN tags text[] NOT NULL DEFAULT '{}'`,
    };
    const migrations = [...clientMigrations, addNotes, addTags];

    const report = await migrateClientSchemas({
      catalog: context.catalog,
      pools: context.pools,
      shards: shards(),
      migrations,
    });
    expect([...report.migrated].sort()).toEqual(
      [tenants[0]!.clientId, tenants[2]!.clientId].sort(),
    );
    expect(report.failed).toHaveLength(1);
    expect(report.failed[0]!.clientId).toBe(broken.clientId);
    expect(report.failed[0]!.error).toContain('division by zero');

    expect((await versionsOf(broken)).map((v) => v.version)).toEqual([1, 2, 3]);
    expect(
      (await gw.client.tenants.getTenant({ clientId: broken.clientId })).tenant!.schemaVersion,
    ).toBe(3);
    for (const t of [tenants[0]!, tenants[2]!]) {
      expect((await versionsOf(t)).map((v) => v.version)).toEqual([1, 2, 3, 4]);
      expect(
        (await gw.client.tenants.getTenant({ clientId: t.clientId })).tenant!.schemaVersion,
      ).toBe(4);
    }

    // A run with the step fixed picks up only the one that lagged.
    const fixed: ClientMigration = {
      ...addTags,
      sql: (s) => `ALTER TABLE ${s}.appointments ADD COLUMN tags text[]`,
    };
    const retry = await migrateClientSchemas({
      catalog: context.catalog,
      pools: context.pools,
      shards: shards(),
      migrations: [...clientMigrations, addNotes, fixed],
    });
    expect(retry).toEqual({ migrated: [broken.clientId], failed: [] });
    expect(
      (await gw.client.tenants.getTenant({ clientId: broken.clientId })).tenant!.schemaVersion,
    ).toBe(4);
  });
});

describe('client migration v2 (request ids) on schemas made before it', () => {
  let topology: TestTopology;
  let gw: TestGateway;

  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(topology);
  });
  afterAll(async () => {
    await gw?.gateway.context.mover.idle();
    await gw?.close();
  });

  const urlOf = (shard: string): string => topology.shards.find((s) => s.name === shard)!.url;

  /** A tenant whose schema and directory entry are as a gateway before v2 left them. */
  async function tenantAtV1(): Promise<Tenant> {
    const clientId = freshClientId('pre-v2');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    await withPg(urlOf(tenant!.shard), (c) =>
      c.query(`DROP TABLE "${tenant!.schema}".request_ids;
               DELETE FROM "${tenant!.schema}".schema_migrations WHERE version = 2`),
    );
    await withPg(topology.catalogUrl, (c) =>
      c.query(`UPDATE shardgate.tenants SET schema_version = 1 WHERE client_id = $1`, [clientId]),
    );
    return tenant!;
  }

  async function schemaState(
    t: Tenant,
    shard = t.shard,
  ): Promise<{ versions: number[]; hasRequestIds: boolean }> {
    return withPg(urlOf(shard), async (c) => {
      const versions = await c.query<{ version: number }>(
        `SELECT version FROM "${t.schema}".schema_migrations ORDER BY version`,
      );
      const table = await c.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [
        `"${t.schema}".request_ids`,
      ]);
      return { versions: versions.rows.map((r) => r.version), hasRequestIds: table.rows[0]!.ok };
    });
  }

  const catalogVersion = async (t: Tenant): Promise<number> =>
    (await gw.client.tenants.getTenant({ clientId: t.clientId })).tenant!.schemaVersion;

  const create = (t: Tenant, requestId: string) =>
    gw.client.appointments.createAppointment({
      clientId: t.clientId,
      requestId,
      appointment: {
        clientPhone: '555-0100',
        scheduledAt: new Date(1_900_000_000_000),
        serviceType: 'x',
      },
    });

  it('the migrator brings it to v2 and records the version', async () => {
    const t = await tenantAtV1();
    expect(await schemaState(t)).toEqual({ versions: [1], hasRequestIds: false });
    const { context } = gw.gateway;
    const report = await migrateClientSchemas({
      catalog: context.catalog,
      pools: context.pools,
      shards: topology.shards.map((s) => s.name as ShardName),
    });
    expect(report).toEqual({ migrated: [t.clientId], failed: [] });
    expect(await schemaState(t)).toEqual({ versions: [1, 2], hasRequestIds: true });
    expect(await catalogVersion(t)).toBe(2);
  });

  it('an unkeyed create leaves it at v1; keyed creates at once upgrade it on demand and dedup', async () => {
    const t = await tenantAtV1();
    await create(t, '');
    expect(await schemaState(t)).toEqual({ versions: [1], hasRequestIds: false });

    const requestId = randomUUID();
    const responses = await Promise.all(Array.from({ length: 8 }, () => create(t, requestId)));
    for (const r of responses) expect(r).toEqual(responses[0]);
    expect(await schemaState(t)).toEqual({ versions: [1, 2], hasRequestIds: true });
    const listed = await gw.client.appointments.listAppointments({ clientId: t.clientId });
    expect(listed.appointments).toHaveLength(2);
    await eventually(async () => expect(await catalogVersion(t)).toBe(2));
  });

  it('a move of a schema still at v1 brings it over at v2, keys included', async () => {
    const t = await tenantAtV1();
    const to = topology.shards.find((s) => s.name !== t.shard)!.name;
    const progress = await moveTo(gw.client, t.clientId, to);
    expect(progress.at(-1)!.state).toBe(MoveState.MOVE_STATE_SUCCEEDED);
    expect(await schemaState(t, to)).toEqual({ versions: [1, 2], hasRequestIds: true });
    const requestId = randomUUID();
    const first = await create(t, requestId);
    expect(await create(t, requestId)).toEqual(first);
  });
});
