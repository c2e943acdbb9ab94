/** The catalog database's own schema, versioned; applied in order under an advisory lock. */
export const catalogMigrations: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'shards, ring and tenant directory',
    sql: `
      CREATE TABLE shardgate.shards (
        name text PRIMARY KEY,
        url text NOT NULL,
        weight integer NOT NULL CHECK (weight BETWEEN 1 AND 10000),
        state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining')),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE shardgate.ring (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        vnodes integer NOT NULL CHECK (vnodes > 0),
        epoch bigint NOT NULL DEFAULT 1
      );
      CREATE TABLE shardgate.tenants (
        client_id text PRIMARY KEY,
        schema_name text NOT NULL UNIQUE,
        shard text NOT NULL REFERENCES shardgate.shards (name),
        status text NOT NULL CHECK (status IN ('provisioning', 'active', 'churned')),
        schema_version integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
        updated_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
        churned_at timestamptz
      );
      CREATE INDEX tenants_status_idx ON shardgate.tenants (status, client_id);
      CREATE INDEX tenants_shard_idx ON shardgate.tenants (shard, client_id);

      CREATE FUNCTION shardgate.notify_tenant_change() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog AS $$
      BEGIN
        IF TG_OP = 'DELETE' THEN
          PERFORM pg_notify('shardgate_catalog', 't:' || OLD.client_id);
        ELSE
          PERFORM pg_notify('shardgate_catalog', 't:' || NEW.client_id);
        END IF;
        RETURN NULL;
      END $$;
      CREATE TRIGGER tenants_notify AFTER INSERT OR UPDATE OR DELETE ON shardgate.tenants
        FOR EACH ROW EXECUTE FUNCTION shardgate.notify_tenant_change();

      CREATE FUNCTION shardgate.notify_topology_change() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog AS $$
      BEGIN
        PERFORM pg_notify('shardgate_catalog', 's');
        RETURN NULL;
      END $$;
      CREATE TRIGGER shards_notify AFTER INSERT OR UPDATE OR DELETE ON shardgate.shards
        FOR EACH STATEMENT EXECUTE FUNCTION shardgate.notify_topology_change();
      CREATE TRIGGER ring_notify AFTER INSERT OR UPDATE OR DELETE ON shardgate.ring
        FOR EACH STATEMENT EXECUTE FUNCTION shardgate.notify_topology_change();
    `,
  },
  {
    version: 2,
    name: 'move journal and per-client write pause',
    sql: `
      ALTER TABLE shardgate.tenants ADD COLUMN writes_paused boolean NOT NULL DEFAULT false;
      -- Moved on purpose by an operator: Rebalance leaves the client where it is.
      ALTER TABLE shardgate.tenants ADD COLUMN pinned boolean NOT NULL DEFAULT false;
      CREATE TABLE shardgate.moves (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        client_id text NOT NULL,
        source_shard text NOT NULL,
        target_shard text NOT NULL,
        reason text NOT NULL CHECK (reason IN ('ring', 'drain', 'manual')),
        phase text NOT NULL,
        state text NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
        rows_copied bigint NOT NULL DEFAULT 0,
        rows_total bigint NOT NULL DEFAULT 0,
        bytes_total bigint NOT NULL DEFAULT 0,
        write_pause_ms bigint,
        error text,
        cancel_requested boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
        updated_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
        finished_at timestamptz
      );
      -- At most one running move per client: a second MoveTenant fails instead of racing.
      CREATE UNIQUE INDEX moves_one_running_per_client ON shardgate.moves (client_id)
        WHERE state = 'running';
      CREATE INDEX moves_created_idx ON shardgate.moves (created_at DESC, id DESC);
    `,
  },
  {
    version: 3,
    name: 'placement epoch',
    sql: `
      -- Incremented by every flip of the client's placement: the version of where it lives.
      ALTER TABLE shardgate.tenants ADD COLUMN placement_epoch bigint NOT NULL DEFAULT 1;
    `,
  },
  {
    version: 4,
    name: 'bearer tokens and the audit log',
    sql: `
      CREATE TABLE shardgate.tokens (
        id text PRIMARY KEY,
        -- SHA-256 of the whole secret; the secret itself is never stored.
        secret_sha256 bytea NOT NULL,
        display_name text NOT NULL,
        scope text NOT NULL,
        created_by text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
        expires_at timestamptz,
        revoked_at timestamptz
      );
      CREATE INDEX tokens_created_idx ON shardgate.tokens (created_at DESC, id DESC);
      -- A revoked (or deleted) token must stop working on every gateway at once: they cache
      -- verified tokens and drop them on this notification.
      CREATE FUNCTION shardgate.notify_token_change() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog AS $$
      BEGIN
        PERFORM pg_notify('shardgate_catalog', 'k:' || OLD.id);
        RETURN NULL;
      END $$;
      CREATE TRIGGER tokens_notify AFTER UPDATE OR DELETE ON shardgate.tokens
        FOR EACH ROW EXECUTE FUNCTION shardgate.notify_token_change();

      CREATE TABLE shardgate.audit_events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
        actor text NOT NULL,
        actor_name text NOT NULL,
        method text NOT NULL,
        target text NOT NULL,
        request jsonb NOT NULL,
        outcome text NOT NULL,
        error text NOT NULL DEFAULT ''
      );
      CREATE INDEX audit_events_actor_idx ON shardgate.audit_events (actor, id DESC);
      CREATE INDEX audit_events_method_idx ON shardgate.audit_events (method, id DESC);
    `,
  },
  {
    version: 5,
    name: 'audit log retention',
    sql: `
      -- The retention purge deletes events older than a cutoff, oldest first, in small batches:
      -- without this index every batch would scan the whole table.
      CREATE INDEX audit_events_created_idx ON shardgate.audit_events (created_at);
    `,
  },
];
