import { parseArgs } from 'node:util';
import { OPS, type OpName } from './protocol.js';

/** What one `npm run bench` measures; defaults keep the whole run under ~3 minutes. */
export interface BenchOptions {
  /** Measured span of each cell (default 5 s; 0.5 s with --quick). */
  durationMs: number;
  /** Unreported calls before each cell, at its concurrency (1/8 of the duration, 0.25–0.5 s). */
  warmupMs: number;
  /** Calls in flight (default 1, 8, 32). */
  concurrencies: number[];
  /** Ops to measure, in table order (default all of OPS). */
  ops: OpName[];
  /** Seeded tenants (default 30), each with appointments, handoffs and a state document. */
  tenants: number;
  appointmentsPerTenant: number;
  handoffsPerTenant: number;
  /**
   * Write V8 CPU profiles of the gateway, the thin proxy and the load generator to bench/results/
   * (node --cpu-prof).
   */
  profile: boolean;
}

const USAGE =
  `usage: npm run bench -- [--quick] [--duration <seconds>] [--concurrency <n,n,…>] ` +
  `[--ops <${OPS.join(',')}>] [--tenants <n>] [--profile]`;

/** Parses the command line; throws with the usage on a bad value. */
export function parseOptions(args = process.argv.slice(2)): BenchOptions {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      duration: { type: 'string' },
      concurrency: { type: 'string' },
      ops: { type: 'string' },
      tenants: { type: 'string' },
      profile: { type: 'boolean', default: false },
    },
  });
  const quick = values.quick ?? false;
  const durationMs = values.duration ? Number(values.duration) * 1000 : quick ? 500 : 5_000;
  const concurrencies = (values.concurrency ?? '1,8,32').split(',').map(Number);
  const ops = values.ops ? values.ops.split(',') : [...OPS];
  const unknown = ops.filter((op) => !(OPS as readonly string[]).includes(op));
  const tenants = Number(values.tenants ?? 30);
  const bad = [
    !(durationMs > 0) && '--duration must be a positive number of seconds',
    concurrencies.some((c) => !Number.isInteger(c) || c < 1) && '--concurrency takes integers ≥ 1',
    unknown.length > 0 && `unknown ops: ${unknown.join(', ')}`,
    !(Number.isInteger(tenants) && tenants >= 1) && '--tenants must be an integer ≥ 1',
  ].filter(Boolean);
  if (bad.length > 0) throw new Error(`${bad.join('; ')}\n${USAGE}`);
  return {
    durationMs,
    warmupMs: Math.min(500, Math.max(250, durationMs / 8)),
    concurrencies,
    ops: ops as OpName[],
    tenants,
    appointmentsPerTenant: quick ? 10 : 20,
    handoffsPerTenant: quick ? 3 : 5,
    profile: values.profile ?? false,
  };
}
