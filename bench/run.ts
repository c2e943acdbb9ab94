/**
 * `npm run bench`: side by side, in one run and on the same data, (a) a bare grpc-js echo server
 * and its floor rows (GetAppointment from memory; the thin proxy over PostgreSQL), (b) pg.Pool
 * straight to the shards with the gateway's own SQL, (c) shardgate — calls/s and p50/p99 at several concurrencies, with the ratios c/a and c/b. Load comes
 * from a separate process. Prints figures only: timings on a shared machine are never asserted.
 * Options: see options.ts (`npm run bench -- --quick` for a ~30 s smoke run).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseOptions, type BenchOptions } from './options.js';
import {
  ask,
  Cleanup,
  forkScript,
  nextMessage,
  repoRoot,
  runBench,
  spawnGateway,
  stopChild,
} from './processes.js';
import { isGatewayOp, type BenchTenant, type CellSpec, type ProxyInit } from './protocol.js';
import { errorLines, resultsTable, withRatios, type MeasuredCell } from './report.js';
import { postmasterPids, SEEDED_BEFORE_MS, seedTenants, startBenchCluster } from './setup.js';
import { cpuMsOf, treeCpuMs } from './stats.js';

/** Shards of the embedded cluster, and connections per shard pool (the gateway's default, 10). */
const SHARD_COUNT = 2;
const POOL_MAX = 10;

const progress = (line: string): void => void process.stderr.write(`[bench] ${line}\n`);

/** The processes of a run, ready to measure. */
interface Rig {
  generator: ChildProcess;
  gatewayPid: number | undefined;
  echoPid: number | undefined;
  proxyPid: number | undefined;
  pgPids: number[];
  tenants: BenchTenant[];
  gatewayProblems: string[];
}

/** Starts PostgreSQL, the gateway, the echo server and the load generator; seeds the tenants. */
async function setUp(options: BenchOptions, cleanup: Cleanup): Promise<Rig> {
  const profileArgs = ['--cpu-prof', `--cpu-prof-dir=${repoRoot}bench/results`];
  progress(`starting embedded PostgreSQL (catalog + ${SHARD_COUNT} shards)…`);
  const bench = await startBenchCluster(SHARD_COUNT, cleanup);
  const { cluster } = bench;
  progress('starting the gateway (node --import tsx src/main.ts) and the echo server…');
  const [gateway, echo] = await Promise.all([
    spawnGateway(
      { ...cluster, poolMax: POOL_MAX, nodeArgs: options.profile ? profileArgs : [] },
      cleanup,
    ),
    startEchoServer(cleanup),
  ]);
  progress(`gateway on ${gateway.address}; seeding ${options.tenants} tenants…`);
  const tenants = await seedTenants(gateway.address, options);
  const shardUrls = Object.fromEntries(cluster.shards.map((s) => [s.name, s.url]));
  const proxy = await startProxyServer(
    options.profile ? profileArgs : [],
    {
      type: 'init',
      shardUrls,
      poolMax: POOL_MAX,
      tenants,
    },
    cleanup,
  );
  const generator = forkScript('load-generator.ts', options.profile ? profileArgs : []);
  cleanup.add('stop the load generator', () => stopChild(generator, 3_000));
  await ask(generator, {
    type: 'init',
    dataset: {
      echoAddress: `127.0.0.1:${echo.port}`,
      echoNiceAddress: `127.0.0.1:${echo.nicePort}`,
      proxyAddress: `127.0.0.1:${proxy.port}`,
      gatewayAddress: gateway.address,
      shardUrls,
      poolMax: POOL_MAX,
      tenants,
      seededBeforeMs: SEEDED_BEFORE_MS,
    },
  });
  return {
    generator,
    gatewayPid: gateway.child.pid,
    echoPid: echo.pid,
    proxyPid: proxy.pid,
    pgPids: await postmasterPids(bench),
    tenants,
    gatewayProblems: gateway.problems,
  };
}

/** Every cell, concurrency outermost: the three targets at one concurrency run close in time. */
async function measureAll(rig: Rig, options: BenchOptions): Promise<MeasuredCell[]> {
  // One pass over every op first, so the first cells do not pay for JIT compilation and pool growth.
  for (const op of options.ops) {
    await ask(rig.generator, {
      type: 'cell',
      spec: { op, concurrency: 8, durationMs: options.warmupMs },
    });
  }
  const cells: MeasuredCell[] = [];
  for (const concurrency of options.concurrencies) {
    for (const op of options.ops) {
      const spec: CellSpec = { op, concurrency, durationMs: options.durationMs };
      cells.push(await measureCell(rig, spec, options.warmupMs));
      const last = cells.at(-1)!;
      progress(
        `${op} @${concurrency}: ${last.callsPerSec.toFixed(0)} calls/s, p50 ${last.p50Ms.toFixed(2)} ms`,
      );
    }
  }
  return withRatios(cells);
}

