import { fmt, formatTable } from './stats.js';
import { isGatewayOp, PG_TWIN, type CellResult, type OpName } from './protocol.js';

/** A measured cell plus the CPU the processes under test spent on it. */
export interface MeasuredCell extends CellResult {
  /** CPU µs per successful call of the server process: the echo server or the gateway. */
  serverCpuUsPerCall?: number;
  /** CPU µs per successful call of the shard PostgreSQL servers (postmasters and backends). */
  pgCpuUsPerCall?: number;
  /** calls/s of this cell ÷ calls/s of the echo cell at the same concurrency (all but echo, pg). */
  ratioToEcho?: number;
  /** calls/s of this cell ÷ calls/s of its direct-pg twin at the same concurrency. */
  ratioToPg?: number;
  /** p50 of this cell minus p50 of its direct-pg twin: the latency the gateway adds. */
  addedP50Ms?: number;
  /**
   * The measured span in CLOCK_MONOTONIC µs (process.hrtime), the clock of V8 CPU profiles on
   * Linux: `npm run bench:profile` cuts a --profile profile to it.
   */
  window: { fromUs: number; toUs: number };
}

const GROUP: Record<string, string> = {
  echo: '(a)',
  proxy: '(a)',
  pg: '(b)',
  sg: '(c)',
  typed: '(c)',
};

/** Fills in the c/a and c/b ratios from the cells measured at the same concurrency. */
export function withRatios(cells: readonly MeasuredCell[]): MeasuredCell[] {
  const find = (op: OpName, concurrency: number): MeasuredCell | undefined =>
    cells.find((c) => c.op === op && c.concurrency === concurrency && c.calls > 0);
  return cells.map((cell) => {
    // The from-memory servers and the thin proxy of (a) get a ratio to echo too: the floor of a
    // typed server, and of one that makes a database round trip.
    const floor = cell.op.startsWith('echo.') || cell.op.startsWith('proxy.');
    if (!isGatewayOp(cell.op) && !floor) return cell;
    const echo = find('echo', cell.concurrency);
    const twinOp = PG_TWIN[cell.op];
    const twin = twinOp && find(twinOp, cell.concurrency);
    return {
      ...cell,
      ...(echo ? { ratioToEcho: cell.callsPerSec / echo.callsPerSec } : {}),
      ...(twin
        ? { ratioToPg: cell.callsPerSec / twin.callsPerSec, addedP50Ms: cell.p50Ms - twin.p50Ms }
        : {}),
    };
  });
}

/** The results table, one row per cell, grouped by op in the order the ops were given. */
export function resultsTable(cells: readonly MeasuredCell[], opOrder: readonly OpName[]): string {
  const header = [
    'target / op',
    'conc',
    'calls',
    'calls/s',
    'p50 ms',
    'p99 ms',
    'err',
    'load µs/call',
    'srv µs/call',
    'pg µs/call',
    'c/a',
    'c/b',
    'p50 +ms vs b',
  ];
  const rows = opOrder.flatMap((op) =>
    cells
      .filter((c) => c.op === op)
      .map((c) => [
        `${GROUP[op.split('.')[0]!] ?? ''} ${op}`,
        String(c.concurrency),
        String(c.calls),
        fmt(c.callsPerSec, 0),
        fmt(c.p50Ms, 2),
        fmt(c.p99Ms, 2),
        String(c.errors),
        fmt(c.calls > 0 ? (c.clientCpuMs * 1000) / c.calls : undefined, 0),
        fmt(c.serverCpuUsPerCall, 0),
        fmt(c.pgCpuUsPerCall, 0),
        fmt(c.ratioToEcho, 2),
        fmt(c.ratioToPg, 2),
        fmt(c.addedP50Ms, 2),
      ]),
  );
  return formatTable(header, rows);
}

/** The first error of each cell that had any. */
export function errorLines(cells: readonly MeasuredCell[]): string[] {
  return cells
    .filter((c) => c.errors > 0)
    .map((c) => `${c.op} @${c.concurrency}: ${c.errors} errors, first: ${c.errorSample ?? '?'}`);
}
