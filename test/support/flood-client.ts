/**
 * A flooding client, run as its own process (`node --import tsx test/support/flood-client.ts
 * '<json FloodSpec>'`) so its own work does not share an event loop with the gateway or the
 * client whose latency a test measures. `concurrency` workers call back to back for `durationMs`,
 * ignoring every retry hint. Prints `ready` once the first call settled, then one JSON line with
 * a FloodReport, and exits.
 */
import { ClientError, createChannel, createClientFactory, Status } from 'nice-grpc';
import { deadlineMiddleware } from 'nice-grpc-client-middleware-deadline';
import { StateServiceDefinition } from '../../src/gen/shardgate/v1/state.js';

/** What to flood. */
export interface FloodSpec {
  address: string;
  clientId: string;
  /** `get`: GetState (cheap reads); `put`: PutState (writes to one row). */
  op: 'get' | 'put';
  concurrency: number;
  durationMs: number;
  /** Each call's own deadline. */
  deadlineMs: number;
}

/** What happened: calls per gRPC status name, refusals per limit, and the flood's length. */
export interface FloodReport {
  byStatus: Record<string, number>;
  refusedBy: { rate: number; inFlight: number; other: number };
  elapsedMs: number;
}

async function flood(spec: FloodSpec): Promise<FloodReport> {
  const channel = createChannel(spec.address);
  const state = createClientFactory()
    .use(deadlineMiddleware)
    .create(StateServiceDefinition, channel);
  const report: FloodReport = {
    byStatus: {},
    refusedBy: { rate: 0, inFlight: 0, other: 0 },
    elapsedMs: 0,
  };
  let ready = false;
  const count = (name: string): void => {
    report.byStatus[name] = (report.byStatus[name] ?? 0) + 1;
    if (!ready) {
      ready = true;
      process.stdout.write('ready\n');
    }
  };
  const started = Date.now();
  const endAt = started + spec.durationMs;
  let i = 0;
  const worker = async (): Promise<void> => {
    while (Date.now() < endAt) {
      const deadline = new Date(Date.now() + spec.deadlineMs);
      try {
        if (spec.op === 'get') await state.getState({ clientId: spec.clientId }, { deadline });
        else await state.putState({ clientId: spec.clientId, document: { i: i++ } }, { deadline });
        count('OK');
      } catch (err) {
        if (!(err instanceof ClientError)) throw err;
        count(Status[err.code]);
        if (err.code !== Status.RESOURCE_EXHAUSTED) continue;
        if (err.details.includes('rate limit')) report.refusedBy.rate++;
        else if (err.details.includes('calls running or queued')) report.refusedBy.inFlight++;
        else report.refusedBy.other++;
      }
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  report.elapsedMs = Date.now() - started;
  channel.close();
  return report;
}

const spec = JSON.parse(process.argv[2] ?? '') as FloodSpec;
flood(spec).then(
  (report) => {
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
