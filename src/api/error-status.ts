import { ServerError, Status } from 'nice-grpc';
import { isShardgateError, type ErrorCode } from '../core/errors.js';
import { LONE_SURROGATE, wellFormed } from '../core/well-formed.js';

/** Exactly one gRPC status per domain error code (nice-grpc's Status.ts explains the choices). */
export const statusByCode: Readonly<Record<ErrorCode, Status>> = {
  'invalid-argument': Status.INVALID_ARGUMENT,
  'not-found': Status.NOT_FOUND,
  'already-exists': Status.ALREADY_EXISTS,
  'failed-precondition': Status.FAILED_PRECONDITION,
  aborted: Status.ABORTED,
  unavailable: Status.UNAVAILABLE,
  'deadline-exceeded': Status.DEADLINE_EXCEEDED,
  cancelled: Status.CANCELLED,
  'resource-exhausted': Status.RESOURCE_EXHAUSTED,
  unauthenticated: Status.UNAUTHENTICATED,
  'permission-denied': Status.PERMISSION_DENIED,
  internal: Status.INTERNAL,
};

/**
 * The one mapping from errors to gRPC status. A ShardgateError keeps its (caller-safe) message;
 * anything else is a bug: INTERNAL with a generic message, and the stack goes to `logUnexpected`.
 */
export function toServerError(err: unknown, logUnexpected: (err: unknown) => void): ServerError {
  // grpc-js percent-encodes the status message with encodeURI, which throws on a lone surrogate:
  // the call would never be answered, and the rejection would end the process. A message quoting
  // caller input cut at a length limit could otherwise hold half a surrogate pair.
  if (err instanceof ServerError) {
    return LONE_SURROGATE.test(err.details)
      ? new ServerError(err.code, wellFormed(err.details))
      : err;
  }
  if (isShardgateError(err)) {
    if (err.code === 'internal' || err.code === 'unavailable') logUnexpected(err);
    return new ServerError(statusByCode[err.code], wellFormed(err.message));
  }
  logUnexpected(err);
  return new ServerError(Status.INTERNAL, 'internal error; the gateway logged the details');
}
