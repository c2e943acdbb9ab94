import type { CallContext, ServerMiddlewareCall } from 'nice-grpc';
import { QuotaFailure, RetryInfo, RichServerError } from 'nice-grpc-error-details';
import type { AuthContext, Identity } from '../auth/identity.js';
import type { LimitsConfig, PoolConfig } from '../core/config.js';
import { ShardgateError } from '../core/errors.js';
import { isClientId } from '../core/ids.js';
import { statusByCode } from './error-status.js';
import type { GatewayContext } from './gateway-context.js';
import { CappedCall, DeadlineCap } from './deadline-cap.js';
import { RateLimiter, type Permit, type RateLimiterOptions, type Refusal } from './rate-limiter.js';

/** Services limited per caller (token) rather than per client: they name no tenant to bill. */
const ADMIN_SERVICE = '/shardgate.v1.AdminService/';
const SHARED_SERVICE = '/shardgate.v1.SharedService/';
/** Only shardgate's own services are limited: health checks and reflection always answer. */
const LIMITED_PREFIX = '/shardgate.v1.';
/** Caller keys start with a character no client id has, so the two never collide. */
const CALLER_KEY_PREFIX = '@';

/**
 * Per-client limits in this gateway process (so per replica), and a cap on how long a unary call
 * may run. A call of a tenant-scoped service is counted against the `client_id` of its request;
 * AdminService, SharedService and calls without a valid client id (ListTenants, or a malformed id,
 * which the handler refuses with INVALID_ARGUMENT) against the caller's token instead, so invented
 * ids never create limiter state. Over a limit: RESOURCE_EXHAUSTED with a RetryInfo detail and the
 * delay in the message. Unary calls past `limits.maxDeadlineMs` end DEADLINE_EXCEEDED and their
 * database work is cancelled; server streams are exempt from the cap but counted against
 * `limits.clientMaxStreams`.
 */
export class CallLimits {
  readonly #limits: LimitsConfig;
  readonly #limiter: RateLimiter;
  readonly #cap: DeadlineCap;

  constructor(limits: LimitsConfig, pool: PoolConfig) {
    this.#limits = limits;
    this.#limiter = new RateLimiter(rateLimiterOptions(limits, pool));
    this.#cap = new DeadlineCap(limits.maxDeadlineMs);
  }

  /**
   * Admits one call or throws RESOURCE_EXHAUSTED. The caller awaits `turn` when set, runs the call
   * with `signal`, maps a failure through `failure()`, and calls `exit()` exactly once at the end.
   * Undefined: the call is not limited (health, reflection, client streams).
   */
  enter(
    path: string,
    request: unknown,
    identity: Identity,
    responseStream: boolean,
    requestStream: boolean,
    signal: AbortSignal,
  ): LimitedCall | undefined {
    if (requestStream || !path.startsWith(LIMITED_PREFIX)) return undefined;
    const key = limitKeyOf(path, request, identity);
    const permit = this.#limiter.admit(key, responseStream ? 'stream' : 'unary');
    if (!permit.admitted) throw refusedError(permit, key, this.#limits);
    if (responseStream) return new LimitedCall(permit, signal, undefined, undefined);
    const capped = this.#cap.start(signal);
    return new LimitedCall(permit, capped.signal, capped, permit.waitTurn(capped.signal));
  }
}

/** One admitted call: its signal (capped for unary calls), its turn, and its release. */
export class LimitedCall {
  readonly #permit: Permit;
  readonly #capped: CappedCall | undefined;
  /** The call's signal: the caller's, or one that also fires at the deadline cap. */
  readonly signal: AbortSignal;
  /** Set while the call waits behind the client's earlier calls; await it before running. */
  readonly turn: Promise<void> | undefined;

  constructor(
    permit: Permit,
    signal: AbortSignal,
    capped: CappedCall | undefined,
    turn: Promise<void> | undefined,
  ) {
    this.#permit = permit;
    this.signal = signal;
    this.#capped = capped;
    this.turn = turn;
  }

