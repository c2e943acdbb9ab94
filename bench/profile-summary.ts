/**
 * `npm run bench:profile -- <profile.cpuprofile> <results.json> <op> <concurrency>`: where one
 * process spent its CPU during one measured cell of `npm run bench -- --profile`, in µs per call.
 * The profile is cut to the cell's window (recorded in the results JSON, on the profile's clock),
 * so start-up, seeding and the other cells do not count. Self time is grouped by where the code
 * lives: a node_modules package, a folder of src/, a node internal, a native function, GC.
 * Prints figures only.
 */
import { readFile } from 'node:fs/promises';
import type { MeasuredCell } from './report.js';
import { fmt, formatTable } from './stats.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

const USAGE =
  'usage: npm run bench:profile -- <profile.cpuprofile> <results.json> <op> <concurrency> [--top n]';

/** Where a frame's code lives, coarse enough to add up: `pg`, `src/api`, `node:http2`, `(gc)`. */
export function placeOf(frame: ProfileNode['callFrame']): string {
  const { url, functionName } = frame;
  const inModules = url.lastIndexOf('/node_modules/');
  if (inModules >= 0) {
    const parts = url.slice(inModules + '/node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  // This repository's code: its folder (src/api), or the file when it sits at the top (src/main.ts).
  const inRepo = /\/(src|bench)\/([^/]+)(\/)?/.exec(url);
  if (inRepo) return `${inRepo[1]}/${inRepo[2]}`;
  if (url.startsWith('node:'))
    return `node:${url.replace(/^node:(internal\/)?/, '').split('/')[0]}`;
  if (functionName.startsWith('(')) return functionName;
  return `native ${functionName}`;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const topAt = args.indexOf('--top');
  const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 25;
  const [profileFile, resultsFile, op, concurrency] = args;
  if (!profileFile || !resultsFile || !op || !concurrency || !(top > 0)) throw new Error(USAGE);
  const profile = JSON.parse(await readFile(profileFile, 'utf8')) as CpuProfile;
  const { cells } = JSON.parse(await readFile(resultsFile, 'utf8')) as { cells: MeasuredCell[] };
  const cell = cells.find((c) => c.op === op && c.concurrency === Number(concurrency));
  if (!cell?.window)
    throw new Error(`no cell ${op} @${concurrency} with a window in ${resultsFile}`);

  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const byPlace = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let busyUs = 0;
  let at = profile.startTime;
  // A sample's time is the gap to the next one: what ran from this tick on.
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i]!;
    const spentUs = profile.timeDeltas[i + 1] ?? 0;
    if (at < cell.window.fromUs || at >= cell.window.toUs) continue;
    const frame = nodes.get(profile.samples[i]!)!.callFrame;
    if (frame.functionName === '(idle)') continue;
    busyUs += spentUs;
    const place = placeOf(frame);
    byPlace.set(place, (byPlace.get(place) ?? 0) + spentUs);
    const file = frame.url ? frame.url.split('/').slice(-2).join('/') : place;
    const name = `${frame.functionName || '(anonymous)'} · ${file}:${frame.lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + spentUs);
  }
  const perCall = (us: number): string => fmt(us / cell.calls, 1);
  const rows = (m: Map<string, number>): string[][] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => [k, perCall(us), fmt((100 * us) / busyUs, 1)]);
  console.log(
    `${op} @${concurrency}: ${cell.calls} calls in ${(cell.elapsedMs / 1000).toFixed(1)} s; ` +
      `this process was busy ${perCall(busyUs)} µs per call\n`,
  );
  console.log(formatTable(['where', 'µs/call', '% busy'], rows(byPlace)));
  console.log('');
  console.log(formatTable(['function', 'µs/call', '% busy'], rows(byFunction)));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(2);
});
