// `npm run bench:scale`: "10,000 clients over 3 shards on this machine". One run against a gateway
// child process (pool max 10 per shard) on 3 embedded PostgreSQL shards:
//   1. steady-state latency with 30 clients (GetAppointment / CreateAppointment / PatchState from
//      16 loops), 2. provisioning up to N tenants (CreateTenant, 16 in flight), 3. the same load
//   spread over all N clients (each call picks a random client), 4. gateway RSS and PostgreSQL
//   backend memory (Pss, else VmRSS) after the 30-client and after the N-client phase.
// Prints figures and writes bench/results/scale-<timestamp>.json; asserts nothing.
// Flags: --clients N (default 10000), --quick (2,000 clients, shorter cells).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createShardgateClient, type ShardgateClient } from '../src/client/index.js';
import { AppointmentStatus } from '../src/gen/shardgate/v1/appointment.js';
import { runBench, spawnGateway, repoRoot, type Cleanup } from './processes.js';
import { memoryOfGateway, memoryOfPostgres, type PgMemory } from './scale-memory.js';
import { postmasterPids, startBenchCluster } from './setup.js';
import { fmt, formatTable, summarize, type Summary } from './stats.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const clientsFlag = argv.indexOf('--clients');
const TOTAL = clientsFlag >= 0 ? Number(argv[clientsFlag + 1]) : quick ? 2_000 : 10_000;
if (!Number.isInteger(TOTAL) || TOTAL < 30) throw new Error('--clients needs an integer ≥ 30');
const SHARDS = 3;
const POOL_MAX = 10;
const SMALL = 30;
const LOOPS = 16;
const PROVISION_CONCURRENCY = 16;
const SECONDS = quick ? 2.5 : 5;
const progress = (line: string): void => void process.stderr.write(`[bench:scale] ${line}\n`);

const clientId = (i: number): string => `scale-${String(i).padStart(5, '0')}`;
const appointment = (i: number) => ({
  id: '',
  clientPhone: '555-0100',
  scheduledAt: new Date(Date.UTC(2032, 0, 1) + i * 60_000),
  serviceType: 'tune-up',
  status: AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED,
});

/** Runs `task(i)` for i in [from, to) with `concurrency` in flight; returns the error count. */
async function forEachBounded(
  from: number,
  to: number,
  concurrency: number,
  task: (i: number) => Promise<void>,
): Promise<{ errors: number; firstError?: string }> {
  let next = from;
  let errors = 0;
  let firstError: string | undefined;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < to) {
        const i = next++;
        try {
          await task(i);
        } catch (err) {
          errors++;
          firstError ??= err instanceof Error ? err.message : String(err);
        }
      }
    }),
  );
  return { errors, firstError };
}

interface LoadResult {
  clients: number;
  seconds: number;
  calls: number;
  callsPerSecond: number;
  errors: number;
  firstError?: string;
  all: Summary;
  byOp: Record<string, Summary>;
}

/**
 * For SECONDS, LOOPS loops each call GetAppointment / CreateAppointment / PatchState in turn on a
 * random client among the first `clients`. GetAppointment reads one of that client's known
 * appointments (every client gets one before the cell; the cell's creates add more).
 */
