/**
 * `npm run bench:db-path`: the gateway's database path in-process, side by side on one embedded
 * PostgreSQL: a bare `pg.Pool.query`, `Database.query` (checkout, cancellation wiring, error
 * translation) and `Database.readById` with and without coalescing, each at 32 reads in flight
 * over 10 client schemas. Prints node CPU per read (this process) and reads/s, in alternating
 * rounds; asserts nothing.
 */
import pg from 'pg';
import { Cleanup, runBench } from './processes.js';
import { startBenchCluster } from './setup.js';
import { Database } from '../src/pg/database.js';
import { singleReadSql, type PointReadSpec } from '../src/pg/point-reads.js';
import { fmt, formatTable } from './stats.js';

const SCHEMAS = 10;
const ROWS = 20;
const CONCURRENCY = 32;
const ROUND_MS = 3_000;
const ROUNDS = 3;
const SPEC: PointReadSpec = { table: 'appointments', columns: 'id, label, created_at' };

const progress = (line: string): void => void process.stderr.write(`[bench:db-path] ${line}\n`);

async function main(cleanup: Cleanup): Promise<void> {
  const { cluster } = await startBenchCluster(1, cleanup);
  const url = cluster.shards[0]!.url;
  const schemas = Array.from({ length: SCHEMAS }, (_, i) => pg.escapeIdentifier(`db_path_${i}`));
  const ids: string[][] = [];
  const setup = new pg.Client({ connectionString: url });
  await setup.connect();
  for (const s of schemas) {
    await setup.query(`CREATE SCHEMA ${s}`);
    await setup.query(
      `CREATE TABLE ${s}.appointments (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
         label text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
    );
    const r = await setup.query<{ id: string }>(
      `INSERT INTO ${s}.appointments (label) SELECT 'row ' || g FROM generate_series(1, ${ROWS}) g RETURNING id`,
    );
    ids.push(r.rows.map((row) => row.id));
  }
  await setup.end();
  const options = (readBatchStatements: number) => ({
    url,
    label: 'bench shard',
    max: 10,
    idleTimeoutMs: 30_000,
    connectionTimeoutMs: 3_000,
    statementTimeoutMs: 30_000,
    maxLifetimeSeconds: 0,
    readBatchStatements,
    onError: () => undefined,
  });
  const plain = new Database(options(0));
  const coalesced = new Database(options(3));
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  pool.on('error', () => undefined); // an idle connection ended at shutdown must not end the run
  cleanup.add('close the pools', async () => {
    await Promise.all([plain.close(), coalesced.close(), pool.end()]);
  });
  const at = (i: number) => ({ s: schemas[i % SCHEMAS]!, id: ids[i % SCHEMAS]![(i >> 4) % ROWS]! });
  // Every gateway call carries an AbortSignal (one per loop here, made once, so its cost is not
  // counted); the bare pool gets none (it cannot use one).
  type Read = (i: number, signal: AbortSignal) => Promise<unknown>;
  const paths: [string, Read][] = [
    ['pg.Pool.query', (i) => pool.query(singleReadSql(SPEC, at(i).s), [at(i).id])],
    ['Database.query', (i, sig) => plain.query(singleReadSql(SPEC, at(i).s), [at(i).id], sig)],
    ['Database.readById, alone', (i, sig) => plain.readById(SPEC, at(i).s, at(i).id, sig)],
    ['Database.readById, coalesced', (i, sig) => coalesced.readById(SPEC, at(i).s, at(i).id, sig)],
  ];
  const results = new Map<string, { usPerRead: number[]; perSec: number[] }>();
  for (let round = 0; round <= ROUNDS; round++) {
    for (const [name, read] of paths) {
      const r = await measure(read, round === 0 ? 1_000 : ROUND_MS);
      if (round === 0) continue; // warm-up
      const entry = results.get(name) ?? { usPerRead: [], perSec: [] };
      entry.usPerRead.push(r.usPerRead);
      entry.perSec.push(r.perSec);
      results.set(name, entry);
    }
    progress(round === 0 ? 'warmed up' : `round ${round} of ${ROUNDS}`);
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  console.log(
    `\n${CONCURRENCY} reads in flight over ${SCHEMAS} schemas, pool max 10; median of ${ROUNDS} ` +
      `alternating rounds of ${ROUND_MS / 1000} s\n`,
  );
  console.log(
    formatTable(
      ['path', 'reads/s', 'node µs/read'],
      [...results].map(([name, r]) => [
        name,
        fmt(median(r.perSec), 0),
        fmt(median(r.usPerRead), 1),
      ]),
    ),
  );
}

async function measure(
  read: (i: number, signal: AbortSignal) => Promise<unknown>,
  ms: number,
): Promise<{ usPerRead: number; perSec: number }> {
  const signals = Array.from({ length: CONCURRENCY }, () => new AbortController().signal);
  let next = 0;
  let done = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  const until = started + ms;
  await Promise.all(
    signals.map(async (signal) => {
      while (performance.now() < until) {
        await read(next++, signal);
        done++;
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  return {
    usPerRead: (used.user + used.system) / done,
    perSec: (done * 1000) / (performance.now() - started),
  };
}

runBench(main, progress);
