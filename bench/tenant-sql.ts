/**
 * The gateway's own SQL for one bench tenant, captured from its typed queries without running them,
 * so direct pg (b) and the thin proxy send exactly what shardgate sends.
 */
import type { Database } from '../src/pg/database.js';
import { singleReadSql, type PointReadSpec } from '../src/pg/point-reads.js';
import { appointments } from '../src/shards/appointments.js';
import { quoteSchema } from '../src/shards/client-schema.js';
import type { BenchTenant } from './protocol.js';

/** The statement and parameters one of the gateway's typed queries sends, captured unrun. */
async function captureSql(
  run: (db: Database) => Promise<unknown>,
): Promise<{ text: string; values: unknown[] }> {
  let captured: { text: string; values: unknown[] } | undefined;
  const recorder = {
    query: (text: string, values: unknown[] = []) => {
      captured = { text, values };
      return Promise.resolve({ rows: [{}] });
    },
    // A lone point read's statement: what (b) sends for every GetAppointment.
    readById: (spec: PointReadSpec, schema: string, id: string) => {
      captured = { text: singleReadSql(spec, schema), values: [id] };
      return Promise.resolve({});
    },
  };
  await run(recorder as unknown as Database);
  if (!captured) throw new Error('the typed query sent no statement');
  return captured;
}

/** The gateway's exact GetAppointment SELECT and CreateAppointment INSERT for one tenant. */
export async function tenantSql(t: BenchTenant): Promise<{ get: string; insert: string }> {
  const schema = quoteSchema(t.schema);
  const get = await captureSql((db) => appointments.get(db, schema, 'x'));
  const insert = await captureSql((db) =>
    appointments.create(db, schema, {
      clientPhone: 'x',
      scheduledAt: new Date(),
      serviceType: 'x',
      status: 'scheduled',
    }),
  );
  return { get: get.text, insert: insert.text };
}