  /** The error to give the caller for `err`: DEADLINE_EXCEEDED once capped, CANCELLED if it left. */
  failure(err: unknown): unknown {
    const capped = this.#capped;
    if (!capped) return err;
    if (capped.capped) return deadlineCapped(capped.capMs, err);
    // The caller went away while the call waited for its turn.
    if (this.signal.aborted && err === this.signal.reason) {
      return new ShardgateError('cancelled', 'the call was cancelled', { cause: err });
    }
    return err;
  }

  /** Releases the call's place and its cap; idempotent. */
  exit(): void {
    this.#capped?.end();
    this.#permit.release();
  }
}

/** CallLimits as a middleware of its own (the gateway runs it inside callGate). */
export function enforceLimits(ctx: GatewayContext) {
  const limits = new CallLimits(ctx.config.limits, ctx.config.pool);
  return async function* <Request, Response>(
    call: ServerMiddlewareCall<Request, Response>,
    context: CallContext & AuthContext,
  ) {
    const limited = limits.enter(
      call.method.path,
      call.request,
      context.identity,
      call.responseStream,
      call.requestStream,
      context.signal,
    );
    if (!limited) return yield* call.next(call.request, context);
    try {
      if (limited.turn) await limited.turn;
      const signal = limited.signal;
      return yield* call.next(
        call.request,
        signal === context.signal ? context : { ...context, signal },
      );
    } catch (err) {
      throw limited.failure(err);
    } finally {
      limited.exit();
    }
  };
}

/** The limiter's settings from config; clientMaxConcurrent defaults to half the pool. */
function rateLimiterOptions(limits: LimitsConfig, pool: PoolConfig): RateLimiterOptions {
  return {
    ratePerSecond: limits.clientRatePerSecond,
    burst: limits.clientBurst,
    maxConcurrent: limits.clientMaxConcurrent ?? Math.ceil(pool.max / 2),
    maxInFlight: limits.clientMaxInFlight,
    maxStreams: limits.clientMaxStreams,
  };
}

/** The client id of a tenant-scoped request, else the caller (see enforceLimits). */
function limitKeyOf(path: string, request: unknown, identity: Identity): string {
  if (!path.startsWith(ADMIN_SERVICE) && !path.startsWith(SHARED_SERVICE)) {
    const clientId = (request as { clientId?: unknown }).clientId;
    if (typeof clientId === 'string' && isClientId(clientId)) return clientId;
  }
  return CALLER_KEY_PREFIX + identity.actor;
}

function describeKey(key: string): string {
  return key.startsWith(CALLER_KEY_PREFIX)
    ? `caller '${key.slice(CALLER_KEY_PREFIX.length)}'`
    : `client '${key}'`;
}

/** RESOURCE_EXHAUSTED with RetryInfo and QuotaFailure details; the delay is in the message too. */
function refusedError(refusal: Refusal, key: string, limits: LimitsConfig): RichServerError {
  const who = describeKey(key);
  const ms = refusal.retryAfterMs;
  const replica = 'on this gateway replica';
  const message =
    refusal.limit === 'rate'
      ? `${who} is over its rate limit of ${limits.clientRatePerSecond} calls/s ` +
        `(burst ${limits.clientBurst}) ${replica}; retry in ${ms} ms`
      : refusal.limit === 'in-flight'
        ? `${who} already has ${limits.clientMaxInFlight} calls running or queued ${replica}, ` +
          `its limit; retry in ${ms} ms`
        : `${who} already has ${limits.clientMaxStreams} streams open ${replica}, its limit; ` +
          `close one, or retry in ${ms} ms`;
  return new RichServerError(statusByCode['resource-exhausted'], message, [
    RetryInfo.fromPartial({
      retryDelay: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 },
    }),
    QuotaFailure.fromPartial({
      violations: [{ subject: who, description: `${refusal.limit} limit per gateway replica` }],
    }),
  ]);
}

function deadlineCapped(capMs: number, cause: unknown): ShardgateError {
  return new ShardgateError(
    'deadline-exceeded',
    `the call ran longer than the gateway's limit of ${capMs} ms per call and was cancelled; ` +
      'ask for less per call (a smaller page or batch)',
    { cause },
  );
}
