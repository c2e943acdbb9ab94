import { InvalidArgumentError } from 'commander';
import { isShardgateError } from '../core/errors.js';
import { parseClientId, parseShardName } from '../core/ids.js';
import { MoveState } from '../gen/shardgate/v1/admin.js';

/** Move states accepted by `moves --state`, mapped to their proto values. */
export const MOVE_STATE_CHOICES = {
  running: MoveState.MOVE_STATE_RUNNING,
  succeeded: MoveState.MOVE_STATE_SUCCEEDED,
  failed: MoveState.MOVE_STATE_FAILED,
  cancelled: MoveState.MOVE_STATE_CANCELLED,
} as const;
/** A `--state` value. */
export type MoveStateChoice = keyof typeof MOVE_STATE_CHOICES;

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Argument parsers for commander. Each throws InvalidArgumentError, which commander reports as a
 * usage error (exit 2) before anything is sent to the gateway.
 */
export const parseArg = {
  clientId: (raw: string): string => viaCore(() => parseClientId(raw, 'client_id')),
  shardName: (raw: string): string => viaCore(() => parseShardName(raw, 'shard')),
  moveId(raw: string): string {
    if (!UUID_PATTERN.test(raw)) throw new InvalidArgumentError('a move id is a UUID.');
    return raw.toLowerCase();
  },
  positiveInt: (raw: string): number => integer(raw, 1),
  nonNegativeInt: (raw: string): number => integer(raw, 0),
  address(raw: string): string {
    if (raw.trim() === '') throw new InvalidArgumentError('the address must be host:port.');
    return raw.trim();
  },
};

function integer(raw: string, min: number): number {
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidArgumentError(`expected an integer of at least ${min}.`);
  }
  return value;
}

/** Runs a core id parser, turning its INVALID_ARGUMENT into commander's usage error. */
function viaCore(parse: () => string): string {
  try {
    return parse();
  } catch (err) {
    if (isShardgateError(err, 'invalid-argument'))
      throw new InvalidArgumentError(`${err.message}.`);
    throw err;
  }
}
