import { ServerError, Status } from 'nice-grpc';
import { isShardgateError, type ErrorCode } from '../core/errors.js';

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
  if (err instanceof ServerError) return err;
  if (isShardgateError(err)) {
    if (err.code === 'internal' || err.code === 'unavailable') logUnexpected(err);
    return new ServerError(statusByCode[err.code], err.message);
  }
  logUnexpected(err);
  return new ServerError(Status.INTERNAL, 'internal error; the gateway logged the details');
}
