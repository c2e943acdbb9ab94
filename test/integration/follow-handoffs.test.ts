import { ClientError, Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATCH_UP_PAGE_SIZE } from '../../src/client/follow-handoffs.js';
import {
  followHandoffs,
  type FollowHandoffsOptions,
  type ShardgateClient,
} from '../../src/client/index.js';
import { MoveState } from '../../src/gen/shardgate/v1/admin.js';
import type { Handoff, ListHandoffsRequest } from '../../src/gen/shardgate/v1/handoff.js';
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
    return followWith(gw.client, request, options);
  }

  function followWith(
    client: ShardgateClient,
    request: { clientId: string; toAgent?: string },
    options: FollowHandoffsOptions = {},
  ): Follower {
    const controller = new AbortController();
    const received: Handoff[] = [];
    const ended = (async () => {
      try {
        for await (const h of followHandoffs(client, request, {
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

  /** Appends `count` handoffs numbered from `from`, at most 1000 (one batch) per call. */
  async function appendMany(clientId: string, from: number, count: number): Promise<Handoff[]> {
    const out: Handoff[] = [];
    for (let start = from; start < from + count; start += 1000) {
      const { handoffs } = await gw.client.handoffs.batchAppendHandoffs({
        clientId,
        handoffs: Array.from({ length: Math.min(1000, from + count - start) }, (_, i) => ({
          fromAgent: 'intake',
          toAgent: 'dispatch',
          version: 1,
          summary: { n: start + i },
        })),
      });
      out.push(...handoffs);
    }
    return out;
  }

  /** Waits (bounded) until the clock has passed `h`'s created_at: what comes next is later. */
  async function pastCreatedAt(h: Handoff): Promise<void> {
    await waitUntil(() => Date.now() > h.createdAt!.getTime() + 1, 'the clock to move on');
  }

  /**
   * The gateway's client with its ListHandoffs calls seen (the requests, in order) and, where
   * `fail` says so, failed before they are sent, as a dropped connection would fail them.
   */
  function watchingLists(fail: (call: number) => Error | undefined = () => undefined): {
    client: ShardgateClient;
    lists: Partial<ListHandoffsRequest>[];
  } {
    const lists: Partial<ListHandoffsRequest>[] = [];
    const handoffs = gw.client.handoffs;
    const client: ShardgateClient = {
      ...gw.client,
      handoffs: {
        ...handoffs,
        listHandoffs: (request, options) => {
          lists.push(request as Partial<ListHandoffsRequest>);
          const error = fail(lists.length);
          return error ? Promise.reject(error) : handoffs.listHandoffs(request, options);
        },
      },
    };
    return { client, lists };
  }

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

  it('passes on a long catch-up page by page, oldest first: the first handoff comes before the last page is read', async () => {
    const { clientId } = await newClient();
    const since = new Date(Date.now() - 7 * 24 * 3600_000); // a week back
    const appended = await appendMany(clientId, 0, CATCH_UP_PAGE_SIZE + 5);
    const { client, lists } = watchingLists();
    const controller = new AbortController();
    const handoffs = followHandoffs(client, { clientId }, { since, signal: controller.signal });
    try {
      const first = await handoffs.next();
      expect(first.value).toEqual(appended[0]);
      // Only the first page was listed, oldest first.
      expect(lists).toHaveLength(1);
      expect(lists[0]).toMatchObject({ clientId, orderBy: 'created_at', pageSize: 1000 });

      const received = [first.value as Handoff];
      while (received.length < appended.length) {
        const next = await handoffs.next();
        received.push(next.value as Handoff);
      }
      expect(received.map((h) => h.id)).toEqual(appended.map((h) => h.id));
      expect(lists).toHaveLength(2);
      expect(lists[1]!.pageToken).not.toBe('');
    } finally {
      controller.abort();
      await handoffs.return();
    }
  });

  it('a catch-up cut short by UNAVAILABLE resumes after what it delivered: nothing comes twice, nothing is lost', async () => {
    const { clientId } = await newClient();
    const since = new Date(Date.now() - 60_000);
    // Three pages at three created_at times: page 1 (older), page 2 (newer), then one more.
    const older = await appendMany(clientId, 0, CATCH_UP_PAGE_SIZE);
    await pastCreatedAt(older.at(-1)!);
    const newer = await appendMany(clientId, CATCH_UP_PAGE_SIZE, CATCH_UP_PAGE_SIZE);
    await pastCreatedAt(newer.at(-1)!);
    const last = await append(clientId, 2 * CATCH_UP_PAGE_SIZE);
    // The third page's call fails once, after two pages were delivered; with no window the
    // delivered-id set forgets the older page once the newer one is in (it keeps 2 windows).
    const dropped = new ClientError(
      '/shardgate.v1.HandoffService/ListHandoffs',
      Status.UNAVAILABLE,
      'connection dropped (test)',
    );
    const { client, lists } = watchingLists((call) => (call === 3 ? dropped : undefined));
    const reconnects: unknown[] = [];
    const f = followWith(
      client,
      { clientId },
      {
        since,
        catchUpWindowMs: 0,
        reconnectBaseDelayMs: 1,
        onReconnect: (e) => reconnects.push(e),
      },
    );
    const all = [...older, ...newer, last];
    await waitUntil(() => f.received.length >= all.length, 'the whole catch-up', 15_000);
    expect(reconnects).toEqual([dropped]);
    expect(f.received.map((h) => h.id)).toEqual(all.map((h) => h.id));
    // The second catch-up started at the newest handoff it had delivered, not at `since`.
    expect(lists[3]!.createdAfter).toEqual(newer.at(-1)!.createdAt);
    expect(await f.stop()).toBeUndefined();
    expect(f.received).toHaveLength(all.length);
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
