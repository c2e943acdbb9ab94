import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { createChannel, createClient, Status, type Channel } from 'nice-grpc';
import { HealthDefinition } from 'nice-grpc-server-health';
import { ServerReflectionService } from 'nice-grpc-server-reflection';
import reflectionPb from 'nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestTopology,
  statusOf,
  startTestGateway,
  type TestGateway,
} from '../support/harness.js';

const { ServerReflectionRequest } = reflectionPb;
type ServerReflectionResponse = InstanceType<typeof reflectionPb.ServerReflectionResponse>;

const SHARDGATE_SERVICES = [
  'shardgate.v1.AdminService',
  'shardgate.v1.AppointmentService',
  'shardgate.v1.HandoffService',
  'shardgate.v1.SharedService',
  'shardgate.v1.StateService',
  'shardgate.v1.TenantService',
];

/** SERVING in grpc.health.v1.HealthCheckResponse.ServingStatus. */
const SERVING = 1;

describe('health and reflection', () => {
  let gw: TestGateway;
  let channel: Channel;
  let reflection: grpc.Client & {
    serverReflectionInfo(): grpc.ClientDuplexStream<unknown, ServerReflectionResponse>;
  };

  beforeAll(async () => {
    gw = await startTestGateway(await createTestTopology());
    channel = createChannel(gw.gateway.address);
    const Reflection = grpc.makeGenericClientConstructor(
      ServerReflectionService,
      'ServerReflection',
    );
    reflection = new Reflection(
      gw.gateway.address,
      grpc.credentials.createInsecure(),
    ) as unknown as typeof reflection;
  });
  afterAll(async () => {
    reflection?.close();
    channel?.close();
    await gw?.close();
  });

  /** One request/response exchange on the bidirectional reflection stream. */
  async function reflect(
    build: (req: InstanceType<typeof ServerReflectionRequest>) => void,
  ): Promise<ServerReflectionResponse> {
    const call = reflection.serverReflectionInfo();
    const response = new Promise<ServerReflectionResponse>((resolve, reject) => {
      call.once('data', resolve);
      call.once('error', reject);
    });
    const req = new ServerReflectionRequest();
    build(req);
    call.write(req);
    call.end();
    try {
      return await response;
    } finally {
      call.cancel();
    }
  }

  it("reports SERVING for the whole server ('')", async () => {
    const health = createClient(HealthDefinition, channel);
    const res = await health.check({ service: '' }, { signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(SERVING);
  });

  it('reports SERVING for each shardgate service (regression: they were NOT_FOUND) and NOT_FOUND for an unknown one', async () => {
    const health = createClient(HealthDefinition, channel);
    for (const service of SHARDGATE_SERVICES) {
      const res = await health.check({ service });
      expect({ service, status: res.status }).toEqual({ service, status: SERVING });
    }
    expect(await statusOf(health.check({ service: 'shardgate.v1.NoSuchService' }))).toBe(
      Status.NOT_FOUND,
    );
  });

  it('lists all six shardgate.v1 services through server reflection', async () => {
    const res = await reflect((req) => req.setListServices('*'));
    const names = res
      .getListServicesResponse()!
      .getServiceList()
      .map((s) => s.getName());
    expect(names.filter((n) => n.startsWith('shardgate.v1.')).sort()).toEqual(SHARDGATE_SERVICES);
  });

  it('returns the file descriptor of a service, with its methods', async () => {
    const res = await reflect((req) => req.setFileContainingSymbol('shardgate.v1.HandoffService'));
    const files = res
      .getFileDescriptorResponse()!
      .getFileDescriptorProtoList_asU8()
      .map((b) => fromBinary(FileDescriptorProtoSchema, b));
    const handoff = files.find((f) => f.name === 'shardgate/v1/handoff.proto');
    expect(handoff?.package).toBe('shardgate.v1');
    const service = handoff?.service.find((s) => s.name === 'HandoffService');
    expect(service?.method.map((m) => m.name)).toEqual([
      'AppendHandoff',
      'ListHandoffs',
      'GetLatestHandoff',
      'BatchAppendHandoffs',
      'WatchHandoffs',
    ]);
    expect(service?.method.find((m) => m.name === 'WatchHandoffs')?.serverStreaming).toBe(true);
  });
});
