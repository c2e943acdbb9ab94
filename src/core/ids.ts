import { invalidArgument } from './errors.js';

declare const clientIdBrand: unique symbol;
declare const shardNameBrand: unique symbol;

/** A validated client id: lowercase letters, digits and single inner hyphens. */
export type ClientId = string & { readonly [clientIdBrand]: true };
/** A validated shard name. */
export type ShardName = string & { readonly [shardNameBrand]: true };

const SCHEMA_PREFIX = 'client_';
/** Postgres truncates identifiers past 63 bytes, which would make two ids share a schema. */
export const MAX_IDENTIFIER_BYTES = 63;
/** The longest client id whose schema name still fits a Postgres identifier. */
export const MAX_CLIENT_ID_LENGTH = MAX_IDENTIFIER_BYTES - SCHEMA_PREFIX.length;

const CLIENT_ID_PATTERN = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;
const SHARD_NAME_PATTERN = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;
const MAX_SHARD_NAME_LENGTH = 63;

/** Validates a client id before any SQL is built from it; INVALID_ARGUMENT otherwise. */
export function parseClientId(raw: string, field = 'client_id'): ClientId {
  if (raw.length === 0) throw invalidArgument(`${field} is required`);
  if (raw.length > MAX_CLIENT_ID_LENGTH) {
    throw invalidArgument(`${field} must be at most ${MAX_CLIENT_ID_LENGTH} characters`);
  }
  if (!CLIENT_ID_PATTERN.test(raw)) {
    throw invalidArgument(
      `${field} must be lowercase letters and digits separated by single hyphens, e.g. 'acme-hvac'`,
    );
  }
  return raw as ClientId;
}

/** True when `raw` is a valid client id. */
export function isClientId(raw: string): raw is ClientId {
  return raw.length <= MAX_CLIENT_ID_LENGTH && CLIENT_ID_PATTERN.test(raw);
}

/** Validates a shard name (same alphabet as client ids). */
export function parseShardName(raw: string, field = 'shard'): ShardName {
  if (raw.length === 0) throw invalidArgument(`${field} is required`);
  if (raw.length > MAX_SHARD_NAME_LENGTH || !SHARD_NAME_PATTERN.test(raw)) {
    throw invalidArgument(
      `${field} must be at most ${MAX_SHARD_NAME_LENGTH} lowercase letters and digits separated by single hyphens`,
    );
  }
  return raw as ShardName;
}

/**
 * The client's schema name: `acme-hvac` → `client_acme_hvac`. Injective because client ids never
 * contain `_`, so every `_` after the prefix stands for exactly one `-`.
 */
export function schemaNameFor(clientId: ClientId): string {
  return SCHEMA_PREFIX + clientId.replaceAll('-', '_');
}

/** Inverse of schemaNameFor; undefined for a name that is not a client schema. */
export function clientIdFromSchema(schema: string): ClientId | undefined {
  if (!schema.startsWith(SCHEMA_PREFIX)) return undefined;
  const id = schema.slice(SCHEMA_PREFIX.length).replaceAll('_', '-');
  return isClientId(id) ? id : undefined;
}
