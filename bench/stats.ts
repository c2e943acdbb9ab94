import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Latency summary of one cell, in the unit of the samples. */
export interface Summary {
  count: number;
  p50: number;
  p99: number;
  mean: number;
  max: number;
}

/**
 * Nearest-rank percentiles over every sample (no buckets, no sampling): a cell holds at most a few
 * hundred thousand numbers, so sorting them all is cheaper than pulling in a histogram library.
 */
export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { count: 0, p50: NaN, p99: NaN, mean: NaN, max: NaN };
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number): number =>
    sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    p50: at(0.5),
    p99: at(0.99),
    mean: sum / sorted.length,
    max: sorted.at(-1)!,
  };
}

/** A plain text table: right-aligned columns, header underlined. */
export function formatTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** A number with a fixed number of decimals, or `—` when there is none. */
export function fmt(value: number | undefined, decimals = 1): string {
  return value === undefined || !Number.isFinite(value) ? '—' : value.toFixed(decimals);
}

let clockTicks: number | undefined;

/** Kernel clock ticks per second, the unit of utime/stime in /proc/<pid>/stat. */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

interface ProcStat {
  pid: number;
  ppid: number;
  cpuMs: number;
  /** CPU of its children that ended and were waited for (cutime + cstime). */
  reapedChildrenCpuMs: number;
}

/** utime + stime of a process, from /proc (Linux); undefined when it cannot be read. */
function readProcStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: parse after its closing paren.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const ms = (a: number, b: number): number =>
      ((Number(fields[a]) + Number(fields[b])) * 1000) / ticksPerSecond();
    return { pid, ppid: Number(fields[1]), cpuMs: ms(11, 12), reapedChildrenCpuMs: ms(13, 14) };
  } catch {
    return undefined;
  }
}

/** CPU milliseconds used so far by one process; undefined off Linux or once it is gone. */
export function cpuMsOf(pid: number | undefined): number | undefined {
  return pid === undefined ? undefined : readProcStat(pid)?.cpuMs;
}

/**
 * CPU milliseconds used so far by the given postmasters and all their children (the backends):
 * live ones from their own /proc entries, ended ones from the postmaster's cutime/cstime.
 */
export function treeCpuMs(rootPids: readonly number[]): number | undefined {
  if (rootPids.length === 0) return undefined;
  let total = 0;
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return undefined;
  }
  const roots = new Set(rootPids);
  for (const entry of entries) {
    const stat = readProcStat(Number(entry));
    if (!stat) continue;
    if (roots.has(stat.pid)) total += stat.cpuMs + stat.reapedChildrenCpuMs;
    else if (roots.has(stat.ppid)) total += stat.cpuMs;
  }
  return total;
}
