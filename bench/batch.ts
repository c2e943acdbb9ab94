// `npm run bench:batch`: rows per second through unary CreateAppointment / AppendHandoff /
// GetAppointment against BatchCreateAppointments / BatchAppendHandoffs / BatchGetAppointments,
// side by side in one run, against a gateway child process on embedded PostgreSQL. Prints
// figures; asserts nothing. `--quick` for a short run.
import { createShardgateClient, type ShardgateClient } from '../src/client/index.js';
import { AppointmentStatus, type Appointment } from '../src/gen/shardgate/v1/appointment.js';
import type { Handoff } from '../src/gen/shardgate/v1/handoff.js';
import { runBench, spawnGateway, type Cleanup } from './processes.js';
import { startBenchCluster } from './setup.js';

const quick = process.argv.includes('--quick');
const SECONDS = quick ? 2 : 6;
const BATCH = 100;
const progress = (line: string): void => void process.stderr.write(`[bench:batch] ${line}\n`);

const appointment = (i: number): Appointment => ({
  id: '',
  clientPhone: '555-0100',
  scheduledAt: new Date(Date.UTC(2032, 0, 1) + i),
  serviceType: 'tune-up',
  status: AppointmentStatus.APPOINTMENT_STATUS_UNSPECIFIED,
});
const handoff = (i: number): Handoff => ({
  id: '',
  fromAgent: 'intake',
  toAgent: 'dispatch',
  version: 1,
  summary: { ticket: i, customer: 'J. Doe', issue: 'no heat', steps: ['called', 'booked'] },
});

/** Runs `call` from `concurrency` loops for SECONDS; returns rows written per second. */
async function rowsPerSecond(
  concurrency: number,
  rowsPerCall: number,
  call: (i: number) => Promise<unknown>,
): Promise<number> {
  const until = Date.now() + SECONDS * 1000;
  let calls = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < until) await call(calls++);
    }),
  );
  return (calls * rowsPerCall) / ((performance.now() - started) / 1000);
}

async function main(cleanup: Cleanup): Promise<void> {
  progress('starting embedded PostgreSQL and the gateway…');
  const { cluster } = await startBenchCluster(2, cleanup);
  const gateway = await spawnGateway(
    {
      catalogUrl: cluster.catalogUrl,
      sharedUrl: cluster.sharedUrl,
      shards: cluster.shards,
      poolMax: 10,
    },
    cleanup,
  );
  const sg: ShardgateClient = createShardgateClient({ address: gateway.address });
  cleanup.add('close the client', async () => sg.close());
  const clientIds = ['batch-a', 'batch-b', 'batch-c', 'batch-d'];
  for (const clientId of clientIds) await sg.tenants.createTenant({ clientId });
  const pick = (i: number): string => clientIds[i % clientIds.length]!;
  const batchOf = <T>(make: (i: number) => T, i: number): T[] =>
    Array.from({ length: BATCH }, (_, k) => make(i * BATCH + k));

  // Appointments to read back: 200 per client, made before any cell.
  const stored = new Map<string, string[]>();
  for (const clientId of clientIds) {
    const made = await sg.appointments.batchCreateAppointments({
      clientId,
      appointments: Array.from({ length: 200 }, (_, i) => appointment(i)),
    });
    stored.set(
      clientId,
      made.appointments.map((a) => a.id),
    );
  }
  const idsOf = (i: number): string[] => stored.get(pick(i))!;

  const rows: [string, number][] = [];
  for (const concurrency of [8, 32]) {
    progress(`unary vs batch at ${concurrency} in flight…`);
    rows.push([
      `CreateAppointment × 1, conc ${concurrency}`,
      await rowsPerSecond(concurrency, 1, (i) =>
        sg.appointments.createAppointment({ clientId: pick(i), appointment: appointment(i) }),
      ),
    ]);
    rows.push([
      `BatchCreateAppointments × ${BATCH}, conc ${concurrency}`,
      await rowsPerSecond(concurrency, BATCH, (i) =>
        sg.appointments.batchCreateAppointments({
          clientId: pick(i),
          appointments: batchOf(appointment, i),
        }),
      ),
    ]);
    rows.push([
      `AppendHandoff × 1, conc ${concurrency}`,
      await rowsPerSecond(concurrency, 1, (i) =>
        sg.handoffs.appendHandoff({ clientId: pick(i), handoff: handoff(i) }),
      ),
    ]);
    rows.push([
      `BatchAppendHandoffs × ${BATCH}, conc ${concurrency}`,
      await rowsPerSecond(concurrency, BATCH, (i) =>
        sg.handoffs.batchAppendHandoffs({ clientId: pick(i), handoffs: batchOf(handoff, i) }),
      ),
    ]);
    rows.push([
      `GetAppointment × 1, conc ${concurrency}`,
      await rowsPerSecond(concurrency, 1, (i) =>
        sg.appointments.getAppointment({ clientId: pick(i), id: idsOf(i)[i % 200]! }),
      ),
    ]);
    rows.push([
      `BatchGetAppointments × ${BATCH}, conc ${concurrency}`,
      await rowsPerSecond(concurrency, BATCH, (i) => {
        const start = (i * BATCH) % 200;
        return sg.appointments.batchGetAppointments({
          clientId: pick(i),
          ids: [...idsOf(i), ...idsOf(i)].slice(start, start + BATCH),
        });
      }),
    ]);
  }

  console.log(`\nshardgate bench:batch — ${new Date().toISOString()}, ${SECONDS} s per cell\n`);
  console.log(`${'call'.padEnd(42)}  ${'rows/s'.padStart(9)}  ${'× unary'.padStart(8)}`);
  for (let i = 0; i < rows.length; i++) {
    const [name, rate] = rows[i]!;
    const unary = i % 2 === 1 ? rows[i - 1]![1] : rate;
    console.log(
      `${name.padEnd(42)}  ${rate.toFixed(0).padStart(9)}  ${(rate / unary).toFixed(1).padStart(8)}`,
    );
  }
}

runBench(main, progress);
