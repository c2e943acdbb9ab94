import { readFileSync } from 'node:fs';
import { ServerCredentials } from '@grpc/grpc-js';
import type { TlsConfig } from '../core/config.js';
import { ShardgateError } from '../core/errors.js';

/**
 * The gRPC server's transport credentials: plaintext without `tls`; TLS with its certificate and
 * key; mutual TLS when `clientCaFile` is set (a caller must present a certificate that CA signed,
 * or the handshake fails before any call is read). Files are read once, at start-up.
 */
export function createServerCredentials(tls: TlsConfig | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  const certChain = readPem(tls.certFile, 'tls.certFile');
  const privateKey = readPem(tls.keyFile, 'tls.keyFile');
  const clientCa = tls.clientCaFile ? readPem(tls.clientCaFile, 'tls.clientCaFile') : null;
  return ServerCredentials.createSsl(
    clientCa,
    [{ cert_chain: certChain, private_key: privateKey }],
    clientCa !== null,
  );
}

function readPem(path: string, option: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (err) {
    throw new ShardgateError(
      'failed-precondition',
      `${option} names ${path}, which cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      { cause: err },
    );
  }
  if (!pem.includes('-----BEGIN ')) {
    throw new ShardgateError('failed-precondition', `${option} (${path}) is not a PEM file`);
  }
  return pem;
}
