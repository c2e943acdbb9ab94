import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config/load-config.js';

const emptyDir = () => mkdtempSync(join(tmpdir(), 'shardgate-config-'));

describe('loadConfig', () => {
  it('defaults to embedded PostgreSQL on 127.0.0.1:50051', () => {
    const config = loadConfig({}, emptyDir());
    expect(config.listen).toBe('127.0.0.1:50051');
    expect(config.catalogUrl).toBeUndefined();
    expect(config.embedded).toEqual({ dataDir: './.shardgate', basePort: 54_320, shardCount: 3 });
    expect(config.pool.max).toBe(10);
  });

  it('reads shards from SHARDGATE_SHARDS with optional weights, env over file', () => {
    const dir = emptyDir();
    writeFileSync(
      join(dir, 'shardgate.config.json'),
      JSON.stringify({ listen: '0.0.0.0:1', logLevel: 'warn' }),
    );
    const config = loadConfig(
      {
        SHARDGATE_LISTEN: '127.0.0.1:6000',
        SHARDGATE_CATALOG_URL: 'postgres://u:p@db:5432/catalog',
        SHARDGATE_SHARDS: 'shard-1=postgres://u:p@a:5432/s shard-2=postgres://u:p@b:5432/s#300',
      },
      dir,
    );
    expect(config.listen).toBe('127.0.0.1:6000');
    expect(config.logLevel).toBe('warn');
    expect(config.shards).toEqual([
      { name: 'shard-1', url: 'postgres://u:p@a:5432/s', weight: 100 },
      { name: 'shard-2', url: 'postgres://u:p@b:5432/s', weight: 300 },
    ]);
  });

  it('names every bad option in one clear error', () => {
    const dir = emptyDir();
    writeFileSync(
      join(dir, 'shardgate.config.json'),
      JSON.stringify({ pool: { max: 0 }, bogus: 1 }),
    );
    let message = '';
    try {
      loadConfig({ SHARDGATE_CATALOG_URL: 'mysql://x' }, dir);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain('pool.max');
    expect(message).toContain('catalogUrl');
    expect(message).toContain('bogus');
  });

  it('refuses a SHARDGATE_CONFIG that does not exist and a non-numeric port', () => {
    expect(() => loadConfig({ SHARDGATE_CONFIG: '/nonexistent/x.json' }, emptyDir())).toThrow(
      ConfigError,
    );
    expect(() => loadConfig({ SHARDGATE_EMBEDDED_PORT: 'abc' }, emptyDir())).toThrow(
      /SHARDGATE_EMBEDDED_PORT/,
    );
  });
});
