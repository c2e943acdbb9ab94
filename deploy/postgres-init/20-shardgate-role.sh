#!/usr/bin/env bash
# Runs once, when a server's volume is first initialised (docker-entrypoint-initdb.d), on the
# catalog server and on every shard: the gateway's runtime role, which is not a superuser, and
# what it needs in each database (docs/database-roles.md). The gateway refuses a superuser.
set -eo pipefail

psql -v ON_ERROR_STOP=1 -v pw="$SHARDGATE_DB_PASSWORD" --username "$POSTGRES_USER" --dbname postgres <<'EOSQL'
CREATE ROLE shardgate LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE REPLICATION PASSWORD :'pw';
GRANT pg_create_subscription TO shardgate;
EOSQL

databases=$(psql -At --username "$POSTGRES_USER" --dbname postgres \
  -c "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'")
for db in $databases; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$db" <<EOSQL
GRANT CONNECT, CREATE ON DATABASE "$db" TO shardgate;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_replication_origin_progress(text, boolean) TO shardgate;
EOSQL
done
