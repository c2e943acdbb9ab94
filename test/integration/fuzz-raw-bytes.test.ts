import * as grpc from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import fc from 'fast-check';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminServiceDefinition } from '../../src/gen/shardgate/v1/admin.js';
import { AppointmentServiceDefinition } from '../../src/gen/shardgate/v1/appointment.js';
import { HandoffServiceDefinition } from '../../src/gen/shardgate/v1/handoff.js';
import { SharedServiceDefinition } from '../../src/gen/shardgate/v1/shared.js';
import { StateServiceDefinition } from '../../src/gen/shardgate/v1/state.js';
import { TenantServiceDefinition } from '../../src/gen/shardgate/v1/tenant.js';
import {
  createFuzzWorld,
  expectClear,
  fingerprint,
  MAX_MESSAGE_BYTES,
  type FuzzWorld,
  type Outcome,
} from '../support/fuzz-harness.js';

/** One RPC as bytes go: its path, whether it streams back, and its request decoder. */
interface RawMethod {
  path: string;
  streams: boolean;
  /** Methods whose valid requests may change topology or start moves: only random bytes. */
  guarded: boolean;
  decode(bytes: Uint8Array): unknown;
  encode(partial: object): Uint8Array;
}

interface MethodDef {
  name: string;
  responseStream: boolean;
  requestType: {
    decode(b: Uint8Array): unknown;
    encode(m: never): { finish(): Uint8Array };
    fromPartial(o: object): unknown;
  };
}

const GUARDED = new Set([
  'AddShard',
  'DrainShard',
  'RemoveShard',
  'SetShardWeight',
  'SetShardDsn',
  'MoveTenant',
  'Rebalance',
  'CancelMove',
  'CreateToken',
  'RevokeToken',
]);

const methods: RawMethod[] = [
  TenantServiceDefinition,
  AppointmentServiceDefinition,
  HandoffServiceDefinition,
  StateServiceDefinition,
  SharedServiceDefinition,
  AdminServiceDefinition,
].flatMap((service) =>
  Object.values(service.methods as Record<string, MethodDef>).map((m) => ({
    path: `/${service.fullName}/${m.name}`,
    streams: m.responseStream,
    guarded: service === AdminServiceDefinition && GUARDED.has(m.name),
    decode: (bytes: Uint8Array) => m.requestType.decode(bytes),
    encode: (partial: object) =>
      m.requestType.encode(m.requestType.fromPartial(partial) as never).finish(),
  })),
);

/** A varint-encoded number (up to 2^53), as the protobuf wire format writes it. */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

/** One wire-format field with a hostile payload: overflowing varints, lying lengths, bad UTF-8. */
const hostileField = fc
  .tuple(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 0, max: 7 }))
  .chain(([field, wireType]) =>
    fc
      .oneof(
        fc.constant(Array<number>(11).fill(0xff)), // varint longer than 10 bytes
        fc.constant([0xff, 0xff, 0xff, 0xff, 0x0f, 0x41]), // length 2^32 - 1, one byte follows
        fc.constant([0x03, 0xff, 0xfe, 0xfd]), // invalid UTF-8
        fc.constant([0x05, 0x61]), // length 5, one byte follows
        fc.uint8Array({ maxLength: 12 }).map((b) => [...varint(b.length), ...b]),
        fc.uint8Array({ maxLength: 12 }).map((b) => [...b]),
      )
      .map((payload) => [...varint(field * 8 + wireType), ...payload]),
  );

/** `levels` messages nested in field 2 (a Struct or a message field in most requests). */
function nestedField(levels: number): Uint8Array {
  let inner: number[] = [];
  for (let i = 0; i < levels; i++) inner = [0x12, ...varint(inner.length), ...inner];
  return Uint8Array.from(inner);
}

/** A valid request of `method` with some bytes flipped, cut off or appended. */
function mutated(method: RawMethod, clientId: string): fc.Arbitrary<Uint8Array> {
  const base = method.encode({
    clientId,
    pageSize: 1,
    id: clientId,
    toAgent: 'dispatch',
    orderBy: 'created_at',
  });
  return fc
    .tuple(
      fc.nat(Math.max(0, base.length - 1)),
      fc.integer({ min: 0, max: 255 }),
      fc.constantFrom('flip', 'cut', 'append'),
      fc.uint8Array({ maxLength: 8 }),
    )
    .map(([at, byte, how, extra]) => {
      if (how === 'cut') return base.slice(0, at);
      if (how === 'append') return Uint8Array.from([...base, ...extra]);
      const copy = Uint8Array.from(base);
      if (copy.length > 0) copy[at] = byte;
      return copy;
    });
}

/** Statuses a well-formed but arbitrary request may get; never INTERNAL or UNKNOWN. */
const CLEAR = new Set([
  Status.OK,
  Status.INVALID_ARGUMENT,
  Status.NOT_FOUND,
  Status.FAILED_PRECONDITION,
  Status.ALREADY_EXISTS,
  Status.OUT_OF_RANGE,
  Status.ABORTED,
]);

