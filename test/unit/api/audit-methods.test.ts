import { describe, expect, it } from 'vitest';
import { methodsMatching } from '../../../src/api/admin-audit.js';
import {
  auditedMethods,
  auditedRequestJson,
  readOnlyAdminMethods,
  redactDsn,
  storableText,
} from '../../../src/api/audit-middleware.js';
import { AdminServiceDefinition } from '../../../src/gen/shardgate/v1/admin.js';
import { TenantServiceDefinition } from '../../../src/gen/shardgate/v1/tenant.js';

const pathsOf = (d: { fullName: string; methods: Record<string, { name: string }> }) =>
  Object.values(d.methods).map((m) => `/${d.fullName}/${m.name}`);

const rule = (path: string) => {
  const found = auditedMethods.get(path);
  if (!found) throw new Error(`${path} is not audited`);
  return found;
};

describe('the audited method list', () => {
  it('classifies every AdminService method as audited or read-only, never both', () => {
    const unclassified = pathsOf(AdminServiceDefinition).filter(
      (p) => auditedMethods.has(p) === readOnlyAdminMethods.has(p),
    );
    expect(unclassified).toEqual([]);
  });

  it('names only methods that exist', () => {
    const known = new Set([
      ...pathsOf(AdminServiceDefinition),
      ...pathsOf(TenantServiceDefinition),
    ]);
    expect(
      [...auditedMethods.keys(), ...readOnlyAdminMethods].filter((p) => !known.has(p)),
    ).toEqual([]);
  });

  it('audits exactly the admin changes and the tenant purges', () => {
    expect([...auditedMethods.keys()].sort()).toEqual(
      [
        '/shardgate.v1.AdminService/AddShard',
        '/shardgate.v1.AdminService/CancelMove',
        '/shardgate.v1.AdminService/CreateToken',
        '/shardgate.v1.AdminService/DrainShard',
        '/shardgate.v1.AdminService/MoveTenant',
        '/shardgate.v1.AdminService/Rebalance',
        '/shardgate.v1.AdminService/RemoveShard',
        '/shardgate.v1.AdminService/RevokeToken',
        '/shardgate.v1.AdminService/SetShardWeight',
        '/shardgate.v1.AdminService/SetShardDsn',
        '/shardgate.v1.TenantService/ChurnTenant',
        '/shardgate.v1.TenantService/ReactivateTenant',
      ].sort(),
    );
    for (const [path, r] of auditedMethods) expect(`/${r.method}`).toBe(path);
  });
});

describe('what an audited call records', () => {
  it('keeps the DSN of SetShardDsn without its password', () => {
    const r = rule('/shardgate.v1.AdminService/SetShardDsn');
    const request = { name: 'shard-2', dsn: 'postgres://gw:n3w-s3cret@db2.internal:5432/shard2' };
    const json = auditedRequestJson(r, request);
    expect(JSON.parse(json)).toEqual({
      name: 'shard-2',
      dsn: 'postgres://gw@db2.internal:5432/shard2',
    });
    expect(json).not.toMatch(/n3w-s3cret/);
    expect(r.target(request)).toBe('shard-2');
  });

  it('keeps the DSN of AddShard without its password or query', () => {
    const r = rule('/shardgate.v1.AdminService/AddShard');
    const request = {
      name: 'shard-9',
      dsn: 'postgres://admin:hunter2@db.internal:6432/shard9?sslpassword=opensesame',
      weight: 50,
    };
    const json = auditedRequestJson(r, request);
    expect(JSON.parse(json)).toEqual({
      name: 'shard-9',
      dsn: 'postgres://admin@db.internal:6432/shard9',
      weight: 50,
    });
    expect(json).not.toMatch(/hunter2|opensesame/);
    expect(r.target(request)).toBe('shard-9');
  });

  it.each([
    ['postgresql://u:p%40ss@h/db', 'postgresql://u@h/db'],
    ['postgres://:secret@h:5433/db', 'postgres://h:5433/db'],
    ['postgres://h/db?password=secret', 'postgres://h/db'],
    ['host=h password=secret', '(unparseable url)'],
  ])('redacts %s to %s', (dsn, recorded) => {
    expect(redactDsn(dsn)).toBe(recorded);
  });

  it('takes the target from the request field each method acts on', () => {
    expect(rule('/shardgate.v1.AdminService/CancelMove').target({ id: 'm-1' })).toBe('m-1');
    expect(rule('/shardgate.v1.AdminService/RevokeToken').target({ id: 'tok1' })).toBe('tok1');
    expect(
      rule('/shardgate.v1.AdminService/MoveTenant').target({ clientId: 'acme', toShard: 's-2' }),
    ).toBe('acme');
    expect(rule('/shardgate.v1.TenantService/ChurnTenant').target({ clientId: 'acme' })).toBe(
      'acme',
    );
    expect(rule('/shardgate.v1.AdminService/Rebalance').target({ limit: 3 })).toBe('');
  });

  it("takes CreateToken's target from the new token's id, and never its secret", () => {
    const r = rule('/shardgate.v1.AdminService/CreateToken');
    expect(r.targetOfResponse?.({ token: { id: 'tok9' }, secret: 'tok9.s3cret' })).toBe('tok9');
    const json = auditedRequestJson(r, { displayName: 'ci', scope: 'admin', ttl: undefined });
    expect(JSON.parse(json)).toEqual({ displayName: 'ci', scope: 'admin' });
  });

  // Regression guard: a fuzzed admin request with NUL or a lone surrogate must not make the
  // write-ahead insert fail (which would refuse the call with the wrong status).
  it('makes hostile strings storable in text and jsonb, and bounds their length', () => {
    expect(storableText('a\u0000b')).toBe('a\uFFFDb');
    expect(storableText('x\uD800y\uDC00')).toBe('x\uFFFDy\uFFFD');
    expect(storableText('ok \uD83D\uDE00')).toBe('ok \uD83D\uDE00');
    expect(storableText('z'.repeat(5000))).toBe(`${'z'.repeat(1000)}…`);
    // An emoji across the cut is left out whole, not halved into a replacement character.
    expect(storableText(`${'z'.repeat(999)}\uD83D\uDE00tail`)).toBe(`${'z'.repeat(999)}…`);
    expect(storableText(`${'z'.repeat(998)}\uD83D\uDE00tail`)).toBe(
      `${'z'.repeat(998)}\uD83D\uDE00…`,
    );
    const json = auditedRequestJson(rule('/shardgate.v1.AdminService/DrainShard'), {
      name: 'bad\u0000\uDFFF',
    });
    expect(JSON.parse(json)).toEqual({ name: 'bad\uFFFD\uFFFD' });
  });
});

describe('the method filter of ListAuditEvents', () => {
  it('accepts a full name, a full path or just the method, in any case', () => {
    const full = ['shardgate.v1.AdminService/AddShard'];
    expect(methodsMatching('shardgate.v1.AdminService/AddShard')).toEqual(full);
    expect(methodsMatching('/shardgate.v1.AdminService/AddShard')).toEqual(full);
    expect(methodsMatching('AddShard')).toEqual(full);
    expect(methodsMatching('addshard')).toEqual(full);
    expect(methodsMatching('ChurnTenant')).toEqual(['shardgate.v1.TenantService/ChurnTenant']);
  });

  it('refuses a method that is never audited, naming the ones that are', () => {
    expect(() => methodsMatching('GetTopology')).toThrow(/never audited.*AddShard/);
    expect(() => methodsMatching('shardgate.v1.TenantService/AddShard')).toThrow(/never audited/);
  });
});