/** One cell after its warm-up, with the CPU its server and the shards spent on the measured calls. */
async function measureCell(rig: Rig, spec: CellSpec, warmupMs: number): Promise<MeasuredCell> {
  await ask(rig.generator, { type: 'cell', spec: { ...spec, durationMs: warmupMs } });
  const serverPid = spec.op.startsWith('echo')
    ? rig.echoPid
    : spec.op.startsWith('proxy.')
      ? rig.proxyPid
      : isGatewayOp(spec.op)
        ? rig.gatewayPid
        : undefined;
  const before = { server: cpuMsOf(serverPid), pg: treeCpuMs(rig.pgPids) };
  const fromUs = Number(process.hrtime.bigint() / 1000n);
  const result = await ask(rig.generator, { type: 'cell', spec });
  const window = { fromUs, toUs: Number(process.hrtime.bigint() / 1000n) };
  if (!result) throw new Error('the load generator answered a cell without a result');
  const after = { server: cpuMsOf(serverPid), pg: treeCpuMs(rig.pgPids) };
  const perCall = (end?: number, start?: number): number | undefined =>
    end === undefined || start === undefined || result.calls === 0
      ? undefined
      : ((end - start) * 1000) / result.calls;
  const server = perCall(after.server, before.server);
  const pg = spec.op.startsWith('echo') ? undefined : perCall(after.pg, before.pg);
  return {
    ...result,
    window,
    ...(server === undefined ? {} : { serverCpuUsPerCall: server }),
    ...(pg === undefined ? {} : { pgCpuUsPerCall: pg }),
  };
}

/** Prints the table and notes, writes bench/results/<timestamp>.json, returns its path. */
async function report(run: {
  startedAt: Date;
  setupMs: number;
  options: BenchOptions;
  rig: Rig;
  cells: MeasuredCell[];
}): Promise<string> {
  const { startedAt, options, rig, cells } = run;
  console.log(
    `\nshardgate bench — ${startedAt.toISOString()}, ${cpus().length} CPUs, node ${process.version}`,
  );
  console.log(
    `${rig.tenants.length} tenants on ${SHARD_COUNT} shards, pool max ${POOL_MAX} per shard (gateway and pg alike), ` +
      `${options.durationMs / 1000} s per cell after ${options.warmupMs / 1000} s warm-up\n`,
  );
  console.log(resultsTable(cells, options.ops));
  console.log(
    '\nc/a, c/b: calls/s of the gateway op ÷ echo (a) or its direct-pg twin (b) at the same concurrency;' +
      '\np50 +ms vs b: latency the gateway adds to the same SQL sent straight to the shard;' +
      '\nload µs/call: CPU of the load generator (the client side); srv µs/call: CPU of the echo server or' +
      '\ngateway process; pg µs/call: CPU of the shard servers. (a) and sg.* are driven by a bare grpc-js' +
      "\nclient, typed.* by shardgate's typed client. proxy.GetAppointment is the thinnest gRPC server over" +
      '\nPostgreSQL (grpc-js, protobuf, one pg.Pool.query per call, nothing else): the floor of any gateway.',
  );
  const problems = [...errorLines(cells), ...rig.gatewayProblems.map((p) => `gateway ${p}`)];
  if (problems.length > 0) console.log(`\nproblems seen:\n  ${problems.slice(0, 30).join('\n  ')}`);

  const dir = `${repoRoot}bench/results`;
  const file = `${dir}/${startedAt.toISOString().replaceAll(':', '-')}.json`;
  const machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    node: process.version,
    platform: process.platform,
  };
  const { setupMs } = run;
  const json = {
    startedAt,
    options,
    machine,
    shards: SHARD_COUNT,
    poolMax: POOL_MAX,
    setupMs,
    cells,
    problems,
  };
  await mkdir(dir, { recursive: true });
  await writeFile(file, `${JSON.stringify(json, null, 2)}\n`);
  return file.slice(repoRoot.length);
}

async function main(cleanup: Cleanup): Promise<void> {
  const options = parseOptions();
  const startedAt = new Date();
  const setupStart = performance.now();
  const rig = await setUp(options, cleanup);
  const setupMs = performance.now() - setupStart;
  progress(
    `setup took ${(setupMs / 1000).toFixed(1)} s; measuring ${options.ops.length} ops × ${options.concurrencies.length} concurrencies…`,
  );
  const cells = await measureAll(rig, options);
  const file = await report({ startedAt, setupMs, options, rig, cells });
  console.log(`\nresults written to ${file}`);
  if (options.profile) {
    console.log(
      'CPU profiles (one per process) are in bench/results/; to see where one process spent its CPU ' +
        `during one cell, per call:\n  npm run bench:profile -- bench/results/<profile>.cpuprofile ${file} <op> <concurrency>`,
    );
  }
}

/** Forks the echo server process and waits for its two ports. */
async function startEchoServer(
  cleanup: Cleanup,
): Promise<{ port: number; nicePort: number; pid: number | undefined }> {
  const child = forkScript('echo-server.ts');
  cleanup.add('stop the echo server', () => stopChild(child, 3_000));
  type Listening = { type: 'listening'; port: number; nicePort: number };
  const isListening = (m: unknown): m is Listening =>
    (m as { type?: unknown }).type === 'listening';
  const { port, nicePort } = await nextMessage(child, isListening);
  return { port, nicePort, pid: child.pid };
}

/** The thin proxy (bench/proxy-server.ts), given the seeded tenants; resolves once it listens. */
async function startProxyServer(
  nodeArgs: string[],
  init: ProxyInit,
  cleanup: Cleanup,
): Promise<{ port: number; pid: number | undefined }> {
  const child = forkScript('proxy-server.ts', nodeArgs);
  cleanup.add('stop the proxy server', () => stopChild(child, 3_000));
  type Listening = { type: 'listening'; port: number };
  const isListening = (m: unknown): m is Listening =>
    (m as { type?: unknown }).type === 'listening';
  const listening = nextMessage(child, isListening);
  child.send(init);
  const { port } = await listening;
  return { port, pid: child.pid };
}

runBench(main, progress);
