/**
 * Data for `npm run bench:moves`: tenants are created through the gateway (schema DDL and the
 * catalog entry, as in production); their rows are written with direct SQL on the shard, which
 * seeds 100,000 rows in about a second where gRPC calls would take minutes.
 */
import pg from 'pg';
import { createShardgateClient } from '../src/client/index.js';

/** A created tenant: where it lives. */
export interface SeededClient {
  clientId: string;
  shard: string;
  /** Unquoted schema name, e.g. `client_move_big`. */
  schema: string;
}

/** Creates the tenants through CreateTenant, `concurrency` at a time (each one is DDL on a shard). */
export async function createClients(
  address: string,
  ids: readonly string[],
  concurrency = 4,
  onProgress?: (done: number) => void,
): Promise<SeededClient[]> {
  const sg = createShardgateClient({ address, defaultDeadlineMs: 60_000 });
  const out: SeededClient[] = new Array<SeededClient>(ids.length);
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < ids.length) {
      const index = next++;
      const { tenant } = await sg.tenants.createTenant({ clientId: ids[index]! });
      if (!tenant) throw new Error(`CreateTenant returned no tenant for ${ids[index]}`);
      out[index] = { clientId: tenant.clientId, shard: tenant.shard, schema: tenant.schema };
      if (++done % 100 === 0) onProgress?.(done);
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    sg.close();
  }
  return out;
}

/** Runs `fn` on one connection to `url`, closed afterwards. */
export async function withPg<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined); // a dropped connection fails the pending query instead
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** INSERTs that give one schema `appointments` + `handoffs` rows (the state row already exists). */
function rowsSql(schema: string, appointments: number, handoffs: number): string {
  const s = pg.escapeIdentifier(schema);
  return `
    INSERT INTO ${s}.appointments (client_phone, scheduled_at, service_type, status)
      SELECT '+1 555 ' || lpad((g % 10000)::text, 4, '0'),
             timestamptz '2030-01-14 09:00Z' + g * interval '1 hour',
             CASE WHEN g % 2 = 0 THEN 'furnace-repair' ELSE 'duct-cleaning' END,
             'scheduled'
      FROM generate_series(1, ${appointments}) g;
    INSERT INTO ${s}.handoffs (from_agent, to_agent, version, summary)
      SELECT 'intake-agent', 'dispatch-agent', 1,
             jsonb_build_object('seed', g, 'notes', 'Furnace short-cycles; filter replaced last spring.')
      FROM generate_series(1, ${handoffs}) g;`;
}

/**
 * Gives a client exactly `totalRows` rows (60 % appointments, the rest handoffs, plus its state
 * row), then ANALYZEs its tables so the move's size estimate is right. The handoff insert trigger
 * (a NOTIFY per row) is skipped: nobody watches these seed rows.
 */
export async function seedClientRows(
  url: string,
  schema: string,
  totalRows: number,
): Promise<void> {
  const appointments = Math.round((totalRows - 1) * 0.6);
  const handoffs = totalRows - 1 - appointments;
  const s = pg.escapeIdentifier(schema);
  await withPg(url, async (c) => {
    // The gateway's role owns the client's tables, so it may switch their triggers off for the
    // seed (session_replication_role would need a superuser); the transaction switches them back.
    await c.query('BEGIN');
    await c.query(`ALTER TABLE ${s}.handoffs DISABLE TRIGGER USER`);
    await c.query(rowsSql(schema, appointments, handoffs));
    await c.query(`ALTER TABLE ${s}.handoffs ENABLE TRIGGER USER`);
    await c.query('COMMIT');
    await c.query(`ANALYZE ${s}.appointments, ${s}.handoffs, ${s}.state`);
  });
}

/** Gives every client schema on a shard whose name starts with `prefix` a few rows, in one go. */
export async function seedFewRowsEach(
  url: string,
  prefix: string,
  appointments: number,
  handoffs: number,
): Promise<void> {
  // One format() template for every schema: % doubled, the schema as %1$I, quotes doubled.
  const body = rowsSql('schema_token', appointments, handoffs)
    .replaceAll('%', '%%')
    .replaceAll('"schema_token"', '%1$I')
    .replaceAll("'", "''");
  // A few handoffs per client: their insert trigger's NOTIFY costs nothing worth skipping.
  await withPg(url, async (c) => {
    await c.query('BEGIN');
    await c.query(`DO $$
      DECLARE s text;
      BEGIN
        FOR s IN SELECT nspname FROM pg_namespace WHERE starts_with(nspname, ${pg.escapeLiteral(prefix)}) LOOP
          EXECUTE format('${body}', s);
        END LOOP;
      END $$`);
    await c.query('COMMIT');
  });
}

/** Exact number of rows in every table of a schema. */
export async function exactRows(url: string, schema: string): Promise<number> {
  const s = pg.escapeIdentifier(schema);
  return withPg(url, async (c) => {
    const res = await c.query<{ n: string }>(
      `SELECT (SELECT count(*) FROM ${s}.appointments) + (SELECT count(*) FROM ${s}.handoffs)
            + (SELECT count(*) FROM ${s}.state) AS n`,
    );
    return Number(res.rows[0]!.n);
  });
}
