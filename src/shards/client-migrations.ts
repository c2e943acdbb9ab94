/** One step of the client-schema DDL; `sql` gets the quoted schema identifier. */
export interface ClientMigration {
  readonly version: number;
  readonly name: string;
  readonly sql: (schema: string) => string;
}

export const appointmentStatuses = [
  'scheduled',
  'confirmed',
  'completed',
  'cancelled',
  'no_show',
] as const;
export type AppointmentStatus = (typeof appointmentStatuses)[number];

/**
 * Every client schema's DDL, in order. Applied inside one transaction per schema, recorded in
 * `<schema>.schema_migrations`, so thousands of schemas can evolve; never edit a released step,
 * append a new one.
 */
export const clientMigrations: readonly ClientMigration[] = [
  {
    version: 1,
    name: 'appointments, handoffs, state',
    sql: (s) => `
      CREATE TABLE ${s}.appointments (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        client_phone text NOT NULL,
        scheduled_at timestamptz NOT NULL,
        service_type text NOT NULL,
        status text NOT NULL CHECK (status IN (${appointmentStatuses.map((x) => `'${x}'`).join(', ')})),
        created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
        updated_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now())
      );
      CREATE INDEX appointments_scheduled_idx ON ${s}.appointments (scheduled_at, id);

      CREATE TABLE ${s}.handoffs (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        from_agent text NOT NULL,
        to_agent text NOT NULL,
        version integer NOT NULL,
        summary jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now())
      );
      CREATE INDEX handoffs_agents_idx ON ${s}.handoffs (from_agent, to_agent);
      CREATE INDEX handoffs_created_idx ON ${s}.handoffs (created_at);
      CREATE INDEX handoffs_to_agent_latest_idx ON ${s}.handoffs (to_agent, created_at DESC, id DESC);

      CREATE FUNCTION ${s}.notify_handoff() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog AS $$
      BEGIN
        PERFORM pg_notify('shardgate_handoffs', TG_TABLE_SCHEMA || ':' || NEW.id::text);
        RETURN NULL;
      END $$;
      CREATE TRIGGER handoffs_notify AFTER INSERT ON ${s}.handoffs
        FOR EACH ROW EXECUTE FUNCTION ${s}.notify_handoff();

      CREATE TABLE ${s}.state (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        document jsonb NOT NULL DEFAULT '{}'::jsonb,
        version bigint NOT NULL DEFAULT 0,
        updated_at timestamptz
      );
      INSERT INTO ${s}.state DEFAULT VALUES;
    `,
  },
  {
    version: 2,
    name: 'request ids',
    // AIP-155 idempotency keys of the client's creates (src/pg/insert-once.ts). In the client's
    // schema, so they move with the client; a single-column primary key, as logical replication
    // and the move's verification by key want.
    sql: (s) => `
      CREATE TABLE ${s}.request_ids (
        request_id uuid PRIMARY KEY,
        method text NOT NULL,
        request_sha256 bytea NOT NULL,
        result_ids uuid[] NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX request_ids_created_idx ON ${s}.request_ids (created_at);
    `,
  },
];

/** The version a fully migrated client schema is at. */
export const LATEST_CLIENT_SCHEMA_VERSION = clientMigrations.at(-1)?.version ?? 0;
