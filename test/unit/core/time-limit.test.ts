import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { withTimeLimit } from '../../../src/core/time-limit.js';

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

const abortOf = (signal: AbortSignal): Promise<unknown> =>
  new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason)));

describe('withTimeLimit', () => {
  it('aborts at the time limit even when garbage is collected while it waits', async () => {
    const caller = new AbortController();
    const collecting = setInterval(collectGarbage, 20);
    try {
      const started = Date.now();
      // Nothing but the timer refers to the limited signal while fn waits on it.
      const reason = await Promise.race([
        withTimeLimit(caller.signal, 300, (limited) => abortOf(limited)),
        new Promise((r) => setTimeout(() => r('never aborted'), 3_000)),
      ]);
      expect((reason as DOMException).name).toBe('TimeoutError');
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    } finally {
      clearInterval(collecting);
    }
    expect(caller.signal.aborted).toBe(false);
  });

  it("aborts with the caller's reason when the caller aborts first", async () => {
    const caller = new AbortController();
    const reason = new Error('cancelled by the caller');
    setTimeout(() => caller.abort(reason), 10);
    expect(await withTimeLimit(caller.signal, 60_000, (limited) => abortOf(limited))).toBe(reason);
  });

  it('hands an aborted signal on at once when the caller has already aborted', async () => {
    const caller = new AbortController();
    caller.abort(new Error('gone'));
    const seen = await withTimeLimit(caller.signal, 60_000, async (limited) => limited.aborted);
    expect(seen).toBe(true);
  });

  it("returns fn's result and lets go of the caller's signal once fn settles", async () => {
    const caller = new AbortController();
    let kept: AbortSignal | undefined;
    const result = await withTimeLimit(caller.signal, 50, async (limited) => {
      kept = limited;
      return 42;
    });
    expect(result).toBe(42);
    caller.abort();
    await new Promise((r) => setTimeout(r, 100)); // past the time limit as well
    expect(kept!.aborted).toBe(false);
  });

  it("passes fn's failure through", async () => {
    const failure = new Error('the probe failed');
    await expect(
      withTimeLimit(new AbortController().signal, 1_000, () => Promise.reject(failure)),
    ).rejects.toBe(failure);
  });
});
