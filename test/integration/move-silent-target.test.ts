import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/core/config.js';
import { Failpoints } from '../../src/core/failpoints.js';
import { MoveState, type Move } from '../../src/gen/shardgate/v1/admin.js';
import { replicationName } from '../../src/shards/replication.js';
import { startFreezableProxy, type FreezableProxy } from '../support/freezable-proxy.js';
import {
  createTestTopology,
  eventually,
  freshClientId,
  startTestGateway,
  type TestGateway,
  type TestTopology,
} from '../support/harness.js';
import {
  appointmentInput,
  clientSchemasIn,
  moveTo,
  replicationLeftovers,
} from '../support/move-helpers.js';

/** Longer than the mover's cutover timeout (5 s), as production's 30 s is. */
const STATEMENT_TIMEOUT_MS = 8_000;
const CUTOVER_TIMEOUT_MS = 5_000;

/**
 * The target of a move stops answering while the client's writes are paused for the cutover (a
 * vanished host, a dead network path). The client lives on the source, which is fine: it must
 * write again within the cutover timeout, and the source must not keep WAL for the dead target.
 */
describe('a move whose target goes silent during the cutover', () => {
  let topology: TestTopology;
  let gw: TestGateway;
  let proxy: FreezableProxy;
  const failpoints = new Failpoints();

  beforeAll(async () => {
    topology = await createTestTopology(2);
    gw = await startTestGateway(
      topology,
      { pool: { ...configSchema.parse({}).pool, statementTimeoutMs: STATEMENT_TIMEOUT_MS } },
      { failpoints },
    );
    proxy = await startFreezableProxy(topology.shards[1]!.url);
    await gw.client.admin.setShardDsn({ name: 'shard-2', dsn: proxy.url });
  });
  afterAll(async () => {
    proxy?.thaw();
    await gw?.gateway.context.mover.idle();
    await gw?.close();
    await proxy?.close();
  });

  it('resumes the client on the source within the cutover timeout and cleans up once the target answers', async () => {
    let clientId: string;
    for (;;) {
      clientId = freshClientId('silent-target');
      const { tenant } = await gw.client.tenants.createTenant({ clientId });
      if (tenant!.shard === 'shard-1') break;
    }
    await gw.client.appointments.createAppointment(appointmentInput(clientId, 0));

    const gate = failpoints.hold('move.cutover.paused');
    const stop = new AbortController();
    const seen: Move[] = [];
    const streaming = (async () => {
      for await (const { move } of gw.client.admin.moveTenant(
        { clientId, toShard: 'shard-2' },
        { signal: stop.signal },
      ))
        seen.push(move!);
    })().catch(() => undefined);
    await gate.reached;
    proxy.freeze();
    const frozenAt = Date.now();
    gate.release();

    // Writes are paused now; they resume once the cutover gives up, not when the target answers.
    await gw.client.appointments.createAppointment(appointmentInput(clientId, 1), {
      deadline: 20_000,
    });
    expect(Date.now() - frozenAt).toBeLessThan(CUTOVER_TIMEOUT_MS + 2_500);
    const moveId = seen[0]!.id;
    const name = replicationName(moveId);

    // The source lets go of the move's slot although the target never dropped its subscription;
    // the move stays running, with why it failed, until the target's leftovers are gone.
    await eventually(async () => {
      const source = await replicationLeftovers(topology.shards[0]!.url);
      expect(source.slots).not.toContain(name);
      expect(source.pubs).not.toContain(name);
    }, 3 * STATEMENT_TIMEOUT_MS);
    // (The error is recorded just after the slot is dropped.)
    await eventually(async () => {
      const pending = await gw.client.admin.getMove({ id: moveId });
      expect(pending.move?.state).toBe(MoveState.MOVE_STATE_RUNNING);
      expect(pending.move?.error).toBe(
        `the cutover did not finish within ${CUTOVER_TIMEOUT_MS} ms`,
      );
    });

    proxy.thaw();
    await eventually(async () => {
      const { move } = await gw.client.admin.getMove({ id: moveId });
      expect(move?.state).toBe(MoveState.MOVE_STATE_FAILED);
      expect(move?.error).toBe(`the cutover did not finish within ${CUTOVER_TIMEOUT_MS} ms`);
    }, 4 * STATEMENT_TIMEOUT_MS);
    expect((await replicationLeftovers(topology.shards[1]!.url)).subs).not.toContain(name);
    expect(await clientSchemasIn(topology.shards[1]!.url)).not.toContain(
      `client_${clientId.replaceAll('-', '_')}`,
    );
    stop.abort();
    await streaming;

    // Nothing was lost on the source, and the next move goes through.
    const { appointments } = await gw.client.appointments.listAppointments({ clientId });
    expect(appointments).toHaveLength(2);
    await moveTo(gw.client, clientId, 'shard-2');
    expect((await gw.client.admin.locate({ clientId })).shard).toBe('shard-2');
    expect((await gw.client.appointments.listAppointments({ clientId })).appointments).toHaveLength(
      2,
    );
  }, 120_000);
});
