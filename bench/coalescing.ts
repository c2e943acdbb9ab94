/**
 * `npm run bench:coalescing`: GetAppointment, GetState and GetLatestHandoff with point-read
 * coalescing off (`SHARDGATE_READ_BATCH_STATEMENTS=0`, one statement per read) and on (the
 * default), side by side in one run. Two gateway processes serve the same shards and tenants, each with its own load
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
import type { ChildProcess } from 'node:child_process';
import type { CellResult, CellSpec, OpName } from './protocol.js';
import { postmasterPids, SEEDED_BEFORE_MS, seedTenants, startBenchCluster } from './setup.js';
import { cpuMsOf, fmt, formatTable, treeCpuMs } from './stats.js';

const progress = (line: string): void => void process.stderr.write(`[bench:coalescing] ${line}\n`);
const POOL_MAX = 10;
/** The coalesced reads: by id, a single-row table read whole, the newest row for a key. */
const OPS_MEASURED: OpName[] = ['sg.GetAppointment', 'sg.GetState', 'sg.GetLatestHandoff'];

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
    handoffsPerTenant: 5,
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
          proxyAddress: gateway.address,
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
  const median = (xs: number[]): number =>
    [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const measured = [];
  for (const op of OPS_MEASURED) {
    const results: Round[][] = VARIANTS.map(() => []);
    const cell = (ms: number) => ({ op, concurrency, durationMs: ms });
    // Unmeasured: JIT compilation and pool growth in both gateways before the first round.
    for (const generator of generators) await ask(generator, { type: 'cell', spec: cell(2_000) });
    for (let round = 0; round < rounds; round++) {
      for (const [i, variant] of VARIANTS.entries()) {
        const spec = cell(durationMs);
        results[i]!.push(await measureRound(generators[i]!, gateways[i]!.child.pid, pgPids, spec));
        progress(`${op}, round ${round + 1}, ${variant.name}: done`);
      }
    }
    const summary = results.map((rs) => ({
      callsPerSec: median(rs.map((r) => r.callsPerSec)),
      p50Ms: median(rs.map((r) => r.p50Ms)),
      p99Ms: median(rs.map((r) => r.p99Ms)),
      gatewayUsPerCall: median(rs.map((r) => r.gatewayUsPerCall)),
      pgUsPerCall: median(rs.map((r) => r.pgUsPerCall)),
    }));
    measured.push({
      op,
      variants: VARIANTS.map((v, i) => ({ ...v, rounds: results[i], median: summary[i]! })),
    });
  }
  console.log(
    `\n${concurrency} calls in flight, 30 tenants on 2 shards, pool max ${POOL_MAX}; ` +
      `median of ${rounds} alternating rounds of ${durationMs / 1000} s\n`,
  );
  console.log(
    formatTable(
      ['op', 'gateway', 'calls/s', 'p50 ms', 'p99 ms', 'gateway µs/call', 'pg µs/call'],
      measured.flatMap(({ op, variants }) =>
        variants.map(({ name, median: m }) => [
          op.slice('sg.'.length),
          name,
          fmt(m.callsPerSec, 0),
          fmt(m.p50Ms, 2),
          fmt(m.p99Ms, 2),
          fmt(m.gatewayUsPerCall, 0),
          fmt(m.pgUsPerCall, 0),
        ]),
      ),
    ),
  );
  console.log('\ncoalesced ÷ one statement per read, per call:');
  for (const { op, variants } of measured) {
    const [off, on] = variants.map((v) => v.median) as [Round, Round];
    console.log(
      `  ${op.slice('sg.'.length)}: throughput ×${fmt(on.callsPerSec / off.callsPerSec, 2)}, ` +
        `gateway CPU ×${fmt(on.gatewayUsPerCall / off.gatewayUsPerCall, 2)}, ` +
        `PostgreSQL CPU ×${fmt(on.pgUsPerCall / off.pgUsPerCall, 2)}`,
    );
  }
  const dir = `${repoRoot}bench/results`;
  const file = `${dir}/coalescing-${new Date().toISOString().replaceAll(':', '-')}.json`;
  await mkdir(dir, { recursive: true });
  await writeFile(file, `${JSON.stringify({ concurrency, durationMs, measured }, null, 2)}\n`);
  console.log(`\nresults written to ${file.slice(repoRoot.length)}`);
}

/** One measured cell after a short warm-up, with the CPU the gateway and the shards spent on it. */
async function measureRound(
  generator: ChildProcess,
  pid: number | undefined,
  pgPids: number[],
  spec: CellSpec,
): Promise<Round> {
  await ask(generator, { type: 'cell', spec: { ...spec, durationMs: 500 } });
  const before = { gateway: cpuMsOf(pid) ?? 0, pg: treeCpuMs(pgPids) ?? 0 };
  const r = (await ask(generator, { type: 'cell', spec })) as CellResult;
  const after = { gateway: cpuMsOf(pid) ?? 0, pg: treeCpuMs(pgPids) ?? 0 };
  if (r.errors > 0) throw new Error(`${spec.op}: ${r.errors} errors, e.g. ${r.errorSample}`);
  return {
    callsPerSec: r.callsPerSec,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    gatewayUsPerCall: ((after.gateway - before.gateway) * 1000) / r.calls,
    pgUsPerCall: ((after.pg - before.pg) * 1000) / r.calls,
  };
}

runBench(main, progress);
