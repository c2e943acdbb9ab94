import type { Handoff, HandoffServiceClient } from '../../src/gen/shardgate/v1/handoff.js';
import type { ShardgateCallOptions } from '../../src/client/index.js';

/** Polls `check` every 20 ms until it returns true; fails after `timeoutMs` with `what`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** True for the error a nice-grpc call throws when its own caller aborted it (not a gRPC status). */
export function isAbortError(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

/** A WatchHandoffs stream being consumed in the background. */
export interface HandoffWatch {
  /** Handoffs received so far, in arrival order. */
  readonly received: Handoff[];
  /** Settles when the stream ends: `error` is what the iteration threw, undefined for a clean end. */
  readonly ended: Promise<{ error: unknown }>;
  /** True once the stream ended, for any reason. */
  readonly isEnded: () => boolean;
  /** Waits until at least `count` handoffs arrived (or the stream ended, which fails). */
  waitForCount(count: number, timeoutMs?: number): Promise<Handoff[]>;
  /** Aborts the call from the client side. */
  cancel(): void;
}

/**
 * Starts WatchHandoffs and resolves once the server sent its response header, which it does only
 * after subscribing: every handoff committed afterwards must reach this watch.
 */
export async function startWatch(
  client: HandoffServiceClient<ShardgateCallOptions>,
  request: { clientId: string; toAgent?: string },
  headerTimeoutMs = 5_000,
): Promise<HandoffWatch> {
  const controller = new AbortController();
  const received: Handoff[] = [];
  let ended = false;
  let resolveHeader!: () => void;
  const header = new Promise<void>((resolve) => (resolveHeader = resolve));
  const stream = client.watchHandoffs(request, {
    signal: controller.signal,
    onHeader: () => resolveHeader(),
  });
  const endedPromise = (async (): Promise<{ error: unknown }> => {
    try {
      for await (const message of stream) received.push(message.handoff!);
      return { error: undefined };
    } catch (error) {
      return { error };
    } finally {
      ended = true;
    }
  })();

  const headerOrEnd = await Promise.race([
    header.then(() => 'header' as const),
    endedPromise.then((r) => r),
    new Promise<'timeout'>((resolve) =>
      setTimeout(() => resolve('timeout'), headerTimeoutMs).unref(),
    ),
  ]);
  if (headerOrEnd !== 'header') {
    controller.abort();
    const reason =
      headerOrEnd === 'timeout'
        ? `no header within ${headerTimeoutMs} ms`
        : String(headerOrEnd.error);
    throw new Error(`WatchHandoffs did not start: ${reason}`);
  }

  return {
    received,
    ended: endedPromise,
    isEnded: () => ended,
    async waitForCount(count, timeoutMs = 5_000) {
      await waitUntil(
        () => received.length >= count || ended,
        `${count} handoffs on the watch`,
        timeoutMs,
      );
      if (received.length < count) {
        const { error } = await endedPromise;
        throw new Error(
          `the watch ended after ${received.length} of ${count} handoffs: ${String(error)}`,
        );
      }
      return received;
    },
    cancel: () => controller.abort(),
  };
}
