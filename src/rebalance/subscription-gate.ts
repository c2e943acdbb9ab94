import { ShardgateError } from '../core/errors.js';
import type { Database } from '../pg/database.js';
import { hasSubscriptionRoom } from '../shards/replication.js';

/** One move's request to subscribe on a target server. */
export interface GateRequest {
  /** `host:port` of the target's PostgreSQL server (its databases share replication workers). */
  server: string;
  target: Database;
  /** Epoch ms after which waiting for room fails the move. */
  deadline: number;
  /** Called about every ten polls while waiting; throws to stop waiting (a cancelled move). */
  onWait: () => Promise<void>;
  /** Creates the subscription; runs at most once, when there is room. */
  create: () => Promise<void>;
}

/**
 * Lets a move subscribe only when the target's server has logical replication workers for it: an
 * apply worker plus its table-sync workers. Subscriptions beyond that hold every worker slot with
 * apply workers, and their initial copies wait on one another for minutes
 * (max_logical_replication_workers is 4 by default). In this process one request per server is
 * checked and created at a time, so two moves never both take the last room; across processes
 * the server's own subscriptions are what is counted.
 */
export class SubscriptionGate {
  readonly #tails = new Map<string, Promise<void>>();
  readonly #pollMs: number;

  constructor(pollMs: number) {
    this.#pollMs = pollMs;
  }

  async admit(req: GateRequest): Promise<void> {
    const previous = this.#tails.get(req.server) ?? Promise.resolve();
    let release!: () => void;
    const turn = new Promise<void>((r) => (release = r));
    const tail = previous.then(() => turn);
    this.#tails.set(req.server, tail);
    try {
      await previous;
      for (let polls = 1; !(await hasSubscriptionRoom(req.target)); polls++) {
        if (Date.now() > req.deadline) {
          throw new ShardgateError(
            'aborted',
            'the target server had no logical replication workers free in time',
          );
        }
        if (polls % 10 === 0) await req.onWait();
        await new Promise((r) => setTimeout(r, this.#pollMs));
      }
      await req.create();
    } finally {
      release();
      if (this.#tails.get(req.server) === tail) this.#tails.delete(req.server);
    }
  }
}
