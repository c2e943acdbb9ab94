/**
 * What the benchmark's processes tell each other over the fork() IPC channel. The orchestrator
 * (run.ts) owns the databases and the gateway; the load generator only calls them.
 */

/** Every operation the load generator can drive, grouped by what it measures. */
export const OPS = [
  // (a) bare grpc-js unary echo: the ceiling of any gRPC gateway on this runtime
  'echo',
  // (a) GetAppointment answered from memory: grpc-js with the protobuf codecs, then nice-grpc
  'echo.protobuf',
  'echo.nice-grpc',
  // (a) GetAppointment by the thinnest gRPC server over PostgreSQL: grpc-js, protobuf, one
  // pg.Pool.query per call and nothing else (bench/proxy-server.ts)
  'proxy.GetAppointment',
  // (b) pg.Pool straight to the shard, with the gateway's own SQL text
  'pg.get',
  'pg.insert',
  // (c) shardgate, driven like (a) by a bare grpc-js client (plus the generated protobuf codecs)
  'sg.GetAppointment',
  'sg.ListAppointments',
  'sg.CreateAppointment',
  'sg.AppendHandoff',
  'sg.PatchState',
  'sg.GetState',
  'sg.GetLatestHandoff',
  // (c) GetAppointment through shardgate's typed client (nice-grpc, deadline/retry/error details)
  'typed.GetAppointment',
] as const;

/** True for an op served by the gateway (group (c)). */
export function isGatewayOp(op: OpName): boolean {
  return op.startsWith('sg.') || op.startsWith('typed.');
}
/** One of OPS. */
export type OpName = (typeof OPS)[number];

/** Which side a gateway op is compared with for the c/b ratio; others have no direct-pg twin. */
export const PG_TWIN: Partial<Record<OpName, OpName>> = {
  'sg.GetAppointment': 'pg.get',
  'typed.GetAppointment': 'pg.get',
  'proxy.GetAppointment': 'pg.get',
  'sg.CreateAppointment': 'pg.insert',
};

/** One seeded client, as the load generator needs it. */
export interface BenchTenant {
  clientId: string;
  shard: string;
  /** The unquoted schema name, e.g. `client_bench_01`. */
  schema: string;
  appointmentIds: string[];
}

/** Everything the load generator needs to reach the three targets. */
export interface Dataset {
  echoAddress: string;
  /** The nice-grpc server of the echo process (GetAppointment from memory). */
  echoNiceAddress: string;
  /** The thin proxy over the shards (bench/proxy-server.ts). */
  proxyAddress: string;
  gatewayAddress: string;
  /** Shard name → connection URL (holds a password: never print it). */
  shardUrls: Record<string, string>;
  /** Connections per shard pool, the same as the gateway's. */
  poolMax: number;
  tenants: BenchTenant[];
  /** ListAppointments reads only the seeded rows: those scheduled before this instant (ms). */
  seededBeforeMs: number;
}

/** One cell of the table: one op at one concurrency (a warm-up is just an unreported cell). */
export interface CellSpec {
  op: OpName;
  concurrency: number;
  durationMs: number;
}

/** What the load generator measured for one cell; latencies in milliseconds. */
export interface CellResult extends CellSpec {
  calls: number;
  errors: number;
  /** First error of the cell, e.g. `UNAVAILABLE: …`. */
  errorSample?: string;
  elapsedMs: number;
  callsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
  /** CPU time of the load generator itself during the cell. */
  clientCpuMs: number;
}

/** Orchestrator → thin proxy (bench/proxy-server.ts), once the tenants are seeded. */
export interface ProxyInit {
  type: 'init';
  shardUrls: Record<string, string>;
  poolMax: number;
  tenants: BenchTenant[];
}

/** Orchestrator → load generator. */
export type ToGenerator = { type: 'init'; dataset: Dataset } | { type: 'cell'; spec: CellSpec };

/** Load generator → orchestrator. */
export type FromGenerator =
  { type: 'ready' } | { type: 'result'; result: CellResult } | { type: 'error'; message: string };
