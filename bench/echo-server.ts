/**
 * The (a) target: a bare @grpc/grpc-js server that answers each unary call with its own request
 * bytes. Runs as a child of run.ts, reports its port over IPC, and exits when its parent goes away.
 */
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { echoService } from './echo-service.js';

const server = new Server();
server.addService(echoService, {
  echo(call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) {
    callback(null, call.request);
  },
});

server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.stderr.write(`echo server could not listen: ${err.message}\n`);
    process.exit(1);
  }
  process.send?.({ type: 'listening', port });
});

// The orchestrator's IPC channel closing means it is gone (or done): never outlive it.
process.on('disconnect', () => {
  server.forceShutdown();
  process.exit(0);
});
process.on('SIGINT', () => undefined); // Ctrl-C reaches the whole group; the parent decides.
