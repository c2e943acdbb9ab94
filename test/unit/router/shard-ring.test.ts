import { describe, expect, it } from 'vitest';
import type { ShardName } from '../../../src/core/ids.js';
import { ShardRing } from '../../../src/router/shard-ring.js';

const ids = Array.from({ length: 10_000 }, (_, i) => `client-${i}`);
const member = (name: string, weight = 100) => ({ name: name as ShardName, weight });

function placements(ring: ShardRing): Map<string, string> {
  return new Map(ids.map((id) => [id, ring.shardFor(id)!]));
}

describe('ShardRing', () => {
  it('answers identically for rings built from the same members in any order', () => {
    const a = new ShardRing([member('shard-1'), member('shard-2'), member('shard-3')], 64, 1);
    const b = new ShardRing([member('shard-3'), member('shard-1'), member('shard-2')], 64, 1);
    expect(placements(a)).toEqual(placements(b));
  });

  it('spreads clients roughly evenly over equal shards', () => {
    const ring = new ShardRing([member('shard-1'), member('shard-2'), member('shard-3')], 64, 1);
    const counts = new Map<string, number>();
    for (const shard of placements(ring).values()) counts.set(shard, (counts.get(shard) ?? 0) + 1);
    for (const n of counts.values()) expect(n / ids.length).toBeGreaterThan(0.25);
  });

  it('moves about 1/(N+1) of the clients when a shard joins N equal shards, all to the new one', () => {
    const three = placements(
      new ShardRing([member('shard-1'), member('shard-2'), member('shard-3')], 64, 1),
    );
    const four = placements(
      new ShardRing(
        [member('shard-1'), member('shard-2'), member('shard-3'), member('shard-4')],
        64,
        2,
      ),
    );
    const moved = ids.filter((id) => three.get(id) !== four.get(id));
    expect(moved.every((id) => four.get(id) === 'shard-4')).toBe(true);
    expect(moved.length / ids.length).toBeGreaterThan(0.15);
    expect(moved.length / ids.length).toBeLessThan(0.35);
  });

  it('honours weights', () => {
    const ring = new ShardRing([member('shard-1', 300), member('shard-2', 100)], 64, 1);
    const heavy = [...placements(ring).values()].filter((s) => s === 'shard-1').length;
    expect(heavy / ids.length).toBeGreaterThan(0.65);
    expect(heavy / ids.length).toBeLessThan(0.85);
  });

  it('has no shard for anyone when empty', () => {
    expect(new ShardRing([], 64, 0).shardFor('acme-hvac')).toBeUndefined();
  });
});
