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
  it('reads auth and TLS from SHARDGATE_AUTH_REQUIRED, SHARDGATE_ADMIN_TOKEN and SHARDGATE_TLS_*', () => {
    const adminToken = 'x'.repeat(40);
    const config = loadConfig(
      {
        SHARDGATE_LISTEN: '0.0.0.0:50051',
        SHARDGATE_AUTH_REQUIRED: 'true',
        SHARDGATE_ADMIN_TOKEN: adminToken,
        SHARDGATE_TLS_CERT_FILE: '/etc/shardgate/server.pem',
        SHARDGATE_TLS_KEY_FILE: '/etc/shardgate/server.key',
        SHARDGATE_TLS_CLIENT_CA_FILE: '/etc/shardgate/clients-ca.pem',
      },
      emptyDir(),
    );
    expect(config.auth).toEqual({ required: true, adminToken });
    expect(config.tls).toEqual({
      certFile: '/etc/shardgate/server.pem',
      keyFile: '/etc/shardgate/server.key',
      clientCaFile: '/etc/shardgate/clients-ca.pem',
    });
  });

  it('defaults to auth off and plaintext, and env overrides the file for auth', () => {
    const defaults = loadConfig({}, emptyDir());
    expect(defaults.auth).toEqual({ required: false });
    expect(defaults.tls).toBeUndefined();
    const dir = emptyDir();
    writeFileSync(join(dir, 'shardgate.config.json'), JSON.stringify({ auth: { required: true } }));
    expect(loadConfig({ SHARDGATE_AUTH_REQUIRED: 'false' }, dir).auth.required).toBe(false);
    expect(loadConfig({ SHARDGATE_AUTH_REQUIRED: '1' }, emptyDir()).auth.required).toBe(true);
  });

  it('reads SHARDGATE_ALLOW_SUPERUSER and SHARDGATE_RATE_LIMIT', () => {
    const config = loadConfig(
      { SHARDGATE_ALLOW_SUPERUSER: 'yes', SHARDGATE_RATE_LIMIT: '250' },
      emptyDir(),
    );
    expect(config.database.allowSuperuser).toBe(true);
    expect(config.limits.clientRatePerSecond).toBe(250);
    expect(loadConfig({}, emptyDir()).database.allowSuperuser).toBe(false);
    expect(() => loadConfig({ SHARDGATE_RATE_LIMIT: 'lots' }, emptyDir())).toThrow(
      /SHARDGATE_RATE_LIMIT must be a whole number/,
    );
  });

  it('reads SHARDGATE_READ_BATCH_STATEMENTS (0 turns point-read coalescing off)', () => {
    expect(
      loadConfig({ SHARDGATE_READ_BATCH_STATEMENTS: '0' }, emptyDir()).pool.readBatchStatements,
    ).toBe(0);
    expect(
      loadConfig({ SHARDGATE_READ_BATCH_STATEMENTS: '4' }, emptyDir()).pool.readBatchStatements,
    ).toBe(4);
    // Unset: ShardPools uses a quarter of pool.max.
    expect(loadConfig({}, emptyDir()).pool.readBatchStatements).toBeUndefined();
    expect(() => loadConfig({ SHARDGATE_READ_BATCH_STATEMENTS: '-1' }, emptyDir())).toThrow(
      /readBatchStatements/,
    );
  });

  it('keeps audit events 400 days by default; SHARDGATE_AUDIT_RETENTION_DAYS overrides the file, 0 keeps them forever', () => {
    expect(loadConfig({}, emptyDir()).audit).toEqual({ retentionDays: 400 });
    const dir = emptyDir();
    writeFileSync(
      join(dir, 'shardgate.config.json'),
      JSON.stringify({ audit: { retentionDays: 90 } }),
    );
    expect(loadConfig({}, dir).audit.retentionDays).toBe(90);
    expect(loadConfig({ SHARDGATE_AUDIT_RETENTION_DAYS: '0' }, dir).audit.retentionDays).toBe(0);
    expect(loadConfig({ SHARDGATE_AUDIT_RETENTION_DAYS: '30' }, dir).audit.retentionDays).toBe(30);
  });

  it('refuses an audit retention that is negative, fractional, not a number or an unknown audit option', () => {
    expect(() => loadConfig({ SHARDGATE_AUDIT_RETENTION_DAYS: '-1' }, emptyDir())).toThrow(
      /audit\.retentionDays/,
    );
    expect(() => loadConfig({ SHARDGATE_AUDIT_RETENTION_DAYS: 'forever' }, emptyDir())).toThrow(
      /SHARDGATE_AUDIT_RETENTION_DAYS must be a whole number/,
    );
    const dir = emptyDir();
    writeFileSync(
      join(dir, 'shardgate.config.json'),
      JSON.stringify({ audit: { retentionDays: 1.5, keepDays: 3 } }),
    );
    let message = '';
    try {
      loadConfig({}, dir);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain('audit.retentionDays');
    expect(message).toContain('keepDays');
  });

  it('refuses a SHARDGATE_AUTH_REQUIRED that is not a boolean', () => {
    expect(() => loadConfig({ SHARDGATE_AUTH_REQUIRED: 'maybe' }, emptyDir())).toThrow(
      /SHARDGATE_AUTH_REQUIRED must be true or false/,
    );
  });

  it('refuses a short admin token without echoing it', () => {
    let message = '';
    try {
      loadConfig({ SHARDGATE_ADMIN_TOKEN: 'short-secret' }, emptyDir());
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain('auth.adminToken: at least 32 characters');
    expect(message).not.toContain('short-secret');
  });

  it('refuses a TLS key without its certificate', () => {
    expect(() => loadConfig({ SHARDGATE_TLS_KEY_FILE: '/k.pem' }, emptyDir())).toThrow(
      /tls\.certFile/,
    );
  });

  it('refuses to listen on a non-loopback address without auth', () => {
    expect(() => loadConfig({ SHARDGATE_LISTEN: '0.0.0.0:50051' }, emptyDir())).toThrow(
      /refusing to listen on 0\.0\.0\.0:50051 without authentication/,
    );
    expect(loadConfig({ SHARDGATE_LISTEN: '[::1]:50051' }, emptyDir()).listen).toBe('[::1]:50051');
  });
});
