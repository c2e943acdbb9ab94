/**
 * The (a) targets, in one child process of run.ts that reports its ports over IPC and exits when
 * its parent goes away:
 * - a bare @grpc/grpc-js server that answers each unary call with its own request bytes (`echo`);
 * - on the same server, GetAppointment decoded and answered from memory with the generated
 *   protobuf codecs (`echo.protobuf`): what any typed gRPC server pays before doing any work;
 * - a nice-grpc server answering GetAppointment from memory (`echo.nice-grpc`): that plus the
 *   server framework the gateway is built on.
 */
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { createServer } from 'nice-grpc';
import {
  AppointmentServiceDefinition,
  type AppointmentServiceImplementation,
  type GetAppointmentRequest,
  GetAppointmentResponse,
} from '../src/gen/shardgate/v1/appointment.js';
import { echoPayload, echoService, getAppointmentService } from './echo-service.js';

const answer: GetAppointmentResponse = GetAppointmentResponse.decode(echoPayload());
const server = new Server({ 'grpc.enable_channelz': 0 });
server.addService(echoService, {
  echo(call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) {
    callback(null, call.request);
  },
});
server.addService(getAppointmentService, {
  getAppointment(
    call: ServerUnaryCall<GetAppointmentRequest, GetAppointmentResponse>,
    callback: sendUnaryData<GetAppointmentResponse>,
  ) {
    callback(null, call.request.id === '' ? null : answer);
  },
});

const unimplemented = (): Promise<never> => Promise.reject(new Error('not served here'));
const nice = createServer({ 'grpc.enable_channelz': 0 });
const niceImplementation: AppointmentServiceImplementation = {
  getAppointment: (request) => Promise.resolve(request.id === '' ? {} : answer),
  createAppointment: unimplemented,
  listAppointments: unimplemented,
  updateAppointment: unimplemented,
  cancelAppointment: unimplemented,
  batchCreateAppointments: unimplemented,
  batchGetAppointments: unimplemented,
};
nice.add(AppointmentServiceDefinition, niceImplementation);

function fail(err: Error): never {
  process.stderr.write(`echo server could not listen: ${err.message}\n`);
  process.exit(1);
}

server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) fail(err);
  nice.listen('127.0.0.1:0').then(
    (nicePort) => process.send?.({ type: 'listening', port, nicePort }),
    (e: Error) => fail(e),
  );
});

// The orchestrator's IPC channel closing means it is gone (or done): never outlive it.
process.on('disconnect', () => {
  server.forceShutdown();
  nice.forceShutdown();
  process.exit(0);
});
process.on('SIGINT', () => undefined); // Ctrl-C reaches the whole group; the parent decides.
