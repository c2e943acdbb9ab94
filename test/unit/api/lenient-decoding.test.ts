import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import { decodeLeniently, rejectUndecodable } from '../../../src/api/lenient-decoding.js';
import { isShardgateError } from '../../../src/core/errors.js';
import {
  AppointmentServiceDefinition,
  ListAppointmentsRequest,
} from '../../../src/gen/shardgate/v1/appointment.js';
import { PutStateRequest, StateServiceDefinition } from '../../../src/gen/shardgate/v1/state.js';

function nested(levels: number): Record<string, unknown> {
  let doc: Record<string, unknown> = { leaf: 1 };
  for (let i = 1; i < levels; i++) doc = { a: doc };
  return doc;
}

/** The INVALID_ARGUMENT message the gateway answers for these request bytes, or undefined. */
function rejection(
  definition: typeof StateServiceDefinition | typeof AppointmentServiceDefinition,
  method: string,
  bytes: Uint8Array,
): string | undefined {
  const methods: Record<string, { name: string; requestType: { decode(b: Uint8Array): unknown } }> =
    decodeLeniently(definition).methods;
  const m = methods[method]!;
  try {
    rejectUndecodable(`/${definition.fullName}/${m.name}`, m.requestType.decode(bytes));
  } catch (err) {
    if (isShardgateError(err, 'invalid-argument')) return err.message;
    throw err;
  }
  return undefined;
}

describe('lenient decoding', () => {
  it('names the JSON field of a Struct nested past the decoder limit', () => {
    const bytes = PutStateRequest.encode({ clientId: 'a', document: nested(40) }).finish();
    expect(rejection(StateServiceDefinition, 'putState', bytes)).toBe(
      'document must be nested at most 32 levels deep',
    );
  });

  // Found by fuzzing: an expected_version beyond 2^53 failed to decode and was answered
  // "document must be nested at most 32 levels deep", naming the wrong field.
  it('names expected_version when it is beyond what a JavaScript number holds exactly', () => {
    const bytes = PutStateRequest.encode({
      clientId: 'a',
      document: {},
      expectedVersion: 2 ** 60,
    }).finish();
    expect(rejection(StateServiceDefinition, 'putState', bytes)).toBe(
      'expected_version must be between -9007199254740991 and 9007199254740991',
    );
  });

  it('says which kind of field it was when a timestamp is beyond 2^53 seconds', () => {
    const timestamp = new BinaryWriter()
      .uint32(8)
      .int64(2n ** 62n)
      .finish();
    const bytes = new BinaryWriter()
      .uint32((4 << 3) | 2)
      .bytes(timestamp)
      .finish();
    expect(rejection(AppointmentServiceDefinition, 'listAppointments', bytes)).toMatch(
      /^an int64 field \(or a timestamp\) must be between/,
    );
    // The same request with a sane timestamp decodes.
    const fine = ListAppointmentsRequest.encode({
      clientId: 'a',
      pageSize: 0,
      pageToken: '',
      statuses: [],
      scheduledAfter: new Date(0),
    }).finish();
    expect(rejection(AppointmentServiceDefinition, 'listAppointments', fine)).toBeUndefined();
  });

  it('answers garbage bytes as a malformed request', () => {
    expect(rejection(StateServiceDefinition, 'getState', Uint8Array.of(0x0a, 0xff, 0x01))).toBe(
      'the request is not a well-formed protobuf message of this method',
    );
  });
});
