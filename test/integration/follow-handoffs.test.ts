import { ClientError, Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { followHandoffs, type FollowHandoffsOptions } from '../../src/client/index.js';
import { MoveState } from '../../src/gen/shardgate/v1/admin.js';
import type { Handoff } from '../../src/gen/shardgate/v1/handoff.js';
import { waitUntil } from '../support/handoff-watch.js';
import {
  createTestTopology,
  freshClientId,
  startTestGateway,
  type TestGateway,
} from '../support/harness.js';
import { moveTo } from '../support/move-helpers.js';

/** followHandoffs consumed in the background until stopped. */
interface Follower {
  readonly received: Handoff[];
  /** Settles when the iteration ends: with what it threw, or undefined. */
  readonly ended: Promise<unknown>;
  stop(): Promise<unknown>;
}

describe('followHandoffs (typed client)', () => {
  let gw: TestGateway;
  let shards: string[];
  beforeAll(async () => {
    const topology = await createTestTopology();
    shards = topology.shards.map((s) => s.name);
    gw = await startTestGateway(topology);
  });
  afterAll(async () => {
    await gw?.gateway.context.mover.idle();
    await gw?.close();
  });

  async function newClient(): Promise<{ clientId: string; shard: string }> {
    const clientId = freshClientId('follow');
    const { tenant } = await gw.client.tenants.createTenant({ clientId });
    return { clientId, shard: tenant!.shard };
  }

  async function append(clientId: string, n: number, toAgent = 'dispatch'): Promise<Handoff> {
    const { handoff } = await gw.client.handoffs.appendHandoff({
      clientId,
      handoff: { fromAgent: 'intake', toAgent, version: 1, summary: { n } },
    });
    return handoff!;
  }

  function follow(
    request: { clientId: string; toAgent?: string },
    options: FollowHandoffsOptions = {},
  ): Follower {
    const controller = new AbortController();
    const received: Handoff[] = [];
    const ended = (async () => {
      try {
        for await (const h of followHandoffs(gw.client, request, {
          ...options,
          signal: controller.signal,
        })) {
          received.push(h);
        }
        return undefined;
      } catch (err) {
        return err;
      }
    })();
    return {
      received,
      ended,
      stop: () => {
        controller.abort();
        return ended;
      },
    };
  }

  const numbers = (hs: readonly Handoff[]): unknown[] => hs.map((h) => h.summary?.['n']);

  it('delivers handoffs appended after it started, once each, in order; ends quietly on abort', async () => {
    const { clientId } = await newClient();
    await append(clientId, 0); // before it started: not delivered without `since`
    let subscribed = 0;
    const f = follow({ clientId }, { onSubscribed: () => subscribed++ });
    await waitUntil(() => subscribed === 1, 'the subscription');
    for (let n = 1; n <= 5; n++) await append(clientId, n);
    await waitUntil(() => f.received.length >= 5, 'five handoffs');
    expect(numbers(f.received)).toEqual([1, 2, 3, 4, 5]);
    expect(await f.stop()).toBeUndefined();
  });

  it('resumes from `since`: what it missed first, oldest first, then live ones, none twice', async () => {
    const { clientId } = await newClient();
    const handled = await append(clientId, 0);
    await new Promise((r) => setTimeout(r, 5)); // the next ones get a later created_at
    for (let n = 1; n <= 3; n++) await append(clientId, n);
    // No window: exactly what was created at or after `since` (the handled one included).
    const exact = follow({ clientId }, { since: handled.createdAt, catchUpWindowMs: 0 });
    await waitUntil(() => exact.received.length >= 4, 'the catch-up');
    await append(clientId, 4);
    await waitUntil(() => exact.received.length >= 5, 'the live handoff');
    expect(numbers(exact.received)).toEqual([0, 1, 2, 3, 4]);
    expect(await exact.stop()).toBeUndefined();

    // With the default window the catch-up reaches further back, so a resume loses nothing
    // committed late; what comes again is dropped by id by the caller.
    const windowed = follow({ clientId }, { since: new Date(Date.now() + 60_000) });
    await waitUntil(() => windowed.received.length >= 5, 'the windowed catch-up');
    expect(numbers(windowed.received)).toEqual([0, 1, 2, 3, 4]);
    await windowed.stop();
  });

  it('keeps following across a move of the client to another shard, losing and repeating nothing', async () => {
    const { clientId, shard } = await newClient();
    const reconnects: unknown[] = [];
    let subscribed = 0;
    const f = follow(
      { clientId, toAgent: 'dispatch' },
      { onReconnect: (e) => reconnects.push(e), onSubscribed: () => subscribed++ },
    );
    await waitUntil(() => subscribed === 1, 'the subscription');

    // Appends keep coming while the client moves; some fail UNAVAILABLE during the write pause.
    let writing = true;
    const written: number[] = [];
    const writer = (async () => {
      for (let n = 0; writing || n < 10; n++) {
        await append(clientId, n).then(
          () => written.push(n),
          (err: unknown) => expect((err as ClientError).code).toBe(Status.UNAVAILABLE),
        );
        if (n % 7 === 0) await append(clientId, -1, 'someone-else').catch(() => undefined);
      }
    })();
    const moved = await moveTo(
      gw.client,
      clientId,
      shards.find((s) => s !== shard)!,
    );
    expect(moved.at(-1)?.state).toBe(MoveState.MOVE_STATE_SUCCEEDED);
    writing = false;
    await writer;

    await waitUntil(() => f.received.length >= written.length, 'every written handoff', 15_000);
    expect(numbers(f.received).sort((a, b) => Number(a) - Number(b))).toEqual(written);
    expect(new Set(f.received.map((h) => h.id)).size).toBe(f.received.length);
    // The watch on the old shard ended UNAVAILABLE when the placement flipped, and was re-made.
    expect(reconnects.length).toBeGreaterThanOrEqual(1);
    expect((reconnects[0] as ClientError).code).toBe(Status.UNAVAILABLE);
    expect(subscribed).toBe(reconnects.length + 1);
    expect(await f.stop()).toBeUndefined();
  });

  it('throws what it cannot follow: an unknown client is NOT_FOUND, not retried', async () => {
    const f = follow({ clientId: freshClientId('ghost') });
    const error = await f.ended;
    expect(error).toBeInstanceOf(ClientError);
    expect((error as ClientError).code).toBe(Status.NOT_FOUND);
  });
});
