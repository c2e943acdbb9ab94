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

/** Where a decoded request keeps its encoded size, for the methods in SIZED_REQUESTS. */
const REQUEST_BYTES = Symbol('request bytes');

/**
 * Methods whose answer repeats the request's items (a Struct each): the handler needs the request's
 * encoded size to know, before writing, whether the answer fits the message limit.
 */
const SIZED_REQUESTS: ReadonlySet<string> = new Set([
  '/shardgate.v1.HandoffService/BatchAppendHandoffs',
]);

interface Decodable {
  fullName: string;
  methods: Record<string, { name: string; requestType: { decode(bytes: Uint8Array): unknown } }>;
}

/**
 * The definition with every request decoder made total: grpc-js answers a throwing decoder with
 * INTERNAL, which tells a caller nothing; a marker lets `rejectUndecodable` answer properly.
 */
export function decodeLeniently<D extends Decodable>(definition: D): D {
  const methods = Object.fromEntries(
    Object.entries(definition.methods).map(([name, method]) => {
      const sized = SIZED_REQUESTS.has(`/${definition.fullName}/${method.name}`);
      return [
        name,
        {
          ...method,
          requestType: {
            ...method.requestType,
            decode(bytes: Uint8Array): unknown {
              let request: unknown;
              try {
                request = method.requestType.decode(bytes);
              } catch (err) {
                return { [UNDECODABLE]: err };
              }
              if (sized) {
                Object.defineProperty(request, REQUEST_BYTES, { value: bytes.length });
              }
              return request;
            },
          },
        },
      ];
    }),
  );
  return { ...definition, methods };
}

/** The encoded size of a request of a method in SIZED_REQUESTS, as it arrived; else undefined. */
export function requestBytesOf(request: object): number | undefined {
  return (request as { [REQUEST_BYTES]?: number })[REQUEST_BYTES];
}

/** The int64 field of each method whose value a caller picks (others are timestamps' seconds). */
const INT64_FIELD_OF: Readonly<Record<string, string>> = {
  '/shardgate.v1.StateService/PutState': 'expected_version',
  '/shardgate.v1.StateService/PatchState': 'expected_version',
  '/shardgate.v1.AdminService/CreateToken': 'ttl',
};

/**
 * What the ts-proto decoders throw, by message: they have no error codes. A unit test pins these
 * texts, so a regenerated decoder that words them differently fails there, not in production.
 */
const RECURSION_LIMIT = 'recursion limit';
const UNSAFE_INTEGER = /(MAX|MIN)_SAFE_INTEGER/;

/** Throws INVALID_ARGUMENT for a request decodeLeniently could not decode, saying why if known. */
export function rejectUndecodable(path: string, request: unknown): void {
  if (typeof request !== 'object' || request === null || !(UNDECODABLE in request)) return;
  const cause = (request as { [UNDECODABLE]: unknown })[UNDECODABLE];
  const reason = cause instanceof Error ? cause.message : '';
  const jsonField = JSON_FIELD_OF[path];
  if (reason.includes(RECURSION_LIMIT) && jsonField) {
    throw invalidArgument(`${jsonField} must be nested at most ${MAX_JSON_DEPTH} levels deep`);
  }
  if (UNSAFE_INTEGER.test(reason)) {
    const field = INT64_FIELD_OF[path] ?? 'an int64 field (or a timestamp)';
    throw invalidArgument(
      `${field} must be between -${Number.MAX_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER}`,
    );
  }
  throw invalidArgument('the request is not a well-formed protobuf message of this method');
}