async function runLoad(
  sg: ShardgateClient,
  clients: number,
  known: Map<number, string[]>,
  seconds = SECONDS,
): Promise<LoadResult> {
  const ops = ['GetAppointment', 'CreateAppointment', 'PatchState'] as const;
  const samples: Record<string, number[]> = Object.fromEntries(ops.map((o) => [o, []]));
  const all: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let seq = 0;
  const until = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: LOOPS }, async (_, loop) => {
      let k = loop;
      while (performance.now() < until) {
        const n = 1 + Math.floor(Math.random() * clients);
        const id = clientId(n);
        const op = ops[k++ % ops.length]!;
        const t0 = performance.now();
        try {
          if (op === 'GetAppointment') {
            const ids = known.get(n)!;
            await sg.appointments.getAppointment({
              clientId: id,
              id: ids[Math.floor(Math.random() * ids.length)]!,
            });
          } else if (op === 'CreateAppointment') {
            const r = await sg.appointments.createAppointment({
              clientId: id,
              appointment: appointment(seq++),
            });
            known.get(n)!.push(r.appointment!.id);
          } else {
            await sg.state.patchState({ clientId: id, patch: { lastCall: seq++, loop } });
          }
          const ms = performance.now() - t0;
          samples[op]!.push(ms);
          all.push(ms);
        } catch (err) {
          errors++;
          firstError ??= `${op}: ${err instanceof Error ? err.message : String(err)}`;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  return {
    clients,
    seconds: elapsed,
    calls: all.length,
    callsPerSecond: all.length / elapsed,
    errors,
    firstError,
    all: summarize(all),
    byOp: Object.fromEntries(ops.map((o) => [o, summarize(samples[o]!)])),
  };
}

/** Gives clients [from, to) one appointment each (so GetAppointment has something to read). */
async function seedAppointments(
  sg: ShardgateClient,
  from: number,
  to: number,
  known: Map<number, string[]>,
): Promise<void> {
  const r = await forEachBounded(from, to, PROVISION_CONCURRENCY, async (n) => {
    const res = await sg.appointments.createAppointment({
      clientId: clientId(n),
      appointment: appointment(n),
    });
    known.set(n, [res.appointment!.id]);
  });
  if (r.errors > 0) throw new Error(`seeding appointments: ${r.errors} errors (${r.firstError})`);
}

async function main(cleanup: Cleanup): Promise<void> {
  progress(`starting ${SHARDS} embedded shards and the gateway (pool max ${POOL_MAX})…`);
  const bench = await startBenchCluster(SHARDS, cleanup);
  const { cluster } = bench;
  const gateway = await spawnGateway(
    {
      catalogUrl: cluster.catalogUrl,
      sharedUrl: cluster.sharedUrl,
      shards: cluster.shards,
      poolMax: POOL_MAX,
    },
    cleanup,
  );
  const gwPid = gateway.child.pid!;
  const pms = await postmasterPids(bench);
  const sg = createShardgateClient({ address: gateway.address, defaultDeadlineMs: 60_000 });
  cleanup.add('close the client', async () => sg.close());
  const known = new Map<number, string[]>();

  // Phase 1: 30 clients.
  progress(`creating ${SMALL} tenants…`);
  const created = await forEachBounded(1, SMALL + 1, PROVISION_CONCURRENCY, async (n) => {
    await sg.tenants.createTenant({ clientId: clientId(n) });
  });
  if (created.errors > 0) throw new Error(`CreateTenant: ${created.firstError}`);
  await seedAppointments(sg, 1, SMALL + 1, known);
  const gwBaseline = memoryOfGateway(gwPid);
  progress('warm-up (1 s, not recorded)…');
  await runLoad(sg, SMALL, known, 1);
  progress(`30-client load, ${SECONDS} s…`);
  const small = await runLoad(sg, SMALL, known);
  const gwAfterSmall = memoryOfGateway(gwPid);
  const pgAfterSmall = memoryOfPostgres(pms);

  // Phase 2: provisioning.
  progress(`provisioning up to ${TOTAL} tenants, ${PROVISION_CONCURRENCY} in flight…`);
  const provisionRates: { upTo: number; tenantsPerSecond: number }[] = [];
  const provStart = performance.now();
  let blockStart = performance.now();
  let done = SMALL;
  let provErrors = 0;
  let provFirstError: string | undefined;
  for (let from = SMALL + 1; from <= TOTAL;) {
    const blockEnd = Math.min(TOTAL, (Math.floor((from - 1) / 1000) + 1) * 1000);
    const r = await forEachBounded(from, blockEnd + 1, PROVISION_CONCURRENCY, async (n) => {
      await sg.tenants.createTenant({ clientId: clientId(n) });
    });
    provErrors += r.errors;
    provFirstError ??= r.firstError;
    const now = performance.now();
    const rate = (blockEnd - done) / ((now - blockStart) / 1000);
    provisionRates.push({ upTo: blockEnd, tenantsPerSecond: rate });
    progress(
      `  ${blockEnd} tenants: ${rate.toFixed(1)} tenants/s over the last ${blockEnd - done}` +
        ` (gateway RSS ${fmt(memoryOfGateway(gwPid) / 1024, 0)} MiB)`,
    );
    done = blockEnd;
    blockStart = now;
    from = blockEnd + 1;
  }
  const provSeconds = (performance.now() - provStart) / 1000;
  if (provErrors > 0) progress(`  ${provErrors} CreateTenant errors (first: ${provFirstError})`);
  const gwAfterProvision = memoryOfGateway(gwPid);

  // Phase 3: N clients.
  progress(`one appointment for each of clients ${SMALL + 1}…${TOTAL} (touches every schema)…`);
  const seedStart = performance.now();
  await seedAppointments(sg, SMALL + 1, TOTAL + 1, known);
  const seedSeconds = (performance.now() - seedStart) / 1000;
  progress(`${TOTAL}-client load (random client per call), ${SECONDS} s…`);
  const wide = await runLoad(sg, TOTAL, known);
  const gwAfterWide = memoryOfGateway(gwPid);
  const pgAfterWide = memoryOfPostgres(pms);

  // Report.
  const ms = (v: number): string => fmt(v, 2);
  const mib = (kb: number): string => fmt(kb / 1024, 1);
  const ratio = (a: number, b: number): string => `${fmt(a / b, 2)}×`;
  console.log(
    `\nshardgate bench:scale — ${new Date().toISOString()}, ${SHARDS} shards, pool max ${POOL_MAX}` +
      ` per shard, ${LOOPS} loops, ${SECONDS} s per cell, ${TOTAL} clients\n`,
  );
  console.log(
    formatTable(
      ['load', 'calls/s', 'p50 ms', 'p99 ms', 'max ms', 'errors'],
      [small, wide]
        .map((r) => [
          `${r.clients} clients`,
          fmt(r.callsPerSecond, 0),
          ms(r.all.p50),
          ms(r.all.p99),
          ms(r.all.max),
          String(r.errors),
        ])
        .concat([
          [
            `ratio ${TOTAL}/${SMALL}`,
            ratio(wide.callsPerSecond, small.callsPerSecond),
            ratio(wide.all.p50, small.all.p50),
            ratio(wide.all.p99, small.all.p99),
            '',
            '',
          ],
        ]),
    ),
  );
  console.log('');
  console.log(
    formatTable(
      ['op (p50 / p99 ms)', `${SMALL} clients`, `${TOTAL} clients`],
      Object.keys(small.byOp).map((op) => [
        op,
        `${ms(small.byOp[op]!.p50)} / ${ms(small.byOp[op]!.p99)}`,
        `${ms(wide.byOp[op]!.p50)} / ${ms(wide.byOp[op]!.p99)}`,
      ]),
    ),
  );
  console.log('');
  console.log(
    `provisioning: ${TOTAL - SMALL} tenants in ${fmt(provSeconds, 1)} s = ` +
      `${fmt((TOTAL - SMALL) / provSeconds, 1)} tenants/s (${provErrors} errors); per 1,000: ` +
      provisionRates.map((p) => fmt(p.tenantsPerSecond, 0)).join(', '),
  );
  console.log(
    `seeding one appointment per client: ${fmt((TOTAL - SMALL) / seedSeconds, 0)} calls/s\n`,
  );
  const pgRow = (label: string, m: PgMemory): string[] => [
    label,
    String(m.processes),
    mib(m.sumKb),
    mib(m.maxKb),
    mib(m.clientBackends.sumKb),
    mib(m.clientBackends.maxKb),
    String(m.clientBackends.count),
  ];
  console.log(
    formatTable(
      ['memory (MiB)', 'gateway RSS'],
      [
        ['gateway at start (30 tenants)', mib(gwBaseline)],
        [`after ${SMALL}-client load`, mib(gwAfterSmall)],
        [`after provisioning ${TOTAL}`, mib(gwAfterProvision)],
        [`after ${TOTAL}-client load`, mib(gwAfterWide)],
      ],
    ),
  );
  console.log('');
  console.log(
    `PostgreSQL children of the ${pms.length} shard postmasters (${pgAfterWide.metric}):`,
  );
  console.log(
    formatTable(
      ['after', 'procs', 'sum', 'max', 'backends sum', 'backend max', 'backends'],
      [pgRow(`${SMALL}-client load`, pgAfterSmall), pgRow(`${TOTAL}-client load`, pgAfterWide)],
    ),
  );
  if (gateway.problems.length > 0) {
    console.log(`\ngateway warnings (${gateway.problems.length}), first: ${gateway.problems[0]}`);
  }

  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const dir = join(repoRoot, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `scale-${stamp}.json`);
  await writeFile(
    file,
    JSON.stringify(
      {
        bench: 'scale',
        at: new Date().toISOString(),
        argv,
        config: {
          shards: SHARDS,
          poolMax: POOL_MAX,
          loops: LOOPS,
          secondsPerCell: SECONDS,
          clients: TOTAL,
          provisionConcurrency: PROVISION_CONCURRENCY,
        },
        latency: {
          small,
          wide,
          ratio: {
            callsPerSecond: wide.callsPerSecond / small.callsPerSecond,
            p50: wide.all.p50 / small.all.p50,
            p99: wide.all.p99 / small.all.p99,
          },
        },
        provisioning: {
          tenants: TOTAL - SMALL,
          seconds: provSeconds,
          errors: provErrors,
          firstError: provFirstError,
          rates: provisionRates,
        },
        seedAppointmentsPerSecond: (TOTAL - SMALL) / seedSeconds,
        gatewayRssKb: {
          start: gwBaseline,
          afterSmallLoad: gwAfterSmall,
          afterProvisioning: gwAfterProvision,
          afterWideLoad: gwAfterWide,
        },
        postgres: { afterSmallLoad: pgAfterSmall, afterWideLoad: pgAfterWide },
        gatewayProblems: gateway.problems.slice(0, 20),
      },
      null,
      2,
    ),
  );
  console.log(`\nwrote ${file}`);
}

runBench(main, progress);
