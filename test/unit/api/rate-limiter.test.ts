import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  IN_FLIGHT_RETRY_MS,
  Permit,
  RateLimiter,
  STREAMS_RETRY_MS,
  type RateLimiterOptions,
  type Refusal,
} from '../../../src/api/rate-limiter.js';

/** A limiter on a clock the test moves by hand. */
function limiterAt(options: Partial<RateLimiterOptions> = {}) {
  const clock = { ms: 1_000 };
  const limiter = new RateLimiter({
    ratePerSecond: 10,
    burst: 3,
    maxConcurrent: 100,
    maxInFlight: 100,
    maxStreams: 100,
    now: () => clock.ms,
    ...options,
  });
  return { limiter, clock };
}

function admitted(result: Permit | Refusal): Permit {
  if (!result.admitted) throw new Error(`refused: ${result.limit} ${result.retryAfterMs} ms`);
  return result;
}

function refused(result: Permit | Refusal): Refusal {
  if (result.admitted) throw new Error('admitted, expected a refusal');
  return result;
}

/** Admits a unary call and releases it at once. */
function quickCall(limiter: RateLimiter, key: string): Permit | Refusal {
  const result = limiter.admit(key, 'unary');
  if (result.admitted) result.release();
  return result;
}

const never = new AbortController().signal;

describe('RateLimiter token bucket', () => {
  it('admits a burst, then refuses with the exact wait for the next token', () => {
    const { limiter, clock } = limiterAt();
    for (let i = 0; i < 3; i++) admitted(quickCall(limiter, 'acme'));
    expect(refused(quickCall(limiter, 'acme'))).toEqual({
      admitted: false,
      limit: 'rate',
      retryAfterMs: 100,
    });
    clock.ms += 99;
    expect(refused(quickCall(limiter, 'acme')).retryAfterMs).toBe(1);
    clock.ms += 1;
    admitted(quickCall(limiter, 'acme'));
    expect(refused(quickCall(limiter, 'acme')).retryAfterMs).toBe(100);
  });

  it('waiting exactly retryAfterMs is always enough, for awkward rates too', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 1, max: 5_000, noNaN: true }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 0, max: 60 }),
        (ratePerSecond, burst, extra) => {
          const { limiter, clock } = limiterAt({ ratePerSecond, burst });
          for (let i = 0; i < burst + extra; i++) quickCall(limiter, 'k');
          const refusal = refused(quickCall(limiter, 'k'));
          expect(refusal.retryAfterMs).toBeGreaterThanOrEqual(1);
          clock.ms += refusal.retryAfterMs;
          admitted(quickCall(limiter, 'k'));
        },
      ),
    );
  });

  it('refills at the rate but never above the burst', () => {
    const { limiter, clock } = limiterAt();
    for (let i = 0; i < 3; i++) admitted(quickCall(limiter, 'acme'));
    clock.ms += 60_000;
    for (let i = 0; i < 3; i++) admitted(quickCall(limiter, 'acme'));
    expect(refused(quickCall(limiter, 'acme')).limit).toBe('rate');
  });

  it('never admits more than burst + rate × elapsed, whatever the call pattern', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 250 }), { minLength: 1, maxLength: 200 }),
        (gapsMs) => {
          const { limiter, clock } = limiterAt({ ratePerSecond: 10, burst: 3 });
          const start = clock.ms;
          let calls = 0;
          for (const gap of gapsMs) {
            clock.ms += gap;
            if (quickCall(limiter, 'k').admitted) calls++;
          }
          expect(calls).toBeLessThanOrEqual(3 + Math.floor(((clock.ms - start) * 10) / 1000));
        },
      ),
    );
  });

  it('keeps each key to its own bucket', () => {
    const { limiter } = limiterAt();
    for (let i = 0; i < 3; i++) admitted(quickCall(limiter, 'noisy'));
    expect(refused(quickCall(limiter, 'noisy')).limit).toBe('rate');
    for (let i = 0; i < 3; i++) admitted(quickCall(limiter, 'quiet'));
  });
});

