import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { exposureProblem } from '../auth/exposure.js';
import { configSchema, type GatewayConfig } from '../core/config.js';

/** Thrown for a configuration a user must fix; the message names every bad option. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;

/** Reads the config file (if any) and SHARDGATE_* env vars, validated; throws ConfigError. */
export function loadConfig(env: Env = process.env, cwd = process.cwd()): GatewayConfig {
  const fromFile = readConfigFile(env, cwd);
  const merged = deepMerge(fromFile, envOverrides(env));
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ConfigError(`invalid shardgate configuration:\n${lines.join('\n')}`);
  }
  const exposed = exposureProblem(parsed.data);
  if (exposed) throw new ConfigError(exposed);
  return parsed.data;
}

function readConfigFile(env: Env, cwd: string): Record<string, unknown> {
  const explicit = env.SHARDGATE_CONFIG;
  const path = explicit ?? `${cwd}/shardgate.config.json`;
  if (!existsSync(path)) {
    if (explicit) throw new ConfigError(`SHARDGATE_CONFIG names ${path}, which does not exist`);
    return {};
  }
  try {
    const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new ConfigError(`${path} must hold a JSON object`);
    }
    return value as Record<string, unknown>;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
}

const intFromEnv = z.coerce.number().int();

function envOverrides(env: Env): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const set = (path: string[], value: unknown): void => {
    let node = out;
    for (const key of path.slice(0, -1)) node = (node[key] ??= {}) as Record<string, unknown>;
    node[path.at(-1)!] = value;
  };
  const num = (name: string): number => {
    const parsed = intFromEnv.safeParse(env[name]);
    if (!parsed.success) throw new ConfigError(`${name} must be a whole number`);
    return parsed.data;
  };
  if (env.SHARDGATE_LISTEN) set(['listen'], env.SHARDGATE_LISTEN);
  if (env.SHARDGATE_CATALOG_URL) set(['catalogUrl'], env.SHARDGATE_CATALOG_URL);
  if (env.SHARDGATE_SHARED_URL) set(['sharedUrl'], env.SHARDGATE_SHARED_URL);
  if (env.SHARDGATE_SHARDS) set(['shards'], parseShardList(env.SHARDGATE_SHARDS));
  if (env.SHARDGATE_DATA_DIR) set(['embedded', 'dataDir'], env.SHARDGATE_DATA_DIR);
  if (env.SHARDGATE_EMBEDDED_PORT) set(['embedded', 'basePort'], num('SHARDGATE_EMBEDDED_PORT'));
  if (env.SHARDGATE_EMBEDDED_SHARDS) {
    set(['embedded', 'shardCount'], num('SHARDGATE_EMBEDDED_SHARDS'));
  }
  if (env.SHARDGATE_POOL_MAX) set(['pool', 'max'], num('SHARDGATE_POOL_MAX'));
  if (env.SHARDGATE_READ_BATCH_STATEMENTS) {
    set(['pool', 'readBatchStatements'], num('SHARDGATE_READ_BATCH_STATEMENTS'));
  }
  if (env.SHARDGATE_LOG_LEVEL) set(['logLevel'], env.SHARDGATE_LOG_LEVEL);
  if (env.SHARDGATE_AUTH_REQUIRED) {
    set(['auth', 'required'], bool('SHARDGATE_AUTH_REQUIRED', env.SHARDGATE_AUTH_REQUIRED));
  }
  if (env.SHARDGATE_ADMIN_TOKEN) set(['auth', 'adminToken'], env.SHARDGATE_ADMIN_TOKEN);
  if (env.SHARDGATE_TLS_CERT_FILE) set(['tls', 'certFile'], env.SHARDGATE_TLS_CERT_FILE);
  if (env.SHARDGATE_TLS_KEY_FILE) set(['tls', 'keyFile'], env.SHARDGATE_TLS_KEY_FILE);
  if (env.SHARDGATE_ALLOW_SUPERUSER) {
    set(
      ['database', 'allowSuperuser'],
      bool('SHARDGATE_ALLOW_SUPERUSER', env.SHARDGATE_ALLOW_SUPERUSER),
    );
  }
  if (env.SHARDGATE_RATE_LIMIT) {
    set(['limits', 'clientRatePerSecond'], num('SHARDGATE_RATE_LIMIT'));
  }
  if (env.SHARDGATE_AUDIT_RETENTION_DAYS) {
    set(['audit', 'retentionDays'], num('SHARDGATE_AUDIT_RETENTION_DAYS'));
  }
  if (env.SHARDGATE_TLS_CLIENT_CA_FILE) {
    set(['tls', 'clientCaFile'], env.SHARDGATE_TLS_CLIENT_CA_FILE);
  }
  return out;
}

/** `true`/`false` (also `1`/`0`, `yes`/`no`, any case); anything else is a ConfigError. */
function bool(name: string, raw: string): boolean {
  const value = raw.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(value)) return true;
  if (['false', '0', 'no'].includes(value)) return false;
  throw new ConfigError(`${name} must be true or false`);
}

/** `name=url[@weight]` entries separated by whitespace or commas. */
function parseShardList(raw: string): unknown[] {
  return raw
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((entry) => {
      const eq = entry.indexOf('=');
      if (eq <= 0)
        throw new ConfigError(`SHARDGATE_SHARDS entry '${entry.split('=')[0]}' must be name=url`);
      const name = entry.slice(0, eq);
      const rest = entry.slice(eq + 1);
      const weightMatch = /#(\d+)$/.exec(rest);
      return weightMatch
        ? { name, url: rest.slice(0, weightMatch.index), weight: Number(weightMatch[1]) }
        : { name, url: rest };
    });
}

function deepMerge(
  a: Record<string, unknown>,
  b: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [key, value] of Object.entries(b)) {
    const prev = out[key];
    out[key] = isPlainObject(prev) && isPlainObject(value) ? deepMerge(prev, value) : value;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
