import { z } from 'zod';

const shardSchema = z.object({
  name: z
    .string()
    .regex(/^[a-z0-9]+(?:-[a-z0-9]+)*$/, 'lowercase letters, digits and inner hyphens'),
  url: z.string().regex(/^postgres(ql)?:\/\//, 'a postgres:// connection URL'),
  weight: z.number().int().min(1).max(10_000).default(100),
});

/**
 * Gateway configuration. Every option's default is set and documented here. Sources, later wins:
 * defaults, the JSON file named by SHARDGATE_CONFIG (or ./shardgate.config.json), SHARDGATE_* env.
 */
export const configSchema = z
  .object({
    /** host:port the gRPC server listens on. */
    listen: z.string().default('127.0.0.1:50051'),
    /** Catalog database URL. Unset: run embedded PostgreSQL servers under `embedded.dataDir`. */
    catalogUrl: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'a postgres:// connection URL')
      .optional(),
    /** Shared (cross-client) database URL. Unset: the catalog database, schema `shared`. */
    sharedUrl: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'a postgres:// connection URL')
      .optional(),
    /** Shards registered in the catalog at start-up when absent (existing ones are left alone). */
    shards: z.array(shardSchema).default([]),
    embedded: z
      .object({
        /** Where embedded PostgreSQL keeps its data; kept across restarts. */
        dataDir: z.string().default('./.shardgate'),
        /** The catalog server listens here, shard i on basePort + i. */
        basePort: z.number().int().min(1024).max(65_000).default(54_320),
        /** How many embedded shard servers to run. */
        shardCount: z.number().int().min(1).max(16).default(3),
      })
      .prefault({}),
    ring: z
      .object({
        /** Virtual nodes per shard on a new ring (only used when the catalog has no ring yet). */
        vnodes: z.number().int().min(1).max(1000).default(64),
      })
      .prefault({}),
    pool: z
      .object({
        /** Connections per shard pool (one pool per shard, shared by all its clients). */
        max: z.number().int().min(1).max(1000).default(10),
        /** Close a connection idle this long. */
        idleTimeoutMs: z.number().int().min(0).default(30_000),
        /** Give up connecting to a shard after this long: the call fails UNAVAILABLE. */
        connectionTimeoutMs: z.number().int().min(100).default(3_000),
        /** Server-side cap on any statement, whatever the caller's deadline. */
        statementTimeoutMs: z.number().int().min(100).default(30_000),
        /** Replace a connection after this many seconds so per-session caches stay bounded. */
        maxLifetimeSeconds: z.number().int().min(0).default(600),
      })
      .prefault({}),
    auth: z
      .object({
        /**
         * Require a bearer token (`authorization: Bearer <secret>`) on every call but health checks.
         * Off by default so the embedded quick start works on 127.0.0.1 (with a warning); the
         * gateway refuses to listen on a non-loopback address while it is off.
         */
        required: z.boolean().default(false),
        /**
         * A bootstrap admin secret (at least 32 characters), accepted with the `admin` scope: use
         * it to create real tokens with `shardctl tokens create`, then remove it. Unset: none.
         */
        adminToken: z.string().min(32, 'at least 32 characters').optional(),
      })
      .strict()
      .prefault({}),
    /** TLS for the gRPC server. Unset: plaintext (loopback or behind a TLS-terminating proxy). */
    tls: z
      .object({
        /** PEM certificate chain file of the server. */
        certFile: z.string().min(1),
        /** PEM private key file of the server. */
        keyFile: z.string().min(1),
        /** PEM CA file: when set, callers must present a certificate it signed (mutual TLS). */
        clientCaFile: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
    limits: z
      .object({
        /** Largest request or response message, in bytes. */
        maxMessageBytes: z
          .number()
          .int()
          .min(64 * 1024)
          .max(64 * 1024 * 1024)
          .default(4 * 1024 * 1024),
        /** Longest a unary call may run, whatever deadline the caller set (streams are exempt). */
        maxDeadlineMs: z.number().int().min(100).default(60_000),
        /** Sustained calls per second per client, per gateway process (token bucket rate). */
        clientRatePerSecond: z.number().min(1).default(1_000),
        /** Calls a client may make in a burst above its rate (token bucket size). */
        clientBurst: z.number().int().min(1).default(2_000),
        /** Calls of one client running at once in this process; more fail RESOURCE_EXHAUSTED. */
        clientMaxInFlight: z.number().int().min(1).default(64),
      })
      .strict()
      .prefault({}),
    /** pino log level. */
    logLevel: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info'),
  })
  .strict();

export type GatewayConfig = z.infer<typeof configSchema>;
export type ShardConfig = z.infer<typeof shardSchema>;
export type PoolConfig = GatewayConfig['pool'];
export type AuthConfig = GatewayConfig['auth'];
export type TlsConfig = NonNullable<GatewayConfig['tls']>;
export type LimitsConfig = GatewayConfig['limits'];
