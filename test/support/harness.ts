import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import pg from 'pg';
import { inject } from 'vitest';
import { createShardgateClient, type ShardgateClient } from '../../src/client/index.js';
import { configSchema, type GatewayConfig } from '../../src/core/config.js';
import type { Failpoints } from '../../src/core/failpoints.js';
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

function withDatabase(adminUrl: string, database: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

/** Creates a database on the server behind `adminUrl` and returns its URL. */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
  return withDatabase(adminUrl, name);
}

/**
 * A catalog database on the catalog server and one shard database on each shard server (or
 * `shardCount` spread over them round-robin).
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
  options: { failpoints?: Failpoints } = {},
): Promise<TestGateway> {
  const config = configSchema.parse({
    listen: '127.0.0.1:0',
    catalogUrl: topology.catalogUrl,
    shards: topology.shards,
    ...overrides,
  }) as GatewayConfig & { catalogUrl: string };
  const gateway = await startGateway(config, silentLog, options);
  const client = createShardgateClient({ address: gateway.address, defaultDeadlineMs: 15_000 });
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
