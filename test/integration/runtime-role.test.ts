import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { configSchema } from '../../src/core/config.js';
import { isShardgateError } from '../../src/core/errors.js';
import { checkDatabaseRoles } from '../../src/pg/role-check.js';
import {
  adminUrlOf,
  createDatabase,
  createTestTopology,
  errorOf,
  freshClientId,
  startTestGateway,
  uniqueSuffix,
  withPg,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';

/** A logger that keeps the messages of its warnings. */
function warnings(): { warn: (obj: object, msg: string) => void; seen: string[] } {
  const seen: string[] = [];
  return { seen, warn: (_obj: object, msg: string) => void seen.push(msg) };
}

const config = configSchema.parse({});

/** The SQLSTATE a statement fails with, or 'ok'. */
async function sqlStateOf(url: string, sql: string): Promise<string> {
  return withPg(url, async (c) => {
    try {
      await c.query(sql);
      return 'ok';
    } catch (err) {
      if (err instanceof pg.DatabaseError) return err.code ?? 'no code';
      throw err;
    }
  });
}

describe("the gateway's runtime role", () => {
  let topology: TestTopology;
  let gw: TestGateway;
  beforeAll(async () => {
    topology = await createTestTopology();
    gw = await startTestGateway(topology);
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('is not a superuser and cannot CREATE in public on the catalog and every shard', async () => {
    const clientId = freshClientId('role');
    await gw.client.tenants.createTenant({ clientId });
    for (const url of [topology.catalogUrl, ...topology.shards.map((s) => s.url)]) {
      const role = await withPg(url, async (c) =>
        (
          await c.query<{ me: string; superuser: boolean }>(
            'SELECT current_user AS me, rolsuper AS superuser FROM pg_roles WHERE rolname = current_user',
          )
        ).rows.at(0),
      );
      expect(role).toEqual({ me: 'shardgate', superuser: false });
      expect(await sqlStateOf(url, 'CREATE TABLE public.planted (id int)')).toBe('42501');
      expect(
        await sqlStateOf(
          url,
          'CREATE FUNCTION public.now() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
        ),
      ).toBe('42501');
      // Nobody else may either: CREATE on public is revoked from PUBLIC.
      const open = await withPg(adminUrlOf(url), async (c) =>
        (
          await c.query<{ open: boolean }>(
            `SELECT has_schema_privilege('public', 'public', 'CREATE') AS open`,
          )
        ).rows.at(0),
      );
      expect(open).toEqual({ open: false });
    }
    // What the gateway made is the role's own: the client's schema and the catalog.
    const owners = await withPg(topology.catalogUrl, async (c) =>
      (
        await c.query<{ owner: string }>(
          `SELECT nspowner::regrole::text AS owner FROM pg_namespace WHERE nspname = 'shardgate'`,
        )
      ).rows.map((r) => r.owner),
    );
    expect(owners).toEqual(['shardgate']);
  });

  it('a superuser connection is refused at start-up before anything is created, naming the flag', async () => {
    const [catalogServer] = inject('pgServers');
    const catalogUrl = adminUrlOf(
      await createDatabase(catalogServer!.adminUrl, `t_${uniqueSuffix()}_su`),
    );
    const err: unknown = await startTestGateway({ catalogUrl, shards: [] }).catch(
      (e: unknown) => e,
    );
    expect(isShardgateError(err, 'failed-precondition')).toBe(true);
    expect((err as Error).message).toMatch(
      /^the catalog is reached as role "postgres", a superuser, .* set database\.allowSuperuser to true/,
    );
    const schema = await withPg(
      catalogUrl,
      async (c) =>
        (await c.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'shardgate'`)).rowCount,
    );
    expect(schema).toBe(0);

    const allowed = await startTestGateway(
      { catalogUrl, shards: [] },
      { database: { allowSuperuser: true } },
    );
    await allowed.close();
  });

  it('a superuser shard is refused at start-up and by AddShard', async () => {
    const shard = topology.shards[0]!;
    const err: unknown = await startTestGateway({
      catalogUrl: await createDatabase(inject('pgServers')[0]!.adminUrl, `t_${uniqueSuffix()}_c`),
      shards: [{ ...shard, url: adminUrlOf(shard.url) }],
    }).catch((e: unknown) => e);
    expect(isShardgateError(err, 'failed-precondition')).toBe(true);
    expect((err as Error).message).toContain(`shard '${shard.name}' is reached as role "postgres"`);

    const dsn = adminUrlOf(
      await createDatabase(inject('pgServers')[3]!.adminUrl, `t_${uniqueSuffix()}_su`),
    );
    const added = await errorOf(gw.client.admin.addShard({ name: 'shard-su', dsn, weight: 100 }));
    expect(added.code).toBe(Status.FAILED_PRECONDITION);
    expect(added.details).toContain('the new shard is reached as role "postgres", a superuser');
    expect(added.details).not.toContain(new URL(dsn).password);
    const { shards } = await gw.client.admin.getTopology({});
    expect(shards.map((s) => s.name)).not.toContain('shard-su');
  });

  it('revokes CREATE on public from everyone where it owns the schema, and says so where it cannot', async () => {
    const server = inject('pgServers')[1]!;
    // A database the runtime role owns: `public` belongs to pg_database_owner, so to the role.
    const ownedName = `t_${uniqueSuffix()}_owned`;
    const owned = await createDatabase(server.adminUrl, ownedName);
    await withPg(adminUrlOf(owned), async (c) => {
      await c.query(`ALTER DATABASE ${ownedName} OWNER TO shardgate`);
      await c.query('GRANT CREATE ON SCHEMA public TO PUBLIC');
    });
    // A database the superuser owns, where someone opened `public` again.
    const foreign = await createDatabase(server.adminUrl, `t_${uniqueSuffix()}_open`);
    await withPg(adminUrlOf(foreign), (c) => c.query('GRANT CREATE ON SCHEMA public TO PUBLIC'));

    const log = warnings();
    await checkDatabaseRoles(
      [
        { url: owned, label: 'the owned database' },
        { url: foreign, label: 'the open database' },
      ],
      config,
      log,
    );
    const openTo = (url: string): Promise<boolean> =>
      withPg(
        adminUrlOf(url),
        async (c) =>
          (
            await c.query<{ open: boolean }>(
              `SELECT has_schema_privilege('public', 'public', 'CREATE') AS open`,
            )
          ).rows[0]!.open,
      );
    expect(await openTo(owned)).toBe(false);
    expect(await openTo(foreign)).toBe(true);
    expect(log.seen).toHaveLength(2);
    expect(log.seen).toContainEqual(
      expect.stringMatching(/^role "shardgate" may CREATE in schema public of the owned database/),
    );
    expect(log.seen).toContainEqual(
      expect.stringMatching(
        /^every role may CREATE in schema public of the open database; .* REVOKE CREATE ON SCHEMA public FROM PUBLIC/,
      ),
    );
  });

  it('warns that moves will fail on a shard whose role lacks replication privileges', async () => {
    const server = inject('pgServers')[2]!;
    const role = `sg_nomove_${uniqueSuffix()}`;
    const url = await createDatabase(server.adminUrl, `t_${uniqueSuffix()}_nomove`);
    await withPg(adminUrlOf(url), async (c) => {
      await c.query(`CREATE ROLE ${role} LOGIN PASSWORD 'nomove'`);
      await c.query(`GRANT CONNECT ON DATABASE ${new URL(url).pathname.slice(1)} TO ${role}`);
    });
    try {
      const u = new URL(url);
      u.username = role;
      u.password = 'nomove';
      const log = warnings();
      await checkDatabaseRoles(
        [{ url: u.toString(), label: "shard 'weak'", shard: true }],
        config,
        log,
      );
      expect(log.seen).toEqual([
        `online moves to and from shard 'weak' will fail: role "${role}" lacks the REPLICATION ` +
          'attribute, membership in pg_create_subscription, EXECUTE on ' +
          'pg_replication_origin_progress(text, boolean), CREATE on the database ' +
          '(docs/database-roles.md)',
      ]);
      // The runtime role has all of it: no warning at all.
      const quiet = warnings();
      await checkDatabaseRoles([{ url, label: "shard 'strong'", shard: true }], config, quiet);
      expect(quiet.seen).toEqual([]);
    } finally {
      await withPg(adminUrlOf(url), async (c) => {
        await c.query(`DROP OWNED BY ${role}`);
        await c.query(`DROP ROLE ${role}`);
      });
    }
  });
});
