/**
 * The load generator: a child process of run.ts, so its CPU work (request encoding, the client
 * libraries) is not charged to the server under test. It takes one cell at a time over IPC, keeps
 * `concurrency` calls in flight for the cell's duration, and reports the figures.
 */
import { performance } from 'node:perf_hooks';
import type { CellResult, CellSpec, FromGenerator, ToGenerator } from './protocol.js';
import { summarize } from './stats.js';
import { createTargets, type Targets } from './targets.js';

let targets: Targets | undefined;
/** Run-wide call counter: every call, of every cell, gets the next number. */
let counter = 0;

function send(message: FromGenerator): void {
  process.send?.(message);
}

interface Drive {
  calls: number;
  errors: number;
  errorSample?: string;
  elapsedMs: number;
}

/** Keeps `concurrency` calls in flight until `durationMs` has passed; records successful latencies. */
async function drive(
  op: (i: number) => Promise<unknown>,
  concurrency: number,
  durationMs: number,
  latenciesMs?: number[],
): Promise<Drive> {
  const start = performance.now();
  const end = start + durationMs;
  const result: Drive = { calls: 0, errors: 0, elapsedMs: 0 };
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await op(counter++);
        latenciesMs?.push(performance.now() - t0);
        result.calls++;
      } catch (err) {
        result.errors++;
        result.errorSample ??= describe(err);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  result.elapsedMs = performance.now() - start;
  return result;
}

function describe(err: unknown): string {
  const e = err as { code?: unknown; details?: unknown; message?: unknown };
  const text = String(e.details ?? e.message ?? err);
  return `${typeof e.code === 'number' || typeof e.code === 'string' ? `${e.code}: ` : ''}${text}`.slice(
    0,
    200,
  );
}

async function runCell(spec: CellSpec): Promise<CellResult> {
  if (!targets) throw new Error('the load generator was not initialised');
  const op = targets.ops[spec.op];
  const latencies: number[] = [];
  const cpuBefore = process.cpuUsage();
  const run = await drive(op, spec.concurrency, spec.durationMs, latencies);
  const cpu = process.cpuUsage(cpuBefore);
  const s = summarize(latencies);
  return {
    ...spec,
    calls: run.calls,
    errors: run.errors,
    ...(run.errorSample === undefined ? {} : { errorSample: run.errorSample }),
    elapsedMs: run.elapsedMs,
    callsPerSec: (run.calls * 1000) / run.elapsedMs,
    p50Ms: s.p50,
    p99Ms: s.p99,
    meanMs: s.mean,
    maxMs: s.max,
    clientCpuMs: (cpu.user + cpu.system) / 1000,
  };
}

process.on('message', (message: ToGenerator) => {
  const handle = async (): Promise<FromGenerator> => {
    if (message.type === 'init') {
      targets = await createTargets(message.dataset);
      return { type: 'ready' };
    }
    return { type: 'result', result: await runCell(message.spec) };
  };
  handle().then(send, (err: unknown) =>
    send({
      type: 'error',
      message: err instanceof Error ? (err.stack ?? err.message) : String(err),
    }),
  );
});

/** Closes and exits; process.exit, unlike death by signal, lets node write a --cpu-prof profile. */
function leave(): void {
  const closing = targets?.close() ?? Promise.resolve();
  void closing.finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2_000).unref();
}

// The orchestrator closing the channel means the run is over (or it died): close and leave.
process.on('disconnect', leave);
process.on('SIGTERM', leave); // how stopChild ends it
process.on('SIGINT', () => undefined); // Ctrl-C reaches the whole group; the parent cleans up.
