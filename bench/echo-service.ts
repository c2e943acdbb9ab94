import type { ServiceDefinition } from '@grpc/grpc-js';

const passThrough = (bytes: Buffer): Buffer => bytes;

/**
 * A one-method unary service whose messages are raw bytes: no protobuf work at all, so calls to it
 * cost only what grpc-js itself costs — the ceiling for any gRPC gateway on this runtime.
 */
export const echoService: ServiceDefinition = {
  echo: {
    path: '/shardgate.bench.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: passThrough,
    requestDeserialize: passThrough,
    responseSerialize: passThrough,
    responseDeserialize: passThrough,
  },
};
