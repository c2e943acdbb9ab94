import { randomUUID } from 'node:crypto';
import type { Database } from '../pg/database.js';
import { insertRows, type RequestKey } from '../pg/insert-once.js';
import type { PointReadSpec } from '../pg/point-reads.js';
import type { AppointmentStatus } from './client-migrations.js';

/** An appointment as stored in a client schema. */
export interface AppointmentRecord {
  id: string;
  clientPhone: string;
  scheduledAt: Date;
  serviceType: string;
  status: AppointmentStatus;
  createdAt: Date;
  updatedAt: Date;
}

/** The fields a caller may set. */
export interface AppointmentFields {
  clientPhone: string;
  scheduledAt: Date;
  serviceType: string;
  status: AppointmentStatus;
}

/** Filters and keyset position for listing in (scheduled_at, id) order. */
export interface AppointmentQuery {
  scheduledAfter?: Date;
  scheduledBefore?: Date;
  statuses?: readonly AppointmentStatus[];
  after?: { scheduledAt: Date; id: string };
  limit: number;
}

const COLUMNS = `id, client_phone AS "clientPhone", scheduled_at AS "scheduledAt",
  service_type AS "serviceType", status, created_at AS "createdAt", updated_at AS "updatedAt"`;

/** GetAppointment's read: coalesced with concurrent ones on the same shard (Database.readById). */
const BY_ID: PointReadSpec = { table: 'appointments', columns: COLUMNS };

const COLUMN_OF: Record<keyof AppointmentFields, string> = {
  clientPhone: 'client_phone',
  scheduledAt: 'scheduled_at',
  serviceType: 'service_type',
  status: 'status',
};

/** Typed queries on `<schema>.appointments`; `schema` is always the quoted identifier. */
export const appointments = {
  /** With a request key, a retry returns the first call's appointment instead of a second one. */
  async create(
    db: Database,
    schema: string,
    f: AppointmentFields,
    signal?: AbortSignal,
    key?: RequestKey,
  ): Promise<AppointmentRecord> {
    if (key) return (await appointments.createMany(db, schema, [f], signal, key))[0]!;
    const res = await db.query<AppointmentRecord>(
      `INSERT INTO ${schema}.appointments (client_phone, scheduled_at, service_type, status)
       VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
      [f.clientPhone, f.scheduledAt, f.serviceType, f.status],
      signal,
    );
    return res.rows[0]!;
  },

  /**
   * Inserts many in one statement (ids made here, so the answer keeps the request's order); the
   * statement is atomic, so either every row is stored or none. With a request key the claim of
   * the key is part of that statement (src/pg/insert-once.ts).
   */
  async createMany(
    db: Database,
    schema: string,
    items: readonly AppointmentFields[],
    signal?: AbortSignal,
    key?: RequestKey,
  ): Promise<AppointmentRecord[]> {
    const ids = items.map(() => randomUUID());
    const insert = (guard: string): string =>
      `INSERT INTO ${schema}.appointments (id, client_phone, scheduled_at, service_type, status)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[])
       WHERE ${guard} RETURNING ${COLUMNS}`;
    const values = [
      ids,
      items.map((f) => f.clientPhone),
      items.map((f) => f.scheduledAt),
      items.map((f) => f.serviceType),
      items.map((f) => f.status),
    ];
    return insertRows<AppointmentRecord>(
      db,
      key,
      {
        keysTable: `${schema}.request_ids`,
        table: `${schema}.appointments`,
        columns: COLUMNS,
        ids,
        insert,
        values,
      },
      signal,
    );
  },

  async get(
    db: Database,
    schema: string,
    id: string,
    signal?: AbortSignal,
  ): Promise<AppointmentRecord | undefined> {
    return db.readById<AppointmentRecord>(BY_ID, schema, id, signal);
  },

  /**
   * The appointments among `ids` (distinct lower-case UUIDs) that exist, in no particular order:
   * one statement whatever the count.
   */
  async getMany(
    db: Database,
    schema: string,
    ids: readonly string[],
    signal?: AbortSignal,
  ): Promise<AppointmentRecord[]> {
    const res = await db.query<AppointmentRecord>(
      `SELECT ${COLUMNS} FROM ${schema}.appointments WHERE id = ANY($1::uuid[])`,
      [ids],
      signal,
    );
    return res.rows;
  },

  async list(
    db: Database,
    schema: string,
    q: AppointmentQuery,
    signal?: AbortSignal,
  ): Promise<AppointmentRecord[]> {
    const res = await db.query<AppointmentRecord>(
      `SELECT ${COLUMNS} FROM ${schema}.appointments
       WHERE ($1::timestamptz IS NULL OR scheduled_at >= $1)
         AND ($2::timestamptz IS NULL OR scheduled_at < $2)
         AND ($3::text[] IS NULL OR status = ANY($3))
         AND ($4::timestamptz IS NULL OR (scheduled_at, id) > ($4, $5::uuid))
       ORDER BY scheduled_at, id LIMIT $6`,
      [
        q.scheduledAfter ?? null,
        q.scheduledBefore ?? null,
        q.statuses && q.statuses.length > 0 ? q.statuses : null,
        q.after?.scheduledAt ?? null,
        q.after?.id ?? null,
        q.limit,
      ],
      signal,
    );
    return res.rows;
  },

  /** Sets the given fields; undefined when there is no such appointment. */
  async update(
    db: Database,
    schema: string,
    id: string,
    changes: Partial<AppointmentFields>,
    signal?: AbortSignal,
  ): Promise<AppointmentRecord | undefined> {
    const sets: string[] = [];
    const values: unknown[] = [id];
    for (const [key, column] of Object.entries(COLUMN_OF) as [keyof AppointmentFields, string][]) {
      if (changes[key] === undefined) continue;
      values.push(changes[key]);
      sets.push(`${column} = $${values.length}`);
    }
    sets.push(`updated_at = date_trunc('milliseconds', now())`);
    const res = await db.query<AppointmentRecord>(
      `UPDATE ${schema}.appointments SET ${sets.join(', ')} WHERE id = $1 RETURNING ${COLUMNS}`,
      values,
      signal,
    );
    return res.rows[0];
  },

  /**
   * Cancels unless completed, in one statement. Returns the row after the call (unchanged when it
   * was already cancelled or completed) or undefined when there is no such appointment.
   */
  async cancel(
    db: Database,
    schema: string,
    id: string,
    signal?: AbortSignal,
  ): Promise<AppointmentRecord | undefined> {
    const res = await db.query<AppointmentRecord>(
      `WITH changed AS (
         UPDATE ${schema}.appointments SET status = 'cancelled', updated_at = date_trunc('milliseconds', now())
         WHERE id = $1 AND status NOT IN ('cancelled', 'completed') RETURNING ${COLUMNS})
       SELECT * FROM changed
       UNION ALL
       SELECT ${COLUMNS} FROM ${schema}.appointments WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM changed)`,
      [id],
      signal,
    );
    return res.rows[0];
  },
};