describe('RateLimiter concurrency', () => {
  it('refuses past maxInFlight without spending a token, and admits again after a release', () => {
    const { limiter } = limiterAt({ burst: 10, maxInFlight: 2 });
    const first = admitted(limiter.admit('acme', 'unary'));
    admitted(limiter.admit('acme', 'unary'));
    expect(refused(limiter.admit('acme', 'unary'))).toEqual({
      admitted: false,
      limit: 'in-flight',
      retryAfterMs: IN_FLIGHT_RETRY_MS,
    });
    first.release();
    first.release(); // idempotent: a second release frees nothing more
    admitted(limiter.admit('acme', 'unary'));
    expect(refused(limiter.admit('acme', 'unary')).limit).toBe('in-flight');
    // 3 tokens spent of 10: the refusals took none.
    for (let i = 0; i < 7; i++) {
      const p = admitted(limiter.admit('other-key', 'unary'));
      p.release();
    }
  });

  it('runs maxConcurrent calls at once; the rest wait their turn first come first served', async () => {
    const { limiter } = limiterAt({ burst: 10, maxConcurrent: 2 });
    const permits = Array.from({ length: 5 }, () => admitted(limiter.admit('acme', 'unary')));
    const started: number[] = [];
    const turns = permits.map((p, i) => {
      const waiting = p.waitTurn(never);
      if (!waiting) started.push(i);
      return waiting?.then(() => started.push(i));
    });
    expect(started).toEqual([0, 1]);
    expect(turns[0]).toBeUndefined();
    permits[1]!.release();
    await turns[2];
    expect(started).toEqual([0, 1, 2]);
    permits[0]!.release();
    permits[2]!.release();
    await Promise.all([turns[3], turns[4]]);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    // Another key never waits behind this one.
    expect(admitted(limiter.admit('other', 'unary')).waitTurn(never)).toBeUndefined();
  });

  it('a waiting call aborted by its signal leaves the queue and its place', async () => {
    const { limiter } = limiterAt({ burst: 10, maxConcurrent: 1, maxInFlight: 2 });
    const running = admitted(limiter.admit('acme', 'unary'));
    expect(running.waitTurn(never)).toBeUndefined();
    const waiting = admitted(limiter.admit('acme', 'unary'));
    const controller = new AbortController();
    const turn = waiting.waitTurn(controller.signal)!;
    const reason = new Error('caller went away');
    controller.abort(reason);
    await expect(turn).rejects.toBe(reason);
    waiting.release();
    // The aborted call holds nothing: one more may queue, and gets the slot when it frees.
    const next = admitted(limiter.admit('acme', 'unary'));
    const nextTurn = next.waitTurn(never)!;
    expect(refused(limiter.admit('acme', 'unary')).limit).toBe('in-flight');
    running.release();
    await nextTurn;
    next.release();
    const after = admitted(limiter.admit('acme', 'unary'));
    expect(after.waitTurn(never)).toBeUndefined();
  });

  it('an already-aborted signal rejects at once instead of queueing', async () => {
    const { limiter } = limiterAt({ maxConcurrent: 1 });
    admitted(limiter.admit('acme', 'unary')).waitTurn(never);
    const late = admitted(limiter.admit('acme', 'unary'));
    await expect(late.waitTurn(AbortSignal.abort('gone'))).rejects.toBe('gone');
  });

  it('caps open streams per key; streams need no running slot', () => {
    const { limiter } = limiterAt({ burst: 10, maxStreams: 2, maxConcurrent: 1 });
    const a = admitted(limiter.admit('acme', 'stream'));
    admitted(limiter.admit('acme', 'stream'));
    expect(a.waitTurn(never)).toBeUndefined();
    expect(refused(limiter.admit('acme', 'stream'))).toEqual({
      admitted: false,
      limit: 'streams',
      retryAfterMs: STREAMS_RETRY_MS,
    });
    // Streams do not use up unary places, and the unary slot is still free.
    expect(admitted(limiter.admit('acme', 'unary')).waitTurn(never)).toBeUndefined();
    a.release();
    admitted(limiter.admit('acme', 'stream'));
  });
});

describe('RateLimiter memory', () => {
  it('forgets idle, refilled keys as calls go on, so 10,000 one-off clients leave little behind', () => {
    const { limiter, clock } = limiterAt({ ratePerSecond: 10, burst: 3 });
    for (let i = 0; i < 10_000; i++) quickCall(limiter, `client-${i}`);
    expect(limiter.size).toBe(10_000);
    // 300 ms later (a full refill), every key is idle and refilled; ongoing calls sweep them out.
    clock.ms += 300;
    for (let i = 0; i < 5_000; i++) quickCall(limiter, 'steady');
    expect(limiter.size).toBe(1);
  });

  it('keeps keys with calls or streams open, however old, and still sweeps behind them', () => {
    const { limiter, clock } = limiterAt({ ratePerSecond: 10, burst: 3 });
    const call = admitted(limiter.admit('busy-call', 'unary'));
    const stream = admitted(limiter.admit('busy-stream', 'stream'));
    for (let i = 0; i < 100; i++) quickCall(limiter, `idle-${i}`);
    clock.ms += 1_000;
    for (let i = 0; i < 200; i++) {
      clock.ms += 1;
      quickCall(limiter, 'steady');
    }
    expect(limiter.size).toBe(3);
    // The kept keys still count what is open: busy-call has one of its places taken.
    call.release();
    stream.release();
    clock.ms += 1_000;
    for (let i = 0; i < 10; i++) quickCall(limiter, 'steady');
    expect(limiter.size).toBe(1);
  });

  it('a forgotten key comes back with a full bucket, as if it had been kept', () => {
    const { limiter, clock } = limiterAt({ ratePerSecond: 10, burst: 3 });
    for (let i = 0; i < 3; i++) admitted(quickCall(limiter, 'acme'));
    clock.ms += 300;
    quickCall(limiter, 'other');
    quickCall(limiter, 'other');
    expect(limiter.size).toBe(1);
    for (let i = 0; i < 3; i++) admitted(quickCall(limiter, 'acme'));
    expect(refused(quickCall(limiter, 'acme')).limit).toBe('rate');
  });

  it('never tracks more than maxKeys, even against invented ids at a frozen clock', () => {
    const { limiter } = limiterAt({ maxKeys: 1_000 });
    const held = admitted(limiter.admit('held', 'unary'));
    for (let i = 0; i < 20_000; i++) {
      quickCall(limiter, `random-${i}`);
      expect(limiter.size).toBeLessThanOrEqual(1_000);
    }
    // The busy key may have been forgotten under that pressure; its permit still settles.
    held.release();
  });

  it('a sweep examines a bounded number of keys per call (no O(keys) pass on the hot path)', () => {
    const { limiter, clock } = limiterAt({ ratePerSecond: 10, burst: 3 });
    for (let i = 0; i < 10_000; i++) quickCall(limiter, `client-${i}`);
    clock.ms += 300;
    quickCall(limiter, 'steady');
    // One call removed at most two idle keys, not all 10,000.
    expect(limiter.size).toBeGreaterThanOrEqual(9_999);
  });
});
