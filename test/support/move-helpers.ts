import type { ShardgateClient } from '../../src/client/index.js';
import type { Failpoints } from '../../src/core/failpoints.js';
import type { Move } from '../../src/gen/shardgate/v1/admin.js';
import { startTestGateway, withPg, type TestGateway, type TestTopology } from './harness.js';

/** Runs MoveTenant to its end and returns every progress message. */
export async function moveTo(
  client: ShardgateClient,
  clientId: string,
  toShard: string,
): Promise<Move[]> {
  const seen: Move[] = [];
  for await (const { move } of client.admin.moveTenant({ clientId, toShard })) seen.push(move!);
  return seen;
}

export { eventually } from './harness.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The URL of a shard of the topology (or of extra shards added by a test). */
export function shardUrl(
  topology: TestTopology,
  shard: string,
  extra: Record<string, string> = {},
): string {
  const url = topology.shards.find((s) => s.name === shard)?.url ?? extra[shard];
  if (!url) throw new Error(`no shard ${shard} in the topology`);
  return url;
}

/** Publications, subscriptions and replication slots of moves (`sg_move_%`) left in a database. */
export async function replicationLeftovers(
  url: string,
): Promise<{ pubs: string[]; subs: string[]; slots: string[] }> {
  return withPg(url, async (c) => {
    const names = async (sql: string): Promise<string[]> =>
      (await c.query<{ n: string }>(sql)).rows.map((r) => r.n);
    return {
      pubs: await names(
        `SELECT pubname AS n FROM pg_publication WHERE pubname LIKE 'sg\\_move\\_%'`,
      ),
      // pg_subscription is cluster-wide: only this database's subscriptions count here.
      subs: await names(
        `SELECT subname AS n FROM pg_subscription
         WHERE subname LIKE 'sg\\_move\\_%' AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      ),
      slots: await names(
        `SELECT slot_name AS n FROM pg_replication_slots
         WHERE slot_name LIKE 'sg\\_move\\_%' AND database = current_database()`,
      ),
    };
  });
}

/** Client schemas (`client_%`) present in a shard database. */
export async function clientSchemasIn(url: string): Promise<string[]> {
  return withPg(url, async (c) => {
    const res = await c.query<{ n: string }>(
      `SELECT nspname AS n FROM pg_namespace WHERE nspname LIKE 'client\\_%' ORDER BY nspname`,
    );
    return res.rows.map((r) => r.n);
  });
}

/** The catalog's directory: schema → shard, and whether any client's writes are paused. */
export async function catalogPlacements(
  catalogUrl: string,
): Promise<{ clientId: string; schema: string; shard: string; writesPaused: boolean }[]> {
  return withPg(catalogUrl, async (c) => {
    const res = await c.query<{
      clientId: string;
      schema: string;
      shard: string;
      writesPaused: boolean;
    }>(
      `SELECT client_id AS "clientId", schema_name AS schema, shard, writes_paused AS "writesPaused"
       FROM shardgate.tenants ORDER BY client_id`,
    );
    return res.rows;
  });
}

/**
 * Every shard holds exactly the client schemas the catalog places on it, and no database holds
 * a move's publication, subscription or slot. Returns the differences (empty when clean).
 */
export async function strayState(
  catalogUrl: string,
  shards: readonly { name: string; url: string }[],
): Promise<string[]> {
  const placements = await catalogPlacements(catalogUrl);
  const problems: string[] = [];
  for (const p of placements) if (p.writesPaused) problems.push(`${p.clientId}: writes_paused`);
  for (const shard of shards) {
    const owned = new Set(placements.filter((p) => p.shard === shard.name).map((p) => p.schema));
    const present = new Set(await clientSchemasIn(shard.url));
    for (const s of present) if (!owned.has(s)) problems.push(`${shard.name}: stray schema ${s}`);
    for (const s of owned) if (!present.has(s)) problems.push(`${shard.name}: missing schema ${s}`);
    const left = await replicationLeftovers(shard.url);
    for (const [kind, names] of Object.entries(left)) {
      for (const n of names) problems.push(`${shard.name}: leftover ${kind} ${n}`);
    }
  }
  return problems;
}

/** Row count of one table of a client schema, straight from the shard. */
export async function countRows(url: string, schema: string, table: string): Promise<number> {
  return withPg(url, async (c) => {
    const res = await c.query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}"."${table}"`);
    return Number(res.rows[0]!.n);
  });
}

/** The ids of a table's rows, straight from the shard. */
export async function idsIn(url: string, schema: string, table: string): Promise<string[]> {
  return withPg(url, async (c) => {
    const res = await c.query<{ id: string }>(
      `SELECT id::text AS id FROM "${schema}"."${table}" ORDER BY id`,
    );
    return res.rows.map((r) => r.id);
  });
}

/** A new appointment for `clientId`, valid in every field. */
export function appointmentInput(clientId: string, n: number) {
  return {
    clientId,
    appointment: {
      id: '',
      clientPhone: '555-0100',
      scheduledAt: new Date(1_800_000_000_000 + n * 60_000),
      serviceType: `service ${n}`,
      status: 0,
    },
  };
}

/** A new handoff for `clientId`. */
export function handoffInput(clientId: string, n: number) {
  return {
    clientId,
    handoff: { id: '', fromAgent: 'intake', toAgent: 'dispatch', version: n, summary: { n } },
  };
}

/** Like startTestGateway, with failure points the test arms and disarms in-process. */
export async function startGatewayWithFailpoints(
  topology: TestTopology,
  failpoints: Failpoints,
): Promise<TestGateway> {
  return startTestGateway(topology, {}, { failpoints });
}
