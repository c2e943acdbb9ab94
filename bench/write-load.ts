/**
 * The write load of `npm run bench:moves`: a child process of moves.ts, so its CPU work is not
 * charged to the gateway. Between a `start` and a `stop` it keeps writing to every target at a
 * steady pace — CreateAppointment, AppendHandoff, PatchState in turn — and records each call's
 * start time, latency and error. Writes are never retried (the typed client does not retry them),
 * so every error the gateway returns is counted.
 */
import { createShardgateClient, type ShardgateClient } from '../src/client/index.js';
import { AppointmentStatus } from '../src/gen/shardgate/v1/appointment.js';
import {
  epochMs,
  WRITE_OPS,
  type FromLoad,
  type LoadSamples,
  type LoadTarget,
  type ToLoad,
} from './move-protocol.js';

/** Appointments written by the load are scheduled from here on (after the seeded ones). */
const LOAD_SLOT_MS = Date.UTC(2032, 0, 5, 8);

interface Session {
  client: ShardgateClient;
  samples: LoadSamples;
  stopping: boolean;
  workers: Promise<void>[];
}

let session: Session | undefined;
/** Run-wide call counter: spreads the ops and makes every written value distinct. */
let counter = 0;

function send(message: FromLoad): void {
  process.send?.(message);
}

function writeOnce(sg: ShardgateClient, clientId: string, opIndex: number, i: number) {
  switch (WRITE_OPS[opIndex]) {
    case 'CreateAppointment':
      return sg.appointments.createAppointment({
        clientId,
        appointment: {
          clientPhone: `+1 555 ${String(i % 10_000).padStart(4, '0')}`,
          scheduledAt: new Date(LOAD_SLOT_MS + i * 60_000),
          serviceType: 'ac-tune-up',
          status: AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED,
        },
      });
    case 'AppendHandoff':
      return sg.handoffs.appendHandoff({
        clientId,
        handoff: {
          fromAgent: 'intake-agent',
          toAgent: 'dispatch-agent',
          version: 1,
          summary: { ticket: `T-${i}`, notes: 'Furnace short-cycles; call 30 min before arrival.' },
        },
      });
    default:
      return sg.state.patchState({ clientId, patch: { lastCall: i, agent: 'bench-load' } });
  }
}

function describe(err: unknown): string {
  const e = err as { code?: unknown; details?: unknown; message?: unknown };
  const text = String(e.details ?? e.message ?? err).slice(0, 200);
  return typeof e.code === 'number' || typeof e.code === 'string' ? `${e.code}: ${text}` : text;
}

/** One paced worker: a call every `intervalMs`, never bursting to catch up after a slow call. */
async function worker(s: Session, targetIndex: number, target: LoadTarget): Promise<void> {
  const intervalMs = (1000 * target.concurrency) / target.ratePerSec;
  // Workers of one target start spread over one interval, so their calls interleave.
  let next = epochMs() + Math.random() * intervalMs;
  while (!s.stopping) {
    const wait = next - epochMs();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (s.stopping) break;
    const i = counter++;
    const opIndex = i % WRITE_OPS.length;
    const start = epochMs();
    let errorIndex = -1;
    try {
      await writeOnce(s.client, target.clientId, opIndex, i);
    } catch (err) {
      const text = describe(err);
      errorIndex = s.samples.errors.indexOf(text);
      if (errorIndex < 0) errorIndex = s.samples.errors.push(text) - 1;
    }
    const end = epochMs();
    s.samples.target.push(targetIndex);
    s.samples.op.push(opIndex);
    s.samples.startMs.push(start);
    s.samples.latencyMs.push(end - start);
    s.samples.error.push(errorIndex);
    next = Math.max(next + intervalMs, end);
  }
}

function start(gatewayAddress: string, targets: LoadTarget[]): void {
  if (session) throw new Error('a load session is already running');
  const s: Session = {
    client: createShardgateClient({ address: gatewayAddress, defaultDeadlineMs: 30_000 }),
    samples: { target: [], op: [], startMs: [], latencyMs: [], error: [], errors: [] },
    stopping: false,
    workers: [],
  };
  s.workers = targets.flatMap((t, index) =>
    Array.from({ length: t.concurrency }, () => worker(s, index, t)),
  );
  session = s;
}

async function stop(): Promise<LoadSamples> {
  const s = session;
  if (!s) throw new Error('no load session is running');
  s.stopping = true;
  await Promise.all(s.workers);
  s.client.close();
  session = undefined;
  return s.samples;
}

process.on('message', (message: ToLoad) => {
  const handle = async (): Promise<FromLoad> => {
    if (message.type === 'start') {
      start(message.gatewayAddress, message.targets);
      return { type: 'started' };
    }
    return { type: 'samples', samples: await stop() };
  };
  handle().then(send, (err: unknown) =>
    send({
      type: 'error',
      message: err instanceof Error ? (err.stack ?? err.message) : String(err),
    }),
  );
});

// The orchestrator closing the channel means the run is over (or it died): leave.
process.on('disconnect', () => {
  session?.client.close();
  process.exit(0);
});
process.on('SIGINT', () => undefined); // Ctrl-C reaches the whole group; the parent cleans up.
