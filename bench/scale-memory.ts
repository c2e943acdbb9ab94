// Memory figures for bench:scale, from /proc (Linux): the gateway's VmRSS and the PostgreSQL
// processes under each shard postmaster (Pss from smaps_rollup when readable, else VmRSS).
import { readdirSync, readFileSync } from 'node:fs';

/** A `Name:   123 kB` field of a /proc file, in kB; undefined when absent or unreadable. */
function procKb(path: string, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(path, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** VmRSS of one process in kB (NaN once it is gone). */
export function memoryOfGateway(pid: number): number {
  return procKb(`/proc/${pid}/status`, 'VmRSS') ?? NaN;
}

export interface PgMemory {
  metric: 'Pss' | 'VmRSS' | 'mixed';
  /** Every child of the postmasters (backends and background processes). */
  processes: number;
  sumKb: number;
  maxKb: number;
  /** Only client backends (process title names a client address). */
  clientBackends: { count: number; sumKb: number; maxKb: number };
}

/** Sum and max of Pss (else VmRSS) over every child of the given postmasters. */
export function memoryOfPostgres(postmasters: readonly number[]): PgMemory {
  const roots = new Set(postmasters);
  const out: PgMemory = {
    metric: 'Pss',
    processes: 0,
    sumKb: 0,
    maxKb: 0,
    clientBackends: { count: 0, sumKb: 0, maxKb: 0 },
  };
  const metrics = new Set<string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let ppid: number;
    let title: string;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!roots.has(ppid)) continue;
      title = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    let kb = procKb(`/proc/${entry}/smaps_rollup`, 'Pss');
    if (kb !== undefined) metrics.add('Pss');
    else {
      kb = procKb(`/proc/${entry}/status`, 'VmRSS');
      if (kb === undefined) continue;
      metrics.add('VmRSS');
    }
    out.processes++;
    out.sumKb += kb;
    out.maxKb = Math.max(out.maxKb, kb);
    // A client backend's title is "postgres: user db host(port) state" or "… [local] …".
    if (/\(\d+\)|\[local\]/.test(title)) {
      out.clientBackends.count++;
      out.clientBackends.sumKb += kb;
      out.clientBackends.maxKb = Math.max(out.clientBackends.maxKb, kb);
    }
  }
  out.metric = metrics.size > 1 ? 'mixed' : metrics.has('VmRSS') ? 'VmRSS' : 'Pss';
  return out;
}
