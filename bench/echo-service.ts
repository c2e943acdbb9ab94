import type { ServiceDefinition } from '@grpc/grpc-js';
import {
  AppointmentServiceDefinition,
  AppointmentStatus,
  GetAppointmentRequest,
  GetAppointmentResponse,
} from '../src/gen/shardgate/v1/appointment.js';

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

/**
 * A realistic echo payload: the bytes of a GetAppointmentResponse, the same size as what
 * GetAppointment returns, though the echo has no protobuf work to do on them.
 */
export function echoPayload(): Buffer {
  const now = new Date();
  const message = GetAppointmentResponse.encode({
    appointment: {
      id: '0b7f6c1e-8d1a-4d5e-9a63-2f4f1f0c9e21',
      clientPhone: '+1 555 010 0042',
      scheduledAt: now,
      serviceType: 'furnace-repair',
      status: AppointmentStatus.APPOINTMENT_STATUS_SCHEDULED,
      createdAt: now,
      updatedAt: now,
    },
  }).finish();
  return Buffer.from(message);
}

/**
 * GetAppointment alone, with ts-proto's codecs, as a bare grpc-js service: what the floor servers
 * (echo.protobuf, proxy.GetAppointment) serve.
 */
export const getAppointmentService: ServiceDefinition = {
  getAppointment: {
    path: `/${AppointmentServiceDefinition.fullName}/GetAppointment`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (r: GetAppointmentRequest) =>
      Buffer.from(GetAppointmentRequest.encode(r).finish()),
    requestDeserialize: (b: Buffer) => GetAppointmentRequest.decode(b),
    responseSerialize: (r: GetAppointmentResponse) =>
      Buffer.from(GetAppointmentResponse.encode(r).finish()),
    responseDeserialize: (b: Buffer) => GetAppointmentResponse.decode(b),
  },
};
