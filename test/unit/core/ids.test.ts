import { describe, expect, it } from 'vitest';
import { isShardgateError } from '../../../src/core/errors.js';
import {
  clientIdFromSchema,
  MAX_CLIENT_ID_LENGTH,
  parseClientId,
  schemaNameFor,
  type ClientId,
} from '../../../src/core/ids.js';

describe('parseClientId', () => {
  it.each([['acme-hvac'], ['a'], ['0'], ['smith-plumbing-2'], ['a'.repeat(MAX_CLIENT_ID_LENGTH)]])(
    'accepts %s',
    (id) => {
      expect(parseClientId(id)).toBe(id);
    },
  );

  it.each([
    [''],
    ['Acme'],
    ['acme hvac'],
    ['acme_hvac'],
    ['-acme'],
    ['acme-'],
    ['acme--hvac'],
    ["acme'; DROP SCHEMA public CASCADE; --"],
    ['acme"'],
    ['ácme'],
    ['acme\u0000'],
    ['acme\n'],
    ['a'.repeat(MAX_CLIENT_ID_LENGTH + 1)],
  ])('rejects %j with invalid-argument', (id) => {
    let caught: unknown;
    try {
      parseClientId(id);
    } catch (err) {
      caught = err;
    }
    expect(isShardgateError(caught, 'invalid-argument')).toBe(true);
  });
});

describe('schemaNameFor', () => {
  it('maps acme-hvac to client_acme_hvac', () => {
    expect(schemaNameFor('acme-hvac' as ClientId)).toBe('client_acme_hvac');
  });

  it('fits the longest id into a 63-byte identifier', () => {
    const schema = schemaNameFor('a'.repeat(MAX_CLIENT_ID_LENGTH) as ClientId);
    expect(Buffer.byteLength(schema)).toBe(63);
  });

  it('is injective: distinct ids give distinct schemas, and the inverse restores the id', () => {
    const ids = ['a-b-c', 'a-bc', 'ab-c', 'abc', 'a1-b', 'a-1b'] as ClientId[];
    const schemas = ids.map(schemaNameFor);
    expect(new Set(schemas).size).toBe(ids.length);
    expect(schemas.map(clientIdFromSchema)).toEqual(ids);
  });

  it('does not invert names that are not client schemas', () => {
    expect(clientIdFromSchema('public')).toBeUndefined();
    expect(clientIdFromSchema('client__x')).toBeUndefined();
  });
});
