import { describe, expect, it } from 'vitest';
import { uuidV7 } from '../../../src/core/uuid-v7.js';

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const timeOf = (id: string): number => parseInt(id.replaceAll('-', '').slice(0, 12), 16);

describe('uuidV7', () => {
  it('is a version 7, variant 10 UUID whose time part is the current Unix time in ms', () => {
    const before = Date.now();
    const id = uuidV7();
    expect(id).toMatch(V7);
    expect(timeOf(id)).toBeGreaterThanOrEqual(before);
    expect(timeOf(id)).toBeLessThanOrEqual(Date.now());
    expect(timeOf(uuidV7(Date.UTC(2030, 0, 1)))).toBeGreaterThanOrEqual(Date.UTC(2030, 0, 1));
  });

  it('increases strictly, in string (and so uuid byte) order, over thousands of ids in one millisecond', () => {
    const nowMs = Date.UTC(2031, 5, 1);
    // 10,000 ids in one millisecond: more than the counter holds, so the time part moves on.
    const ids = Array.from({ length: 10_000 }, () => uuidV7(nowMs));
    for (const id of ids) expect(id).toMatch(V7);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(timeOf(ids[0]!)).toBe(nowMs);
    expect(timeOf(ids.at(-1)!)).toBeGreaterThan(nowMs);
  });

  it('never goes back when the clock does', () => {
    const first = uuidV7(Date.UTC(2032, 0, 1, 0, 0, 1));
    const second = uuidV7(Date.UTC(2032, 0, 1, 0, 0, 0)); // the clock stepped back a second
    expect(second > first).toBe(true);
  });

  it('has random bits that differ between ids', () => {
    const tails = new Set(Array.from({ length: 1_000 }, () => uuidV7().slice(19)));
    expect(tails.size).toBe(1_000);
  });
});
