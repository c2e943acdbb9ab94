import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DeadlineCap } from '../../../src/api/deadline-cap.js';

describe('DeadlineCap (one timer for every call)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('aborts each call at its own cap, in start order, whichever calls ended before', () => {
    const cap = new DeadlineCap(100);
    const parent = new AbortController().signal;
    const a = cap.start(parent);
    vi.advanceTimersByTime(30);
    const b = cap.start(parent);
    vi.advanceTimersByTime(30);
    const c = cap.start(parent);
    a.end(); // the head leaves early: the timer armed for it must move on to b
    vi.advanceTimersByTime(39); // t = 99
    expect([a.capped, b.capped, c.capped]).toEqual([false, false, false]);
    vi.advanceTimersByTime(31); // t = 130: b's cap (30 + 100) has passed, c's (60 + 100) not
    expect(b.capped).toBe(true);
    expect(b.signal.aborted).toBe(true);
    expect((b.signal.reason as DOMException).name).toBe('TimeoutError');
    expect(c.capped).toBe(false);
    vi.advanceTimersByTime(30); // t = 160
    expect(c.capped).toBe(true);
    expect(a.signal.aborted).toBe(false);
  });

  it('a call that ended is never aborted, and a middle call can leave the list', () => {
    const cap = new DeadlineCap(50);
    const parent = new AbortController().signal;
    const calls = [cap.start(parent), cap.start(parent), cap.start(parent)];
    calls[1]!.end();
    vi.advanceTimersByTime(50);
    expect(calls.map((c) => c.signal.aborted)).toEqual([true, false, true]);
    // The list is empty again: a new call gets a fresh timer and its own full cap.
    vi.advanceTimersByTime(10);
    const late = cap.start(parent);
    vi.advanceTimersByTime(49);
    expect(late.signal.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    expect(late.capped).toBe(true);
  });

  it("follows the caller's own cancel with its reason, and is then not counted as capped", () => {
    const cap = new DeadlineCap(1_000);
    const caller = new AbortController();
    const call = cap.start(caller.signal);
    caller.abort(new Error('caller left'));
    expect(call.signal.aborted).toBe(true);
    expect((call.signal.reason as Error).message).toBe('caller left');
    vi.advanceTimersByTime(1_000);
    expect(call.capped).toBe(false);
    call.end();
  });
});
