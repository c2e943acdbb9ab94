import type { CallContext, ServerMiddlewareCall } from 'nice-grpc';
import { QuotaFailure, RetryInfo, RichServerError } from 'nice-grpc-error-details';
import type { AuthContext, Identity } from '../auth/identity.js';
import type { LimitsConfig, PoolConfig } from '../core/config.js';
import { ShardgateError } from '../core/errors.js';
import { isClientId } from '../core/ids.js';
import { statusByCode } from './error-status.js';
import type { GatewayContext } from './gateway-context.js';
import { RateLimiter, type RateLimiterOptions, type Refusal } from './rate-limiter.js';

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
export function enforceLimits(ctx: GatewayContext) {
  const limits = ctx.config.limits;
  const limiter = new RateLimiter(rateLimiterOptions(limits, ctx.config.pool));
  const capMs = limits.maxDeadlineMs;
  return async function* <Request, Response>(
    call: ServerMiddlewareCall<Request, Response>,
    context: CallContext & AuthContext,
  ) {
    const path = call.method.path;
    if (!path.startsWith(LIMITED_PREFIX) || call.requestStream) {
      return yield* call.next(call.request, context);
    }
    const key = limitKeyOf(path, call.request, context.identity);
    const permit = limiter.admit(key, call.responseStream ? 'stream' : 'unary');
    if (!permit.admitted) throw refusedError(permit, key, limits);
    if (call.responseStream) {
      try {
        return yield* call.next(call.request, context);
      } finally {
        permit.release();
      }
    }

    // The handler sees a signal that fires on the caller's cancel or deadline, or at the cap.
    const deadline = new CappedSignal(context.signal, capMs);
    const signal = deadline.signal;
    try {
      const waiting = permit.waitTurn(signal);
      if (waiting) await waiting;
      return yield* call.next(call.request, { ...context, signal });
    } catch (err) {
      if (deadline.capped) throw deadlineCapped(capMs, err);
      // The caller went away while the call waited for its turn.
      if (signal.aborted && err === signal.reason) {
        throw new ShardgateError('cancelled', 'the call was cancelled', { cause: err });
      }
      throw err;
    } finally {
      deadline.dispose();
      permit.release();
    }
  };
}

/**
 * A signal that fires when the caller's does (with its reason) or once `capMs` pass (with a
 * TimeoutError, which the database layer reports as a deadline). One timer and one listener per
 * call, both removed by dispose(); bench/limits.ts measures what they cost.
 */
class CappedSignal {
  readonly #controller = new AbortController();
  readonly #parent: AbortSignal;
  readonly #timer: NodeJS.Timeout;
  #capped = false;

  constructor(parent: AbortSignal, capMs: number) {
    this.#parent = parent;
    if (parent.aborted) this.#controller.abort(parent.reason);
    else parent.addEventListener('abort', this.#onParentAbort, { once: true });
    this.#timer = setTimeout(this.#onCap, capMs);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** True once the cap fired (before the caller's own deadline or cancel). */
  get capped(): boolean {
    return this.#capped;
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#parent.removeEventListener('abort', this.#onParentAbort);
  }

  readonly #onParentAbort = (): void => this.#controller.abort(this.#parent.reason);

  readonly #onCap = (): void => {
    if (this.#controller.signal.aborted) return;
    this.#capped = true;
    this.#controller.abort(new DOMException('the gateway deadline cap passed', 'TimeoutError'));
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