// Generous: a property's runs take a few seconds, more on a busy machine.
describe('fuzzing every method with raw bytes', { timeout: 90_000 }, () => {
  let world: FuzzWorld;
  let raw: grpc.Client;

  beforeAll(async () => {
    world = await createFuzzWorld();
    raw = new grpc.Client(world.gw.gateway.address, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    raw?.close();
    await world?.close();
  });

  /** Sends bytes as they are (identity serializers) and reads the call to its end. */
  function send(method: RawMethod, body: Uint8Array): Promise<Outcome> {
    const identity = (b: Buffer): Buffer => b;
    const options = { deadline: Date.now() + 10_000 };
    const failed = (err: grpc.ServiceError): Outcome => ({ code: err.code, details: err.details });
    return new Promise((resolve) => {
      if (!method.streams) {
        raw.makeUnaryRequest(
          method.path,
          identity,
          identity,
          Buffer.from(body),
          new grpc.Metadata(),
          options,
          (err, value) =>
            resolve(err ? failed(err) : { code: Status.OK, details: '', response: value }),
        );
        return;
      }
      const call = raw.makeServerStreamRequest(
        method.path,
        identity,
        identity,
        Buffer.from(body),
        new grpc.Metadata(),
        options,
      );
      call.on('data', () => undefined);
      // A watch that subscribed is a valid request: it would stream until cancelled.
      call.on('metadata', (header: grpc.Metadata) => {
        if (header.get('shardgate-watch')[0] === 'subscribed') {
          resolve({ code: Status.OK, details: '' });
          call.cancel();
        }
      });
      call.on('error', (err: grpc.ServiceError) => resolve(failed(err)));
      call.on('status', (s: grpc.StatusObject) => {
        if (s.code === grpc.status.OK) resolve({ code: Status.OK, details: '' });
      });
    });
  }

  it('garbage gets INVALID_ARGUMENT, decodable junk a clear status, and nothing undecodable writes', async () => {
    const seen = new Map<string, number>();
    const request = fc.constantFrom(...methods).chain((method) =>
      fc
        .oneof(
          { arbitrary: fc.uint8Array({ maxLength: 64 }), weight: 4 },
          {
            arbitrary: fc
              .array(hostileField, { minLength: 1, maxLength: 4 })
              .map((f) => Uint8Array.from(f.flat())),
            weight: 4,
          },
          { arbitrary: fc.constantFrom(30, 40, 200, 5000).map(nestedField), weight: 1 },
          ...(method.guarded
            ? []
            : [{ arbitrary: mutated(method, world.fuzz.clientId), weight: 3 }]),
        )
        .map((body) => ({ method, body })),
    );
    let last = await fingerprint(world);
    await fc.assert(
      fc.asyncProperty(request, async ({ method, body }) => {
        let decodable = true;
        try {
          method.decode(body);
        } catch {
          decodable = false;
        }
        const outcome = await send(method, body);
        const key = `${decodable ? 'decodable' : 'undecodable'} ${Status[outcome.code]}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
        const [before, now] = [last, await fingerprint(world)];
        last = now;
        await world.expectHealthy();
        if (!decodable) {
          expectClear(method.path, outcome, { code: Status.INVALID_ARGUMENT });
          expect(now, `${method.path} wrote on undecodable bytes`).toEqual(before);
        } else {
          expect(
            CLEAR.has(outcome.code),
            `${method.path}: ${Status[outcome.code]} ${outcome.details}`,
          ).toBe(true);
          expectClear(method.path, outcome, { code: outcome.code });
        }
      }),
      { numRuns: 250 },
    );
    if (process.env.SHARDGATE_FUZZ_STATS) console.log('raw bytes', Object.fromEntries(seen));
    await world.expectServing();
  });

  it('a request over the message limit gets RESOURCE_EXHAUSTED on every method, and the gateway stays up', async () => {
    const huge = Uint8Array.from([
      0x0a,
      ...varint(MAX_MESSAGE_BYTES),
      ...new Uint8Array(MAX_MESSAGE_BYTES),
    ]);
    for (const method of methods) {
      const outcome = await send(method, huge);
      expect({ path: method.path, code: Status[outcome.code] }).toEqual({
        path: method.path,
        code: 'RESOURCE_EXHAUSTED',
      });
    }
    await world.expectServing();
  });

  it('timestamps beyond what a Date holds get INVALID_ARGUMENT naming the field', async () => {
    const listAppointments = methods.find((m) => m.path.endsWith('/ListAppointments'))!;
    for (const seconds of [1e15, -1e15, 2 ** 53 - 1, 253_402_300_800]) {
      const timestamp = new BinaryWriter().uint32(8).int64(seconds).uint32(16).int32(-1).finish();
      const body = new BinaryWriter()
        .uint32(10)
        .string(world.fuzz.clientId)
        .uint32(34) // scheduled_after
        .bytes(timestamp)
        .finish();
      const outcome = await send(listAppointments, body);
      expectClear(`scheduled_after.seconds = ${seconds}`, outcome, {
        code: Status.INVALID_ARGUMENT,
        fields: ['scheduled_after'],
      });
    }
  });

  it('an unknown method gets UNIMPLEMENTED', async () => {
    const outcome = await send(
      {
        path: '/shardgate.v1.TenantService/DropEverything',
        streams: false,
        guarded: true,
        decode: () => ({}),
        encode: () => new Uint8Array(),
      },
      new Uint8Array(),
    );
    expect(Status[outcome.code]).toBe('UNIMPLEMENTED');
    await world.expectServing();
  });
});
