import { fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { CellResult, FromGenerator, ToGenerator } from './protocol.js';

/** The repository root (bench/..), where `src/main.ts` lives. */
export const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/**
 * Teardown steps, run newest first, each at most once, whatever failed before: the run's only
 * exit path, also on Ctrl-C and on a failed start.
 */
export class Cleanup {
  readonly #steps: { label: string; run: () => Promise<void> }[] = [];
  #running: Promise<string[]> | undefined;

  add(label: string, run: () => Promise<void>): void {
    this.#steps.push({ label, run });
  }

  /** Runs every step; returns the failures as messages instead of throwing. */
  runAll(): Promise<string[]> {
    this.#running ??= (async () => {
      const failures: string[] = [];
      for (const step of this.#steps.reverse()) {
        try {
          await step.run();
        } catch (err) {
          failures.push(`${step.label}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      return failures;
    })();
    return this.#running;
  }
}

/** Ends a child: SIGTERM (graceful), then SIGKILL if it is still there after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/**
 * Forks a TypeScript script of bench/ under tsx, with an IPC channel and inherited stderr;
 * `nodeArgs` go to node itself (e.g. --cpu-prof).
 */
export function forkScript(name: string, nodeArgs: readonly string[] = []): ChildProcess {
  return fork(fileURLToPath(new URL(name, import.meta.url)), [], {
    execArgv: ['--import', 'tsx', ...nodeArgs],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** The next IPC message of a child that passes `accept`; rejects if the child exits first. */
export function nextMessage<T>(child: ChildProcess, accept: (m: unknown) => m is T): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown): void => {
      if (!accept(m)) return;
      off();
      resolve(m);
    };
    const onExit = (code: number | null, signal: string | null): void => {
      off();
      reject(new Error(`child process ${child.pid} exited (${signal ?? code}) before answering`));
    };
    const off = (): void => {
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/** A gateway running as `node --import tsx src/main.ts`. */
export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly address: string;
  /** Its log lines at warn level or above, and anything on stderr, as they arrive. */
  readonly problems: string[];
}

/** Gateway settings passed as SHARDGATE_* environment variables. */
export interface GatewayEnv {
  catalogUrl: string;
  sharedUrl: string;
  shards: readonly { name: string; url: string }[];
  poolMax: number;
  /** Extra node options for the gateway process, e.g. --cpu-prof. */
  nodeArgs?: readonly string[];
  /** More SHARDGATE_* settings, e.g. SHARDGATE_READ_BATCH_STATEMENTS. */
  settings?: Readonly<Record<string, string>>;
}

/**
 * Spawns the gateway on 127.0.0.1:0 and waits for its "shardgate listening on host:port" line.
 * Inherited SHARDGATE_* variables are dropped so the run does not depend on the caller's shell.
 */
export async function spawnGateway(env: GatewayEnv, cleanup: Cleanup): Promise<GatewayProcess> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('SHARDGATE_')),
  );
  const child = spawn(
    process.execPath,
    [...(env.nodeArgs ?? []), '--import', 'tsx', 'src/main.ts'],
    {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...inherited,
        SHARDGATE_LISTEN: '127.0.0.1:0',
        SHARDGATE_CATALOG_URL: env.catalogUrl,
        SHARDGATE_SHARED_URL: env.sharedUrl,
        SHARDGATE_SHARDS: env.shards.map((s) => `${s.name}=${s.url}`).join(' '),
        SHARDGATE_POOL_MAX: String(env.poolMax),
        SHARDGATE_LOG_LEVEL: 'info',
        ...env.settings,
      },
    },
  );
  cleanup.add('stop the gateway', () => stopChild(child));
  const problems: string[] = [];
  const stderrTail: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    if (line.trim() === '') return;
    problems.push(`stderr: ${line.slice(0, 300)}`);
    stderrTail.push(line);
  });
  const listening = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const entry = parseLogLine(line);
      const match = /shardgate listening on (\S+)/.exec(entry?.msg ?? '');
      if (match) resolve(match[1]!);
      if (entry && entry.level >= 40) problems.push(describeLogEntry(entry));
    });
    child.once('exit', (code, signal) =>
      reject(
        new Error(
          `the gateway exited (${signal ?? code}) before listening: ${stderrTail.slice(-5).join(' | ')}`,
        ),
      ),
    );
    setTimeout(
      () => reject(new Error('the gateway did not start listening within 60 s')),
      60_000,
    ).unref();
  });
  return { child, address: await listening, problems };
}

interface LogEntry {
  level: number;
  msg?: string;
  err?: { message?: string; type?: string };
}

function parseLogLine(line: string): LogEntry | undefined {
  try {
    const value = JSON.parse(line) as unknown;
    return typeof value === 'object' && value !== null && 'level' in value
      ? (value as LogEntry)
      : undefined;
  } catch {
    return undefined;
  }
}

function describeLogEntry(e: LogEntry): string {
  const level = e.level >= 60 ? 'fatal' : e.level >= 50 ? 'error' : 'warn';
  const err = e.err ? ` (${e.err.type ?? 'Error'}: ${e.err.message ?? ''})` : '';
  return `${level}: ${e.msg ?? ''}${err}`.slice(0, 300);
}

/**
 * Runs a benchmark's `main` with the process's only exit: every process and temp directory it
 * registered is cleaned up on success, failure or a signal.
 */
export function runBench(
  main: (cleanup: Cleanup) => Promise<void>,
  progress: (line: string) => void,
): void {
  const cleanup = new Cleanup();
  let exiting = false;
  const finish = async (code: number, reason?: unknown): Promise<void> => {
    if (exiting) return;
    exiting = true;
    if (reason !== undefined) {
      progress(
        `failed: ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`,
      );
    }
    progress('cleaning up (processes, PostgreSQL, temp directory)…');
    const failures = await cleanup.runAll();
    for (const f of failures) progress(`cleanup: ${f}`);
    process.exit(failures.length > 0 && code === 0 ? 1 : code);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => void finish(130, `interrupted by ${signal}`));
  }
  main(cleanup).then(
    () => finish(0),
    (err: unknown) => finish(1, err),
  );
}

/** Sends one message to a load generator and waits for its reply; its errors are thrown here. */
export async function ask(
  generator: ChildProcess,
  message: ToGenerator,
): Promise<CellResult | undefined> {
  const reply = nextMessage(
    generator,
    (m): m is FromGenerator => typeof m === 'object' && m !== null,
  );
  generator.send(message);
  const answer = await reply;
  if (answer.type === 'error') throw new Error(`load generator: ${answer.message}`);
  return answer.type === 'result' ? answer.result : undefined;
}
