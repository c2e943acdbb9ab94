import { ServerError, Status } from 'nice-grpc';
import { describe, expect, it } from 'vitest';
import { statusByCode, toServerError } from '../../../src/api/error-status.js';
import { errorCodes, ShardgateError } from '../../../src/core/errors.js';

describe('toServerError', () => {
  it('maps every domain error code to a distinct, non-OK gRPC status', () => {
    const statuses = errorCodes.map((code) => statusByCode[code]);
    expect(statuses.every((s) => typeof s === 'number' && s !== Status.OK)).toBe(true);
    expect(new Set(statuses).size).toBe(errorCodes.length);
  });

  it.each(errorCodes.map((c) => [c]))('keeps the message of a %s error', (code) => {
    const err = toServerError(new ShardgateError(code, `message for ${code}`), () => undefined);
    expect(err).toBeInstanceOf(ServerError);
    expect(err.code).toBe(statusByCode[code]);
    expect(err.details).toBe(`message for ${code}`);
  });

  it('turns an unexpected error into INTERNAL with a generic message and logs it', () => {
    const logged: unknown[] = [];
    const secret = new Error('password=hunter2 in a stack');
    const err = toServerError(secret, (e) => logged.push(e));
    expect(err.code).toBe(Status.INTERNAL);
    expect(err.details).not.toContain('hunter2');
    expect(logged).toEqual([secret]);
  });

  it('replaces lone surrogates in the message, which grpc-js cannot send (encodeURI throws)', () => {
    const err = toServerError(
      new ShardgateError('invalid-argument', `path 'a\uD83D' and 'b\uDE00c' and '\uD83D\uDE00'`),
      () => undefined,
    );
    expect(err.details).toBe(`path 'a\uFFFD' and 'b\uFFFDc' and '\uD83D\uDE00'`);
    expect(() => encodeURI(err.details)).not.toThrow();
    const passed = toServerError(new ServerError(Status.NOT_FOUND, 'x\uDBFF'), () => undefined);
    expect(passed.code).toBe(Status.NOT_FOUND);
    expect(passed.details).toBe('x\uFFFD');
  });
});
