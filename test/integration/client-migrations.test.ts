import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardName } from '../../src/core/ids.js';
import { TenantStatus, type Tenant } from '../../src/gen/shardgate/v1/tenant.js';
import { migrateClientSchemas } from '../../src/jobs/schema-migrator.js';
import { clientMigrations, type ClientMigration } from '../../src/shards/client-migrations.js';
import {
  createTestTopology,
  freshClientId,
  startTestGateway,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

const addNotes: ClientMigration = {
  version: 2,
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
        { version: 2, name: 'appointment notes' },
      ]);
      const { tenant } = await gw.client.tenants.getTenant({ clientId: t.clientId });
      expect(tenant!.schemaVersion).toBe(2);
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
      version: 3,
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

    expect((await versionsOf(broken)).map((v) => v.version)).toEqual([1, 2]);
    expect(
      (await gw.client.tenants.getTenant({ clientId: broken.clientId })).tenant!.schemaVersion,
    ).toBe(2);
    for (const t of [tenants[0]!, tenants[2]!]) {
      expect((await versionsOf(t)).map((v) => v.version)).toEqual([1, 2, 3]);
      expect(
        (await gw.client.tenants.getTenant({ clientId: t.clientId })).tenant!.schemaVersion,
      ).toBe(3);
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
    ).toBe(3);
  });
});
