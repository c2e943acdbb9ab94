import { ClientError, Status } from 'nice-grpc';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startWatch } from '../support/handoff-watch.js';
import {
  adminUrlOf,
  createTestTopology,
  errorOf,
  freshClientId,
  startTestGateway,
} from '../support/harness.js';

/**
 * A gateway told to stop (SIGTERM in production: main.ts calls close) lets the calls it is
 * running finish within the grace, ends watches with UNAVAILABLE so agents watch again through
 * another replica, and takes no new call.
 */
describe('a gateway that stops', () => {
  it('finishes the calls in flight, ends watches UNAVAILABLE, and takes no new call', async () => {
    const topology = await createTestTopology(1);
    const gw = await startTestGateway(topology);
    const clientId = freshClientId('stop');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    const watch = await startWatch(gw.client.handoffs, { clientId });

    // A write held behind a row lock, so it is still running when the gateway is told to stop.
    const locker = new pg.Client({ connectionString: adminUrlOf(topology.shards[0]!.url) });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query(`SELECT * FROM ${pg.escapeIdentifier(tenant!.schema)}.state FOR UPDATE`);
    const inFlight = gw.client.state.putState({ clientId, document: { during: 'shutdown' } });
    await new Promise((r) => setTimeout(r, 200));

    const closing = gw.gateway.close(10_000);
    const { error } = await watch.ended;
    expect((error as ClientError).code).toBe(Status.UNAVAILABLE);
    expect((error as ClientError).details).toContain('shutting down; watch again');

    await new Promise((r) => setTimeout(r, 200));
    await locker.query('COMMIT');
    await locker.end();
    // The call that was running finishes, and its write is there.
    expect((await inFlight).state?.version).toBe(1);
    await closing;

    const after = await errorOf(gw.client.state.getState({ clientId }, { deadline: 2_000 }));
    expect(after.code).toBe(Status.UNAVAILABLE);
    gw.client.close();
    const check = await startTestGateway(topology);
    try {
      const { state } = await check.client.state.getState({ clientId });
      expect(state?.document).toEqual({ during: 'shutdown' });
    } finally {
      await check.close();
    }
  }, 30_000);
});
