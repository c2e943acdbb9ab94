import { ClientError, Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { followHandoffs } from '../../src/client/index.js';
import { behindProxies, type FreezableProxy } from '../support/freezable-proxy.js';
import {
  createTestTopology,
  eventually,
  freshClientId,
  startTestGateway,
  type TestGateway,
} from '../support/harness.js';
import { appointmentInput, handoffInput } from '../support/move-helpers.js';

/** What a call may end with while its databases' connections are being reset. */
const TRANSIENT = new Set<number>([Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.ABORTED]);

/**
 * Every database connection of a gateway (catalog and shards) reset again and again under a mixed
 * workload, as failovers, restarted proxies or killed backends do: no word from the server, the
 * connection just ends. The gateway must stay up, answer every call with its result or a
 * retryable status (never INTERNAL, never past the deadline), and serve everything once it stops.
 */
describe('database connections reset under load', () => {
  let proxies: FreezableProxy[];
  let gw: TestGateway;
  const clients: string[] = [];

  beforeAll(async () => {
    const topology = await createTestTopology(2);
    const through = await behindProxies(topology);
    proxies = through.proxies;
    gw = await startTestGateway(through.proxied);
    for (let i = 0; i < 4; i++) {
      const clientId = freshClientId('reset');
      await gw.client.tenants.createTenant({ clientId });
      clients.push(clientId);
    }
  });
  afterAll(async () => {
    await gw?.close();
    await Promise.all((proxies ?? []).map((p) => p.close()));
  });

  it('stays up, answers every call with its result or a retryable status, and recovers', async () => {
    // An agent following the first client's handoffs through all of it misses none.
    const followed: string[] = [];
    const appended: string[] = [];
    const stopFollowing = new AbortController();
    let subscribed = false;
    const following = (async () => {
      for await (const h of followHandoffs(
        gw.client,
        { clientId: clients[0]! },
        { signal: stopFollowing.signal, onSubscribed: () => (subscribed = true) },
      ))
        followed.push(h.id);
    })();
    await eventually(async () => expect(subscribed).toBe(true));
    const outcomes = new Map<string, number>();
    const count = (key: string) => outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    let stop = false;
    let n = 0;
    const ops = [
      (c: string) => gw.client.appointments.createAppointment(appointmentInput(c, n++)),
      (c: string) => gw.client.appointments.listAppointments({ clientId: c, pageSize: 5 }),
      async (c: string) => {
        const { handoff } = await gw.client.handoffs.appendHandoff(handoffInput(c, n++));
        if (c === clients[0]) appended.push(handoff!.id);
      },
      (c: string) => gw.client.handoffs.listHandoffs({ clientId: c, pageSize: 5 }),
      (c: string) => gw.client.state.patchState({ clientId: c, patch: { n: n++ } }),
      (c: string) => gw.client.state.getState({ clientId: c }),
      // The shared database (here the catalog's, behind the same proxy).
      (c: string) =>
        gw.client.shared.addKnowledgeEntry({ entry: { topic: 'resets', agent: c, content: 'x' } }),
      () => gw.client.shared.listKnowledgeEntries({ topic: 'resets', pageSize: 5 }),
    ];
    const worker = async (w: number) => {
      for (let i = w; !stop; i++) {
        const op = ops[i % ops.length]!;
        const started = Date.now();
        try {
          // Every op meets every client: the op and client cycles must not stay in step.
          await op(clients[(i + Math.floor(i / ops.length)) % clients.length]!);
          count('OK');
        } catch (err) {
          if (!(err instanceof ClientError)) throw err;
          count(Status[err.code]);
          expect(TRANSIENT.has(err.code), `${Status[err.code]}: ${err.details}`).toBe(true);
        }
        // The harness client's deadline is 15 s; nothing may come near it.
        expect(Date.now() - started).toBeLessThan(10_000);
      }
    };
    const workers = Array.from({ length: 6 }, (_, w) => worker(w));
    for (let round = 0; round < 8; round++) {
      await new Promise((r) => setTimeout(r, 300));
      proxies[round % proxies.length]!.sever();
    }
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(workers);
    console.log(`outcomes under resets: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    expect(outcomes.get('OK')).toBeGreaterThan(0);

    expect(appended.length).toBeGreaterThan(0);
    await eventually(
      async () => expect(followed).toEqual(expect.arrayContaining(appended)),
      20_000,
    );
    expect(new Set(followed).size).toBe(followed.length);
    stopFollowing.abort();
    await following;

    // Once the resets stop, every client is served again, reads and writes alike.
    for (const clientId of clients) {
      await eventually(async () => {
        await gw.client.state.patchState({ clientId, patch: { after: true } });
        const { state } = await gw.client.state.getState({ clientId });
        expect(state?.document).toMatchObject({ after: true });
      }, 15_000);
    }
  }, 90_000);
});
