import { setTimeout as sleep } from 'node:timers/promises';
import { type ClientMiddleware, Status } from 'nice-grpc';
import type { DeadlineOptions } from 'nice-grpc-client-middleware-deadline';
import type { RetryOptions } from 'nice-grpc-client-middleware-retry';
import { RetryInfo, RichClientError } from 'nice-grpc-error-details';

/** setTimeout fires at once for longer delays; a server asking for more is not followed. */
const MAX_TIMER_MS = 2_147_483_647;
/** Upward jitter: up to this fraction of the server's delay, so refused callers spread out. */
const JITTER_FRACTION = 0.1;

/**
 * Server pushback (gRPC retry design A6, AIP-194): a unary call that fails RESOURCE_EXHAUSTED with
 * a google.rpc.RetryInfo detail is retried after at least its `retry_delay`. It follows the
 * options of nice-grpc-client-middleware-retry, which it must enclose: only calls with `retry`
 * are retried, and its attempts and that middleware's share one budget, `retryMaxAttempts` + 1
 * attempts per call. Attach it outside the deadline middleware (so it sees `deadline`, which it
 * turns into one absolute deadline for all attempts) and errorDetailsClientMiddleware (so errors
 * carry their details). It never sleeps past the deadline: when the delay and then another
 * attempt as long as the refused one do not fit, the RESOURCE_EXHAUSTED error is thrown at once.
 * The call's `signal` ends a wait with an AbortError.
 */
export const pushbackRetryMiddleware: ClientMiddleware<object, RetryOptions & DeadlineOptions> =
  async function* pushbackRetry(call, options) {
    const { idempotencyLevel } = call.method.options;
    const {
      retry = idempotencyLevel === 'IDEMPOTENT' || idempotencyLevel === 'NO_SIDE_EFFECTS',
      retryMaxAttempts = 1,
      deadline,
      signal,
      onRetryableError,
    } = options;
    if (call.requestStream || call.responseStream || !retry) {
      return yield* call.next(call.request, options);
    }
    const maxAttempts = retryMaxAttempts + 1;
    let attemptStartedAt = Date.now();
    const deadlineAt =
      deadline === undefined
        ? Infinity
        : deadline instanceof Date
          ? deadline.getTime()
          : attemptStartedAt + deadline;
    let used = 0;
    let attemptDeadline = deadline;
    for (;;) {
      const first = used;
      let attempts = 1;
      try {
        return yield* call.next(call.request, {
          ...options,
          deadline: attemptDeadline,
          retryMaxAttempts: maxAttempts - first - 1,
          // The inner retry middleware reports each retry it makes: one budget per call.
          onRetryableError(error, attempt, delayMs) {
            attempts++;
            attemptStartedAt = Date.now() + delayMs;
            onRetryableError?.(error, first + attempt, delayMs);
          },
        });
      } catch (error) {
        used += attempts;
        const delayMs = used < maxAttempts ? pushbackDelayMs(error) : undefined;
        if (delayMs === undefined) throw error;
        // The next attempt needs about as long as the refused one took: keep that much.
        const now = Date.now();
        const leftMs = deadlineAt - now - (now - attemptStartedAt);
        const waitMs = pushbackWaitMs(delayMs, leftMs, Math.random());
        if (waitMs === undefined) throw error;
        onRetryableError?.(error as RichClientError, used - 1, waitMs);
        await sleepAtLeast(waitMs, signal);
        attemptStartedAt = Date.now();
        attemptDeadline = deadlineAt === Infinity ? undefined : new Date(deadlineAt);
      }
    }
  };

/**
 * The delay a RESOURCE_EXHAUSTED error asks for in its RetryInfo detail, in whole milliseconds
 * (rounded up); undefined for any other error, or one without a usable delay.
 */
export function pushbackDelayMs(error: unknown): number | undefined {
  if (!(error instanceof RichClientError) || error.code !== Status.RESOURCE_EXHAUSTED) {
    return undefined;
  }
  const info = error.extra.find((d): d is RetryInfo => d.$type === RetryInfo.$type);
  const delay = info?.retryDelay;
  if (delay === undefined) return undefined;
  const ms = Math.ceil(delay.seconds * 1000 + delay.nanos / 1e6);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

/**
 * How long to wait before following a pushback of `delayMs` when `leftMs` may pass before the
 * next attempt must start (the deadline less that attempt's time): delayMs plus upward jitter of
 * up to JITTER_FRACTION of it, never past leftMs. Undefined when delayMs does not fit (or is
 * beyond any timer). `random` is in [0, 1).
 */
export function pushbackWaitMs(
  delayMs: number,
  leftMs: number,
  random: number,
): number | undefined {
  const slackMs = leftMs - delayMs;
  if (!(slackMs > 0) || delayMs > MAX_TIMER_MS) return undefined;
  const jitterMs = Math.floor(random * Math.min(delayMs * JITTER_FRACTION, slackMs));
  return Math.min(delayMs + jitterMs, MAX_TIMER_MS);
}

/**
 * Sleeps `ms` or longer by the monotonic clock: a timer may fire a little early, measured from the
 * call (Node starts it at the event loop's cached time). Rejects with an AbortError on `signal`.
 */
async function sleepAtLeast(ms: number, signal: AbortSignal | undefined): Promise<void> {
  const until = performance.now() + ms;
  for (let left = ms; left > 0; left = until - performance.now()) {
    await sleep(Math.ceil(left), undefined, { signal });
  }
}
