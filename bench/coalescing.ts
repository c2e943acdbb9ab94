/**
 * `npm run bench:coalescing`: GetAppointment with point-read coalescing off
 * (`SHARDGATE_READ_BATCH_STATEMENTS=0`, one statement per read) and on (the default), side by side
 * in one run. Two gateway processes serve the same shards and tenants, each with its own load
 * generator (a bare grpc-js client, as in `npm run bench`); rounds alternate between them so both
 * see the same machine. Prints calls/s, latency and CPU per call of the gateway and of PostgreSQL;
 * asserts nothing. Options: `--rounds <n>` (3), `--duration <s>` per round (5), `--concurrency <n>`
 * (32), `--quick` (2 rounds of 1.5 s).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import {
  ask,
  forkScript,
  repoRoot,
  runBench,
  spawnGateway,
  stopChild,
  type Cleanup,
} from './processes.js';
import type { CellResult } from './protocol.js';
import { postmasterPids, SEEDED_BEFORE_MS, seedTenants, startBenchCluster } from './setup.js';
import { cpuMsOf, fmt, formatTable, treeCpuMs } from './stats.js';

const progress = (line: string): void => void process.stderr.write(`[bench:coalescing] ${line}\n`);
const POOL_MAX = 10;

/** The two gateways compared; `settings` are their extra SHARDGATE_* variables. */
const VARIANTS = [
  { name: 'one statement per read', settings: { SHARDGATE_READ_BATCH_STATEMENTS: '0' } },
  { name: 'coalesced (default)', settings: {} },
] as const;

interface Round {
  callsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  gatewayUsPerCall: number;
  pgUsPerCall: number;
}

function options(): { rounds: number; durationMs: number; concurrency: number } {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string' },
      duration: { type: 'string' },
      concurrency: { type: 'string' },
      quick: { type: 'boolean', default: false },
    },
  });
  const quick = values.quick ?? false;
  const rounds = Number(values.rounds ?? (quick ? 2 : 3));
  const durationMs = Number(values.duration ?? (quick ? 1.5 : 5)) * 1000;
  const concurrency = Number(values.concurrency ?? 32);
  if (![rounds, concurrency].every((n) => Number.isInteger(n) && n >= 1) || !(durationMs > 0)) {
    throw new Error(
      'usage: npm run bench:coalescing -- [--quick] [--rounds n] [--duration s] [--concurrency n]',
    );
  }
  return { rounds, durationMs, concurrency };
}

async function main(cleanup: Cleanup): Promise<void> {
  const { rounds, durationMs, concurrency } = options();
  progress('starting embedded PostgreSQL (catalog + 2 shards) and two gateways…');
  const bench = await startBenchCluster(2, cleanup);
  const { cluster } = bench;
  const gateways = await Promise.all(
    VARIANTS.map((v) =>
      spawnGateway({ ...cluster, poolMax: POOL_MAX, settings: v.settings }, cleanup),
    ),
  );
  const tenants = await seedTenants(gateways[1]!.address, {
    tenants: 30,
    appointmentsPerTenant: 20,
    handoffsPerTenant: 0,
  });
  const pgPids = await postmasterPids(bench);
  const generators = await Promise.all(
    gateways.map(async (gateway) => {
      const generator = forkScript('load-generator.ts');
      cleanup.add('stop a load generator', () => stopChild(generator, 3_000));
      await ask(generator, {
        type: 'init',
        dataset: {
          // Unused: this run drives no echo cells.
          echoAddress: gateway.address,
          echoNiceAddress: gateway.address,
          gatewayAddress: gateway.address,
          shardUrls: Object.fromEntries(cluster.shards.map((s) => [s.name, s.url])),
          poolMax: POOL_MAX,
          tenants,
          seededBeforeMs: SEEDED_BEFORE_MS,
        },
      });
      return generator;
    }),
  );
  const results: Round[][] = VARIANTS.map(() => []);
  const cell = (ms: number) => ({ op: 'sg.GetAppointment' as const, concurrency, durationMs: ms });
  // Unmeasured: JIT compilation and pool growth in both gateways before the first round.
  for (const generator of generators) await ask(generator, { type: 'cell', spec: cell(2_000) });
  for (let round = 0; round < rounds; round++) {
    for (const [i, variant] of VARIANTS.entries()) {
      const generator = generators[i]!;
      const pid = gateways[i]!.child.pid;
      await ask(generator, { type: 'cell', spec: cell(500) });
      const before = { gateway: cpuMsOf(pid) ?? 0, pg: treeCpuMs(pgPids) ?? 0 };
      const r = (await ask(generator, { type: 'cell', spec: cell(durationMs) })) as CellResult;
      const after = { gateway: cpuMsOf(pid) ?? 0, pg: treeCpuMs(pgPids) ?? 0 };
      if (r.errors > 0)
        throw new Error(`${variant.name}: ${r.errors} errors, e.g. ${r.errorSample}`);
      results[i]!.push({
        callsPerSec: r.callsPerSec,
        p50Ms: r.p50Ms,
        p99Ms: r.p99Ms,
        gatewayUsPerCall: ((after.gateway - before.gateway) * 1000) / r.calls,
        pgUsPerCall: ((after.pg - before.pg) * 1000) / r.calls,
      });
      progress(`round ${round + 1}, ${variant.name}: ${r.callsPerSec.toFixed(0)} calls/s`);
    }
  }
  const median = (xs: number[]): number =>
    [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const summary = results.map((rs) => ({
    callsPerSec: median(rs.map((r) => r.callsPerSec)),
    p50Ms: median(rs.map((r) => r.p50Ms)),
    p99Ms: median(rs.map((r) => r.p99Ms)),
    gatewayUsPerCall: median(rs.map((r) => r.gatewayUsPerCall)),
    pgUsPerCall: median(rs.map((r) => r.pgUsPerCall)),
  }));
  console.log(
    `\nGetAppointment at ${concurrency} in flight, 30 tenants on 2 shards, pool max ${POOL_MAX}; ` +
      `median of ${rounds} alternating rounds of ${durationMs / 1000} s\n`,
  );
  console.log(
    formatTable(
      ['gateway', 'calls/s', 'p50 ms', 'p99 ms', 'gateway µs/call', 'pg µs/call'],
      summary.map((s, i) => [
        VARIANTS[i]!.name,
        fmt(s.callsPerSec, 0),
        fmt(s.p50Ms, 2),
        fmt(s.p99Ms, 2),
        fmt(s.gatewayUsPerCall, 0),
        fmt(s.pgUsPerCall, 0),
      ]),
    ),
  );
  const [off, on] = summary as [Round, Round];
  console.log(
    `\ncoalesced ÷ one statement per read: throughput ×${fmt(on.callsPerSec / off.callsPerSec, 2)}, ` +
      `gateway CPU ×${fmt(on.gatewayUsPerCall / off.gatewayUsPerCall, 2)}, ` +
      `PostgreSQL CPU ×${fmt(on.pgUsPerCall / off.pgUsPerCall, 2)} per call`,
  );
  const dir = `${repoRoot}bench/results`;
  const file = `${dir}/coalescing-${new Date().toISOString().replaceAll(':', '-')}.json`;
  await mkdir(dir, { recursive: true });
  const variants = VARIANTS.map((v, i) => ({ ...v, rounds: results[i], median: summary[i] }));
  await writeFile(file, `${JSON.stringify({ concurrency, durationMs, variants }, null, 2)}\n`);
  console.log(`\nresults written to ${file.slice(repoRoot.length)}`);
}

runBench(main, progress);
