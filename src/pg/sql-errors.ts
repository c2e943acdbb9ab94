import pg from 'pg';
import { ShardgateError } from '../core/errors.js';

const PROGRAMMER_ERRORS = [TypeError, RangeError, SyntaxError, ReferenceError];

/**
 * Translates a driver error into a ShardgateError, on SQLSTATE (`DatabaseError.code`) only, never
 * on message text. `target` names the database for the caller ("shard 'shard-2'", "the catalog").
 * Anything that is not a DatabaseError and not a programming error is a connection-level failure:
 * refused, reset, timed out or terminated, so the target is unavailable.
 */
export function translatePgError(err: unknown, target: string, signal?: AbortSignal): Error {
  if (err instanceof ShardgateError) return err;
  if (signal?.aborted) return abortedBySignal(signal, err);
  if (err instanceof pg.DatabaseError) return fromSqlState(err, target);
  if (PROGRAMMER_ERRORS.some((type) => err instanceof type)) return err as Error;
  return new ShardgateError('unavailable', `${target} is unavailable; retry later`, { cause: err });
}

/** The error for a call whose AbortSignal fired (gRPC deadline or client cancel). */
export function abortedBySignal(signal: AbortSignal, cause?: unknown): ShardgateError {
  const reason: unknown = signal.reason;
  const timedOut = reason instanceof Error && reason.name === 'TimeoutError';
  return timedOut
    ? new ShardgateError(
        'deadline-exceeded',
        'the call deadline passed before the database answered',
        { cause },
      )
    : new ShardgateError('cancelled', 'the call was cancelled', { cause });
}

function fromSqlState(err: pg.DatabaseError, target: string): ShardgateError {
  const code = err.code ?? '';
  const make = (c: ShardgateError['code'], message: string): ShardgateError =>
    new ShardgateError(c, message, { cause: err });
  // The move fence (SGMOV), or a client schema that is gone from this shard: the placement the
  // caller routed by is stale. Not on message text: on SQLSTATE.
  if (code === 'SGMOV' || code === '3F000' || code === '42P01') {
    return new ShardgateError(
      'unavailable',
      `the client is not (or no longer) served by ${target}; retry`,
      {
        cause: err,
        reason: 'placement-stale',
      },
    );
  }
  if (code === '57014') {
    return make('deadline-exceeded', `${target} cancelled the statement (statement timeout)`);
  }
  if (code === '40001' || code === '40P01' || code === '55P03') {
    return make('aborted', `a concurrent change on ${target} conflicted with this call; retry it`);
  }
  if (code === '23505') return make('already-exists', 'the resource already exists');
  if (code.startsWith('08') || ['57P01', '57P02', '57P03', '53300', '3D000'].includes(code)) {
    return make('unavailable', `${target} is unavailable; retry later`);
  }
  if (code.startsWith('22') || code === '54000') {
    return make('invalid-argument', `${target} rejected a value: ${err.message}`);
  }
  return make('internal', `${target} failed the statement`);
}

/** True for errors after which a pooled connection must be destroyed, not reused. */
export function isConnectionBroken(err: unknown): boolean {
  if (err instanceof pg.DatabaseError) {
    const code = err.code ?? '';
    return code.startsWith('08') || code.startsWith('57P');
  }
  return !PROGRAMMER_ERRORS.some((type) => err instanceof type) && !(err instanceof ShardgateError);
}
