import { EventEmitter } from 'node:events';
import pg from 'pg';

/** Settings for a LISTEN connection. */
export interface ListenerOptions {
  url: string;
  channel: string;
  /** Delay before the first reconnect; doubles up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  connectionTimeoutMs?: number;
  /**
   * How often an idle listener checks its server still answers. A LISTEN connection only reads,
   * so without this a frozen or partitioned server (no FIN, no RST) would go unnoticed for hours.
   */
  heartbeatMs?: number;
  /** A heartbeat unanswered this long counts as a lost connection. */
  heartbeatTimeoutMs?: number;
}

/**
 * A dedicated connection that LISTENs on one channel and reconnects with backoff. Emits
 * `notification` (payload string), `connected` after every (re)connect — notifications sent while
 * it was down are lost, so subscribers must resynchronise then — and `disconnected` (Error).
 */
export class PgListener extends EventEmitter {
  readonly #options: Required<ListenerOptions>;
  #client: pg.Client | undefined;
  #closed = false;
  #connected = false;
  #backoffMs: number;
  #timer: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(options: ListenerOptions) {
    super();
    this.#options = {
      minBackoffMs: 100,
      maxBackoffMs: 5_000,
      connectionTimeoutMs: 3_000,
      heartbeatMs: 2_000,
      heartbeatTimeoutMs: 3_000,
      ...options,
    };
    this.#backoffMs = this.#options.minBackoffMs;
  }

  /** True while notifications are being received. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Connects; resolves after the first attempt, whether or not it succeeded. */
  async start(): Promise<void> {
    await this.#connect();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearInterval(this.#heartbeat);
    const client = this.#client;
    this.#client = undefined;
    this.#connected = false;
    await client?.end().catch(() => undefined);
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client({
      connectionString: this.#options.url,
      connectionTimeoutMillis: this.#options.connectionTimeoutMs,
      application_name: 'shardgate-listener',
      keepAlive: true,
      // Like every pooled connection: nothing in `public` (or any schema) can shadow pg_catalog.
      options: '-c search_path=pg_catalog',
    });
    client.on('error', (err) => this.#lost(client, err));
    client.on('end', () => this.#lost(client, new Error('listener connection ended')));
    client.on('notification', (msg) => {
      if (msg.channel === this.#options.channel) this.emit('notification', msg.payload ?? '');
    });
    this.#client = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${pg.escapeIdentifier(this.#options.channel)}`);
    } catch (err) {
      this.#lost(client, err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (this.#client !== client || this.#closed) return;
    this.#connected = true;
    this.#backoffMs = this.#options.minBackoffMs;
    this.#startHeartbeat(client);
    this.emit('connected');
  }

  /** Runs `SELECT 1` every heartbeatMs; no answer within heartbeatTimeoutMs loses the connection. */
  #startHeartbeat(client: pg.Client): void {
    clearInterval(this.#heartbeat);
    let inFlight = false;
    this.#heartbeat = setInterval(() => {
      if (inFlight || this.#client !== client) return;
      inFlight = true;
      const timeout = setTimeout(
        () =>
          this.#lost(client, new Error('listener heartbeat unanswered; the server is unreachable')),
        this.#options.heartbeatTimeoutMs,
      );
      timeout.unref();
      client.query('SELECT 1').then(
        () => {
          clearTimeout(timeout);
          inFlight = false;
        },
        (err: unknown) => {
          clearTimeout(timeout);
          this.#lost(client, err instanceof Error ? err : new Error(String(err)));
        },
      );
    }, this.#options.heartbeatMs);
    this.#heartbeat.unref();
  }

  #lost(client: pg.Client, err: Error): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    clearInterval(this.#heartbeat);
    const wasConnected = this.#connected;
    this.#connected = false;
    void client.end().catch(() => undefined);
    if (this.#closed) return;
    if (wasConnected) this.emit('disconnected', err);
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, this.#options.maxBackoffMs);
    this.#timer = setTimeout(() => void this.#connect(), delay);
    this.#timer.unref();
  }
}
