import { parseArgs } from 'node:util';

/** What one `npm run bench:moves` measures; the default run takes several minutes, --quick ~2. */
export interface MoveBenchOptions {
  quick: boolean;
  /** Moves of each measured client, back and forth between two shards (default 15; 5 quick). */
  movesPerClient: number;
  /** Rows of the small client: appointments + handoffs + its state row (default 10). */
  smallRows: number;
  /** Rows of the big client, seeded with direct SQL then ANALYZEd (default 100,000). */
  bigRows: number;
  /** Writes/s aimed at each measured client, all through the gateway (default 90). */
  movingRatePerSec: number;
  /** Other clients written to during the moves, and writes/s to each (default 6 × 15). */
  otherClients: number;
  otherRatePerSec: number;
  /** Clients created for the rebalance (default 1,000; 200 quick). */
  rebalanceClients: number;
  /** max_concurrent_moves of each rebalance 3 → 4 shards (default 4,8; 4 quick). */
  concurrencies: number[];
  /**
   * max_logical_replication_workers for the shard servers (ALTER SYSTEM + restart before the
   * gateway starts); undefined keeps the embedded default (PostgreSQL's 4).
   */
  replWorkers: number | undefined;
  /** A rebalance that finishes no move for this long is cancelled and reported as stalled. */
  stallMs: number;
  /** Skip part 1–2 (the pause and copy-rate moves) or part 3 (the rebalance). */
  skipPause: boolean;
  skipRebalance: boolean;
}

const USAGE =
  'usage: npm run bench:moves -- [--quick] [--moves <n>] [--big-rows <n>] [--clients <n>] ' +
  '[--concurrency <n,n,…>] [--rate <writes/s per moving client>] [--repl-workers <n>] ' +
  '[--stall <seconds>] [--skip-pause] [--skip-rebalance]';

/** Parses the command line; throws with the usage on a bad value. */
export function parseMoveOptions(args = process.argv.slice(2)): MoveBenchOptions {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      moves: { type: 'string' },
      'big-rows': { type: 'string' },
      clients: { type: 'string' },
      concurrency: { type: 'string' },
      rate: { type: 'string' },
      'repl-workers': { type: 'string' },
      stall: { type: 'string' },
      'skip-pause': { type: 'boolean', default: false },
      'skip-rebalance': { type: 'boolean', default: false },
    },
  });
  const quick = values.quick ?? false;
  const options: MoveBenchOptions = {
    quick,
    movesPerClient: Number(values.moves ?? (quick ? 5 : 15)),
    smallRows: 10,
    bigRows: Number(values['big-rows'] ?? 100_000),
    movingRatePerSec: Number(values.rate ?? 90),
    otherClients: 6,
    otherRatePerSec: 15,
    rebalanceClients: Number(values.clients ?? (quick ? 200 : 1_000)),
    concurrencies: (values.concurrency ?? (quick ? '4' : '4,8')).split(',').map(Number),
    replWorkers: values['repl-workers'] === undefined ? undefined : Number(values['repl-workers']),
    stallMs: Number(values.stall ?? 120) * 1000,
    skipPause: values['skip-pause'] ?? false,
    skipRebalance: values['skip-rebalance'] ?? false,
  };
  const isCount = (n: number, min: number): boolean => Number.isInteger(n) && n >= min;
  const bad = [
    !isCount(options.movesPerClient, 1) && '--moves must be an integer ≥ 1',
    !isCount(options.bigRows, 100) && '--big-rows must be an integer ≥ 100',
    !isCount(options.rebalanceClients, 4) && '--clients must be an integer ≥ 4',
    !(options.movingRatePerSec > 0) && '--rate must be a positive number',
    options.replWorkers !== undefined &&
      !isCount(options.replWorkers, 4) &&
      '--repl-workers must be an integer ≥ 4',
    !(options.stallMs > 0) && '--stall must be a positive number of seconds',
    options.concurrencies.some((c) => !isCount(c, 1) || c > 16) &&
      '--concurrency takes integers from 1 to 16',
  ].filter(Boolean);
  if (bad.length > 0) throw new Error(`${bad.join('; ')}\n${USAGE}`);
  return options;
}
