import { invalidArgument } from '../core/errors.js';
import { MAX_JSON_DEPTH } from './validate.js';

/** Stands in for a request that could not be decoded, so the caller gets INVALID_ARGUMENT. */
const UNDECODABLE = Symbol('undecodable request');

/**
 * The JSON (Struct) field of each method that has one. ts-proto's decoder stops at 100 nested
 * messages, which a Struct reaches at about 33 JSON levels, before our own depth check can run.
 */
const JSON_FIELD_OF: Readonly<Record<string, string>> = {
  '/shardgate.v1.HandoffService/AppendHandoff': 'handoff.summary',
  '/shardgate.v1.HandoffService/BatchAppendHandoffs': 'handoffs[].summary',
  '/shardgate.v1.StateService/PutState': 'document',
  '/shardgate.v1.StateService/PatchState': 'patch',
};

interface Decodable {
  methods: Record<string, { requestType: { decode(bytes: Uint8Array): unknown } }>;
}

/**
 * The definition with every request decoder made total: grpc-js answers a throwing decoder with
 * INTERNAL, which tells a caller nothing; a marker lets `rejectUndecodable` answer properly.
 */
export function decodeLeniently<D extends Decodable>(definition: D): D {
  const methods = Object.fromEntries(
    Object.entries(definition.methods).map(([name, method]) => [
      name,
      {
        ...method,
        requestType: {
          ...method.requestType,
          decode(bytes: Uint8Array): unknown {
            try {
              return method.requestType.decode(bytes);
            } catch (err) {
              return { [UNDECODABLE]: err };
            }
          },
        },
      },
    ]),
  );
  return { ...definition, methods };
}

/** Throws INVALID_ARGUMENT for a request decodeLeniently could not decode. */
export function rejectUndecodable(path: string, request: unknown): void {
  if (typeof request !== 'object' || request === null || !(UNDECODABLE in request)) return;
  const field = JSON_FIELD_OF[path];
  throw invalidArgument(
    field
      ? `${field} must be nested at most ${MAX_JSON_DEPTH} levels deep (or the request is malformed)`
      : 'the request is not a well-formed protobuf message of this method',
  );
}
