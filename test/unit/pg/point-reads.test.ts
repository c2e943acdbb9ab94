import { describe, expect, it } from 'vitest';
import { configSchema } from '../../../src/core/config.js';
import { singleReadSql } from '../../../src/pg/point-reads.js';

describe('pool.readBatchStatements / pool.readBatchMax', () => {
  const pool = (p: Record<string, unknown>) => configSchema.safeParse({ pool: p });

  it('leaves readBatchStatements unset by default (ShardPools then uses ceil(max / 4)) and readBatchMax 64', () => {
    const { pool: parsed } = configSchema.parse({});
    expect(parsed.readBatchStatements).toBeUndefined();
    expect(parsed.readBatchMax).toBe(64);
  });

  it('accepts readBatchStatements 0 (coalescing off) and any positive integer', () => {
    expect(pool({ readBatchStatements: 0 }).data?.pool.readBatchStatements).toBe(0);
    expect(pool({ readBatchStatements: 7 }).data?.pool.readBatchStatements).toBe(7);
  });

  it('rejects a negative or fractional readBatchStatements', () => {
    for (const readBatchStatements of [-1, 1.5, '2']) {
      const res = pool({ readBatchStatements });
      expect(res.success).toBe(false);
      expect(res.error?.issues.map((i) => i.path.join('.'))).toEqual(['pool.readBatchStatements']);
    }
  });

  it('accepts readBatchMax 1 to 1000 and rejects 0 and 1001', () => {
    expect(pool({ readBatchMax: 1 }).data?.pool.readBatchMax).toBe(1);
    expect(pool({ readBatchMax: 1000 }).data?.pool.readBatchMax).toBe(1000);
    for (const readBatchMax of [0, 1001]) {
      expect(pool({ readBatchMax }).error?.issues.map((i) => i.path.join('.'))).toEqual([
        'pool.readBatchMax',
      ]);
    }
  });
});

describe('singleReadSql', () => {
  it('selects the spec columns from the quoted schema by the one bound id', () => {
    expect(singleReadSql({ table: 'appointments', columns: 'id, label' }, '"client_a"')).toBe(
      'SELECT id, label FROM "client_a".appointments WHERE id = $1',
    );
  });
});
