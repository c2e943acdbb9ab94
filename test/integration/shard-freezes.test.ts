import { ClientError, Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFreezableProxy, type FreezableProxy } from '../support/freezable-proxy.js';
import {
  createTestTopology,
  eventually,
  freshClientId,
  startTestGateway,
  type TestGateway,
} from '../support/harness.js';
import { appointmentInput } from '../support/move-helpers.js';

const DEADLINE_MS = 1_500;

/**
 * A shard that goes silent for a few seconds, twice, under load (no reset, no answer: a network
 * partition that heals). Calls for its clients end by their deadline, its pooled connections are
 * given up rather than waited on, the other shard's clients are served throughout, and once it
 * answers again its clients are served again.
 */
describe('a shard that goes silent for a while under load', () => {
  let proxy: FreezableProxy;
  let gw: TestGateway;
  const onFrozen: string[] = [];
  const onOther: string[] = [];

  beforeAll(async () => {
    const topology = await createTestTopology(2);
    proxy = await startFreezableProxy(topology.shards[0]!.url);
    gw = await startTestGateway({
      ...topology,
      shards: [{ ...topology.shards[0]!, url: proxy.url }, topology.shards[1]!],
    });
    while (onFrozen.length < 3 || onOther.length < 3) {
      const clientId = freshClientId('freeze');
      const { tenant } = await gw.client.tenants.createTenant({ clientId });
      (tenant!.shard === topology.shards[0]!.name ? onFrozen : onOther).push(clientId);
    }
  });
  afterAll(async () => {
    proxy?.thaw();
    await gw?.close();
    await proxy?.close();
  });

  it('ends calls by their deadline, serves the other shard throughout, and recovers', async () => {
    const slowest = { frozen: 0, other: 0 };
    const codes = new Map<string, number>();
    let stop = false;
    let n = 0;
    const worker = async (clients: string[], side: 'frozen' | 'other', w: number) => {
      for (let i = w; !stop; i++) {
        const clientId = clients[i % clients.length]!;
        const started = Date.now();
        const call =
          i % 2 === 0
            ? gw.client.state.getState({ clientId }, { deadline: DEADLINE_MS })
            : gw.client.appointments.createAppointment(appointmentInput(clientId, n++), {
                deadline: DEADLINE_MS,
              });
        try {
          await call;
          codes.set(`${side} OK`, (codes.get(`${side} OK`) ?? 0) + 1);
        } catch (err) {
          if (!(err instanceof ClientError)) throw err;
          codes.set(
            `${side} ${Status[err.code]}`,
            (codes.get(`${side} ${Status[err.code]}`) ?? 0) + 1,
          );
          // The other shard's clients never fail; the silent one's only by deadline or UNAVAILABLE.
          expect(side, `${Status[err.code]}: ${err.details}`).toBe('frozen');
          expect([Status.DEADLINE_EXCEEDED, Status.UNAVAILABLE]).toContain(err.code);
        }
        slowest[side] = Math.max(slowest[side], Date.now() - started);
      }
    };
    const workers = [
      ...[0, 1, 2, 3].map((w) => worker(onFrozen, 'frozen', w)),
      ...[0, 1].map((w) => worker(onOther, 'other', w)),
    ];
    for (let round = 0; round < 2; round++) {
      await new Promise((r) => setTimeout(r, 500));
      proxy.freeze();
      await new Promise((r) => setTimeout(r, 3_000));
      proxy.thaw();
    }
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await Promise.all(workers);
    console.log(
      `outcomes: ${JSON.stringify(Object.fromEntries(codes))}; slowest ${JSON.stringify(slowest)} ms`,
    );
    expect(
      codes.get('frozen DEADLINE_EXCEEDED') ?? codes.get('frozen UNAVAILABLE'),
    ).toBeGreaterThan(0);
    // The deadline holds (with room for a loaded machine), and the other shard was never held up.
    expect(slowest.frozen).toBeLessThan(DEADLINE_MS + 1_500);
    expect(slowest.other).toBeLessThan(DEADLINE_MS);

    // Answering again: every client of the silent shard is served.
    for (const clientId of onFrozen) {
      await eventually(async () => {
        await gw.client.appointments.createAppointment(appointmentInput(clientId, n++));
        await gw.client.state.getState({ clientId });
      }, 15_000);
    }
  }, 60_000);
});
