import { ClientError, Status } from 'nice-grpc';
import { isShardgateError, type ShardgateError } from '../core/errors.js';

/** Process exit codes of shardctl; scripts branch on these, so they never change meaning. */
export const EXIT_CODES = {
  ok: 0,
  /** The gateway refused the call, or a move or rebalance did not succeed. */
  failed: 1,
  /** Bad command line: nothing was sent. */
  usage: 2,
  /** The gateway could not be reached at all. */
  unreachable: 3,
  /** Interrupted (Ctrl-C); the server-side work goes on. */
  interrupted: 130,
} as const;

/** What shardctl prints on stderr and exits with for one refusal. */
export class CliFailure extends Error {
  readonly statusName: string;
  readonly exitCode: number;

  constructor(statusName: string, message: string, exitCode: number) {
    super(message);
    this.name = 'CliFailure';
    this.statusName = statusName;
    this.exitCode = exitCode;
  }

  /** The one line for stderr: `shardctl: <STATUS_NAME>: <details>`. */
  get line(): string {
    return `shardctl: ${this.statusName}: ${this.message}`;
  }
}

/** A command line shardctl rejects before calling anything (exit 2). */
export const usageFailure = (message: string): CliFailure =>
  new CliFailure('INVALID_ARGUMENT', message, EXIT_CODES.usage);

/** grpc-js wording for a call that never reached a server (refused, unresolvable, no route). */
const NEVER_CONNECTED = [
  /No connection established/,
  /Name resolution failed/,
  /Failed to connect/,
  /Waiting for LB pick/,
  /waiting for name resolution/,
];

/**
 * True when the call never reached a gateway, as opposed to a gateway answering UNAVAILABLE
 * because one of its shards is down: grpc-js names the connection failure in the details.
 */
export function isUnreachable(err: ClientError): boolean {
  const connectionStatus = err.code === Status.UNAVAILABLE || err.code === Status.DEADLINE_EXCEEDED;
  return connectionStatus && NEVER_CONNECTED.some((pattern) => pattern.test(err.details));
}

/** Turns anything a command threw into the failure to report; unknown errors keep their text. */
export function toCliFailure(err: unknown, address: string): CliFailure {
  if (err instanceof CliFailure) return err;
  if (err instanceof ClientError) return fromClientError(err, address);
  if (isShardgateError(err)) return fromLocalValidation(err);
  const message = err instanceof Error ? err.message : String(err);
  return new CliFailure('INTERNAL', message, EXIT_CODES.failed);
}

function fromClientError(err: ClientError, address: string): CliFailure {
  const statusName = Status[err.code] ?? `STATUS_${err.code}`;
  // grpc-js appends an empty "Resolution note:" to connection errors; it says nothing.
  const details = oneLine(err.details.replace(/\s*Resolution note:\s*$/, '')) || '(no details)';
  if (isUnreachable(err)) {
    return new CliFailure(
      statusName,
      `cannot reach the gateway at ${address} (${details}); is the gateway running? (npm start)`,
      EXIT_CODES.unreachable,
    );
  }
  if (err.code === Status.UNAUTHENTICATED) {
    return new CliFailure(
      statusName,
      `${details} (pass --token <secret> or set SHARDGATE_TOKEN)`,
      EXIT_CODES.failed,
    );
  }
  return new CliFailure(statusName, details, EXIT_CODES.failed);
}

/** The core id parsers throw ShardgateError('invalid-argument'): a usage error here. */
function fromLocalValidation(err: ShardgateError): CliFailure {
  const statusName = err.code.toUpperCase().replaceAll('-', '_');
  const exitCode = err.code === 'invalid-argument' ? EXIT_CODES.usage : EXIT_CODES.failed;
  return new CliFailure(statusName, oneLine(err.message), exitCode);
}

/** Collapses whitespace and newlines so every report stays one line. */
export function oneLine(text: string): string {
  return text
    .replace(/\s+/g, ' ')
    .replace(/[.\s]+$/, '')
    .trim();
}
