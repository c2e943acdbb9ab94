import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestTopology } from './harness.js';

/** A gateway running as a separate OS process (`node --import tsx src/main.ts`). */
export interface GatewayProcess {
  /** `127.0.0.1:<port>` the child reported it listens on. */
  readonly address: string;
  readonly port: number;
  readonly pid: number;
  /** Everything the child wrote so far (stdout and stderr), for failure messages. */
  output(): string;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. Resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const LISTENING = /shardgate listening on 127\.0\.0\.1:(\d+)/;

/** Children still running; killed when this process exits, so a failed test never leaks one. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

/**
 * Spawns a gateway process against a test topology and resolves once it logs its listening
 * address. Rejects (and kills the child) if it exits first or does not listen within `startMs`.
 */
export async function spawnGatewayProcess(
  topology: TestTopology | undefined,
  options: { startMs?: number; env?: Record<string, string> } = {},
): Promise<GatewayProcess> {
  installExitHook();
  const env: Record<string, string | undefined> = { ...process.env };
  // Nothing from the parent's environment may change the child's configuration.
  for (const key of Object.keys(env)) if (key.startsWith('SHARDGATE_')) delete env[key];
  // Without a topology the child runs as `npm start` does: on embedded PostgreSQL.
  const external = topology && {
    SHARDGATE_CATALOG_URL: topology.catalogUrl,
    SHARDGATE_SHARDS: topology.shards.map((s) => `${s.name}=${s.url}`).join(' '),
  };
  Object.assign(env, {
    ...external,
    SHARDGATE_LISTEN: '127.0.0.1:0',
    SHARDGATE_LOG_LEVEL: 'info',
    ...options.env,
  });
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: repoRoot,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      running.delete(child);
      resolve();
    });
  });

  let output = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => (output += chunk));

  const startMs = options.startMs ?? 20_000;
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      let pending = '';
      const timer = setTimeout(
        () => reject(new Error(`gateway process did not listen within ${startMs} ms:\n${output}`)),
        startMs,
      );
      child.stdout.on('data', (chunk: string) => {
        output += chunk;
        pending += chunk;
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) {
          const port = listeningPort(line);
          if (port !== undefined) {
            clearTimeout(timer);
            resolve(port);
          }
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(
          new Error(
            `gateway process exited (code ${code}, signal ${signal}) before listening:\n${output}`,
          ),
        );
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    throw err;
  }

  return {
    address: `127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    output: () => output,
    async stop(graceMs = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The port from the gateway's JSON "listening" log line, or undefined for any other line. */
function listeningPort(line: string): number | undefined {
  let msg: unknown;
  try {
    msg = (JSON.parse(line) as { msg?: unknown }).msg;
  } catch {
    return undefined;
  }
  const match = typeof msg === 'string' ? LISTENING.exec(msg) : null;
  return match ? Number(match[1]) : undefined;
}
