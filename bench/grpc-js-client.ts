import { type Client, Metadata, type ServiceError } from '@grpc/grpc-js';

/** A request with any field left out, as ts-proto's fromPartial takes it. */
type DeepPartial<T> = T extends Date
  ? T
  : T extends readonly (infer U)[]
    ? DeepPartial<U>[]
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;

/** The parts of a ts-proto message type a unary call needs. */
interface MessageType<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(bytes: Uint8Array): T;
  fromPartial(object: unknown): T;
}

/** A unary method of a ts-proto (nice-grpc flavour) service definition. */
interface UnaryMethod<Req, Res> {
  name: string;
  requestType: MessageType<Req>;
  responseType: MessageType<Res>;
}

/** Deadline of every call: long enough never to fire in a healthy run. */
const DEADLINE_MS = 30_000;

/**
 * A unary caller over a bare grpc-js Client, with the generated protobuf codecs: the same client
 * stack the echo target (a) is driven with, plus only the encoding every typed gRPC API needs, so
 * c/a compares servers rather than client libraries. (The typed client, with its middleware for
 * deadlines, retries and error details, is measured as its own op.)
 */
export function unaryCaller<Req, Res>(
  client: Client,
  service: { fullName: string },
  method: UnaryMethod<Req, Res>,
): (request: DeepPartial<Req>) => Promise<Res> {
  const path = `/${service.fullName}/${method.name}`;
  const serialize = (req: DeepPartial<Req>): Buffer =>
    Buffer.from(method.requestType.encode(method.requestType.fromPartial(req)).finish());
  const deserialize = (bytes: Buffer): Res => method.responseType.decode(bytes);
  return (request) =>
    new Promise<Res>((resolve, reject) => {
      client.makeUnaryRequest(
        path,
        serialize,
        deserialize,
        request,
        new Metadata(),
        { deadline: Date.now() + DEADLINE_MS },
        (err: ServiceError | null, res?: Res) => (err ? reject(err) : resolve(res!)),
      );
    });
}
