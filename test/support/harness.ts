import { randomBytes } from 'node:crypto';
import { pino, type Logger } from 'pino';
import pg from 'pg';
import { inject } from 'vitest';
import {
  createShardgateClient,
  type ShardgateClient,
  type ShardgateTlsOptions,
} from '../../src/client/index.js';
import { configSchema, type GatewayConfig } from '../../src/core/config.js';
import type { Failpoints } from '../../src/core/failpoints.js';
import { grantDatabaseAccess } from '../../src/embedded/runtime-role.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';

/** Databases made for one test file: its own catalog and shards, so files never share routing. */
export interface TestTopology {
  catalogUrl: string;
  shards: { name: string; url: string; weight: number }[];
}

/** A unique suffix for databases and client ids, so tests never depend on each other's data. */
export function uniqueSuffix(): string {
  return randomBytes(4).toString('hex');
}

/** A fresh, valid client id with a readable prefix. */
export function freshClientId(prefix = 'client'): string {
  return `${prefix}-${uniqueSuffix()}`;
}

function withDatabase(serverUrl: string, database: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

/** The provided test server a URL points at (by port). */
function providedServerOf(url: string): { adminUrl: string; runtimeUrl: string } | undefined {
  const port = new URL(url).port;
  return inject('pgServers').find((s) => String(s.port) === port);
}

/**
 * The superuser URL of the database a runtime-role URL of a provided test server names: for
 * checks and tampering behind the gateway's back that its own role may not do.
 */
export function adminUrlOf(url: string): string {
  const server = providedServerOf(url);
  if (!server) throw new Error(`no provided test server listens on port ${new URL(url).port}`);
  return withDatabase(server.adminUrl, decodeURIComponent(new URL(url).pathname.slice(1)));
}

/**
 * Creates a database on the server behind `adminUrl` the way production runs: owned by the
 * superuser, usable by the runtime role (runtime-role.ts grantDatabaseAccess), no CREATE on
 * `public`. Returns its URL as the runtime role, taken from `runtimeUrl` (a URL of any database on
 * that server as the role; found by port for the provided test servers).
 */
export async function createDatabase(
  adminUrl: string,
  name: string,
  runtimeUrl = providedServerOf(adminUrl)?.runtimeUrl,
): Promise<string> {
  if (!runtimeUrl) throw new Error(`no runtime role URL known for ${new URL(adminUrl).host}`);
  await withPg(adminUrl, (c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`));
  await withPg(withDatabase(adminUrl, name), async (c) => {
    await c.query('BEGIN');
    await grantDatabaseAccess(c, name);
    await c.query('COMMIT');
  });
  return withDatabase(runtimeUrl, name);
}

/**
 * A catalog database on the catalog server and one shard database on each shard server (or
 * `shardCount` spread over them round-robin), all reached as the runtime role (not a superuser):
 * the gateway under test runs as it would in production. `adminUrlOf` gives superuser URLs.
 */
export async function createTestTopology(shardCount = 2): Promise<TestTopology> {
  const [catalogServer, ...shardServers] = inject('pgServers');
  const id = uniqueSuffix();
  const catalogUrl = await createDatabase(catalogServer!.adminUrl, `t_${id}_catalog`);
  const shards = [];
  for (let i = 0; i < shardCount; i++) {
    const server = shardServers[i % shardServers.length]!;
    shards.push({
      name: `shard-${i + 1}`,
      url: await createDatabase(server.adminUrl, `t_${id}_s${i + 1}`),
      weight: 100,
    });
  }
  return { catalogUrl, shards };
}

/** A gateway (in this process) on 127.0.0.1:0 plus a typed client for it. */
export interface TestGateway {
  gateway: RunningGateway;
  client: ShardgateClient;
  close(): Promise<void>;
}

export const silentLog = pino({ level: process.env.SHARDGATE_TEST_LOG ?? 'silent' });

export async function startTestGateway(
  topology: TestTopology,
  overrides: Partial<GatewayConfig> = {},
  options: {
    failpoints?: Failpoints;
    token?: string;
    tls?: ShardgateTlsOptions;
    /** The gateway's logger; default silent. */
    log?: Logger;
  } = {},
): Promise<TestGateway> {
  const config = configSchema.parse({
    listen: '127.0.0.1:0',
    catalogUrl: topology.catalogUrl,
    shards: topology.shards,
    ...overrides,
  }) as GatewayConfig & { catalogUrl: string };
  const gateway = await startGateway(config, options.log ?? silentLog, options);
  const client = createShardgateClient({
    address: gateway.address,
    defaultDeadlineMs: 15_000,
    // Tests assert the gateway's own answers, RESOURCE_EXHAUSTED included; the client's pushback
    // retry is tested with clients of its own (client-pushback.test.ts).
    retry: { resourceExhausted: false },
    token: options.token,
    tls: options.tls,
  });
  return {
    gateway,
    client,
    async close() {
      client.close();
      await gateway.close(1_000);
    },
  };
}

/** Runs `fn` with a direct connection to a database, for checks behind the gateway's back. */
export async function withPg<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** The gRPC status code of a rejected call (nice-grpc ClientError), or a failure if it resolved. */
export async function statusOf(promise: Promise<unknown>): Promise<number> {
  try {
    await promise;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number') return code;
    throw err;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** Like statusOf, but also returns the status details (message). */
export async function errorOf(
  promise: Promise<unknown>,
): Promise<{ code: number; details: string }> {
  try {
    await promise;
  } catch (err) {
    const e = err as { code?: unknown; details?: unknown };
    if (typeof e.code === 'number') return { code: e.code, details: String(e.details ?? '') };
    throw err;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** Retries `check` until it stops throwing or `timeoutMs` passes (changes arrive by LISTEN/NOTIFY). */
export async function eventually<T>(
  check: () => Promise<T>,
  timeoutMs = 10_000,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }
}
