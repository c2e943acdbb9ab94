-- Runs once, when the catalog volume is first initialised (docker-entrypoint-initdb.d).
-- POSTGRES_DB already created shardgate_catalog; the shared (cross-client) database lives beside it.
CREATE DATABASE shardgate_shared;
