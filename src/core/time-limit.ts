/**
 * Runs `fn` with a signal that aborts when `signal` (if any) does or after `timeLimitMs`,
 * whichever comes first; the timer and the listener are gone once `fn` settles.
 *
 * Not `AbortSignal.any([signal, AbortSignal.timeout(ms)])`: on Node 20 the timeout signal inside
 * a composite is only weakly held, so a garbage collection before the time is up leaves the
 * composite never aborting (nodejs/node#57736). Here the timer holds the controller strongly.
 */
export async function withTimeLimit<T>(
  signal: AbortSignal | undefined,
  timeLimitMs: number,
  fn: (limited: AbortSignal) => Promise<T>,
): Promise<T> {
  const limited = new AbortController();
  const onAbort = (): void => limited.abort(signal?.reason);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(
    () => limited.abort(new DOMException(`no answer within ${timeLimitMs} ms`, 'TimeoutError')),
    timeLimitMs,
  );
  try {
    return await fn(limited.signal);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}
