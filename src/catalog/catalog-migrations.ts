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
];
