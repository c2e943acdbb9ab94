/** Domain error codes; `src/api/error-status.ts` maps each to exactly one gRPC status. */
export const errorCodes = [
  'invalid-argument',
  'not-found',
  'already-exists',
  'failed-precondition',
  'aborted',
  'unavailable',
  'deadline-exceeded',
  'cancelled',
  'resource-exhausted',
  'unauthenticated',
  'permission-denied',
  'internal',
] as const;
export type ErrorCode = (typeof errorCodes)[number];

/**
 * The one error type the gateway throws on purpose. Its message is safe to show a caller: it never
 * carries query parameters, tokens or DSN passwords. The underlying error travels in `cause`.
 */
export class ShardgateError extends Error {
  readonly code: ErrorCode;
  /** A machine-readable refinement of `code` (AIP-193's ErrorInfo.reason), when one helps. */
  readonly reason: ErrorReason | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; reason?: ErrorReason },
  ) {
    super(message, options);
    this.name = 'ShardgateError';
    this.code = code;
    this.reason = options?.reason;
  }
}

/**
 * `placement-stale`: the shard refused or lacked the client's schema because the client moved
 * (or is moving); the router re-reads the placement and retries, so callers rarely see it.
 */
export type ErrorReason = 'placement-stale';

/** The client's data was not where the placement said: re-resolve and retry. */
export const placementStale = (shard: string, cause?: unknown): ShardgateError =>
  new ShardgateError('unavailable', `the client is moving off shard '${shard}'; retry`, {
    cause,
    reason: 'placement-stale',
  });

/** True for a ShardgateError, optionally of one code. */
export function isShardgateError(err: unknown, code?: ErrorCode): err is ShardgateError {
  return err instanceof ShardgateError && (code === undefined || err.code === code);
}

export const invalidArgument = (message: string): ShardgateError =>
  new ShardgateError('invalid-argument', message);

export const unknownClient = (clientId: string): ShardgateError =>
  new ShardgateError(
    'not-found',
    `client '${clientId}' does not exist; create it with TenantService.CreateTenant`,
  );

export const notFound = (what: string): ShardgateError => new ShardgateError('not-found', what);

export const tenantNotActive = (clientId: string, status: string): ShardgateError =>
  new ShardgateError(
    'failed-precondition',
    status === 'churned'
      ? `client '${clientId}' is churned; reactivate it with TenantService.ReactivateTenant`
      : `client '${clientId}' is ${status}; retry CreateTenant to finish provisioning it`,
  );

export const versionConflict = (expected: number, actual: number): ShardgateError =>
  new ShardgateError(
    'aborted',
    `expected_version ${expected} is stale: the current version is ${actual}; read the state and retry`,
  );

export const shardUnavailable = (shard: string, cause?: unknown): ShardgateError =>
  new ShardgateError('unavailable', `shard '${shard}' is unavailable; retry later`, { cause });

export const catalogUnavailable = (cause?: unknown): ShardgateError =>
  new ShardgateError('unavailable', 'the catalog database is unavailable; retry later', { cause });

export const internalError = (message: string, cause?: unknown): ShardgateError =>
  new ShardgateError('internal', message, { cause });
