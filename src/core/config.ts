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
        /**
         * Replace a connection after this many seconds (0: never). Each backend caches the catalog
         * entries and plans of every client schema it touched, so a connection serving many
         * clients grows; 5 minutes bounds that growth and moves connections onto a restarted or
         * failed-over server soon, for a reconnect every 5 minutes per connection.
         */
        maxLifetimeSeconds: z.number().int().min(0).default(300),
        /**
         * Replace a connection after it has been checked out this many times (0: never), so no
         * backend serves an unbounded run of calls from different clients, whatever the traffic.
         * (Optional in the type only, so hand-built pool settings may leave it out: never then.)
         */
        maxUses: z.number().int().min(0).default(10_000).optional(),
        /**
         * Point reads (GetAppointment, GetState, GetLatestHandoff) that one table of a shard has
         * in flight as shared statements. Reads that arrive while these run wait and then go out together
         * in one statement, one round trip for many calls; a lone read goes out at once. 0: every
         * read is its own statement. Default: a quarter of `max`, rounded up.
         */
        readBatchStatements: z.number().int().min(0).optional(),
        /** Most point reads one shared statement answers. */
        readBatchMax: z.number().int().min(1).max(1000).default(64).optional(),
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
    /**
     * Limits against oversized input and noisy callers. The per-client limits live in each gateway
     * process, so with N replicas behind a balancer a client gets up to N times these figures.
     * Tenant-scoped calls count against their request's client_id; AdminService, SharedService,
     * ListTenants and calls with a malformed client_id count against the caller's token (in open
     * mode every caller is `anonymous` and shares one allowance). Health checks and reflection are
     * never limited. Over a limit: RESOURCE_EXHAUSTED with a RetryInfo (google.rpc) retry delay.
     */
    limits: z
      .object({
        /** Largest request or response message, in bytes (grpc-js refuses larger ones itself). */
        maxMessageBytes: z
          .number()
          .int()
          .min(64 * 1024)
          .max(64 * 1024 * 1024)
          .default(4 * 1024 * 1024),
        /**
         * Longest a unary call may run, waiting for its turn included, whatever deadline the caller
         * set (a shorter one still applies). Past it: DEADLINE_EXCEEDED and its statement is
         * cancelled. Server streams (WatchHandoffs, MoveTenant, Rebalance) are exempt.
         */
        maxDeadlineMs: z.number().int().min(100).default(60_000),
        /** Sustained calls per second per client, per gateway process (token bucket rate). */
        clientRatePerSecond: z.number().min(1).default(1_000),
        /** Calls a client may make back to back after being idle (token bucket size). */
        clientBurst: z.number().int().min(1).default(2_000),
        /**
         * Unary calls of one client running at once; more wait in that client's own queue. All
         * clients of a shard share its `pool.max` connections, so this keeps one client from holding
         * them all. Default: half of `pool.max`, rounded up.
         */
        clientMaxConcurrent: z.number().int().min(1).optional(),
        /** Unary calls of one client running or waiting; more fail RESOURCE_EXHAUSTED at once. */
        clientMaxInFlight: z.number().int().min(1).default(64),
        /** Server streams (WatchHandoffs mostly) one client may hold open; more fail at once. */
        clientMaxStreams: z.number().int().min(1).default(100),
      })
      .strict()
      .prefault({}),
    database: z
      .object({
        /**
         * Start even when a catalog, shared or shard database is reached as a superuser. Off by
         * default: the gateway then refuses to start (or to add such a shard), because a
         * superuser can bypass every privilege the hardening relies on. See
         * docs/database-roles.md for the role to create instead.
         */
        allowSuperuser: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    catalog: z
      .object({
        /**
         * How long a gateway that lost the catalog's change feed (a catalog restart or failover,
         * a network cut) goes on using the placements and verified tokens it has cached, so
         * calls for known clients go on meanwhile. A change made through another replica in that
         * time (a move, a revoked token) is seen here once the feed is back or the grace ends;
         * moves stay safe (writes to a client's old copy are refused by its fence). 0: caches are
         * not used while the feed is down, so every call then needs the catalog.
         */
        feedLossGraceMs: z.number().int().min(0).max(600_000).default(30_000),
      })
      .strict()
      .prefault({}),
    audit: z
      .object({
        /**
         * Days an admin audit event is kept; older ones (completed or not) are deleted in the
         * background, soon after start and then hourly, by every replica. 0: kept forever. The
         * default follows Google Cloud's admin-activity audit logs (400 days). At most 100 years.
         */
        retentionDays: z.number().int().min(0).max(36_500).default(400),
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
export type DatabaseConfig = GatewayConfig['database'];
