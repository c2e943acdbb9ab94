import { on, EventEmitter } from 'node:events';
import { invalidArgument, notFound, placementStale } from '../core/errors.js';
import type { Placement } from '../router/router.js';
import type { Handoff, HandoffServiceImplementation } from '../gen/shardgate/v1/handoff.js';
import {
  handoffs,
  type HandoffOrder,
  type HandoffRecord,
  type NewHandoff,
} from '../shards/handoffs.js';
import { handoffToProto } from './convert.js';
import { openClientScope, withClient, type GatewayContext } from './gateway-context.js';
import { createOnce, requestKeyOf } from './idempotency.js';
import { requestBytesOf } from './lenient-decoding.js';
import {
  cursorDate,
  cursorString,
  decodePageToken,
  pageOf,
  fitPage,
  refuseUnlessAnswerFits,
} from './page-token.js';
import * as v from './validate.js';

/** HandoffService: append, list and watch agent-to-agent handoffs in the client's schema. */
export function createHandoffService(ctx: GatewayContext): HandoffServiceImplementation {
  return {
    async appendHandoff(req, { signal }) {
      if (!req.handoff) throw invalidArgument('handoff is required');
      const input = newHandoff(req.handoff, 'handoff');
      const key = requestKeyOf(req.requestId, 'AppendHandoff', fingerprintOf(input, req.handoff));
      return withClient(ctx, req.clientId, signal, 'write', async (scope) => {
        const row = await createOnce(
          ctx,
          scope,
          key,
          () => handoffs.append(scope.db, scope.schema, input, signal, key),
          signal,
        );
        return { handoff: handoffToProto(row) };
      });
    },

    async batchAppendHandoffs(req, { signal }) {
      v.batchSize(req.handoffs.length, 'handoffs');
      const items = req.handoffs.map((h, i) => newHandoff(h, `handoffs[${i}]`));
      // The answer repeats each handoff, summary and all, with its id and created_at: refuse,
      // before writing, a batch whose answer could not be sent (stored, yet reported failed).
      refuseUnlessAnswerFits(
        (requestBytesOf(req) ?? 0) + items.length * ADDED_PER_HANDOFF_BYTES,
        ctx.config.limits.maxMessageBytes,
        `handoffs: the answer to these ${items.length} would`,
        'send fewer per call',
      );
      const key = requestKeyOf(
        req.requestId,
        'BatchAppendHandoffs',
        items.map((h, i) => fingerprintOf(h, req.handoffs[i]!)),
      );
      return withClient(ctx, req.clientId, signal, 'write', async (scope) => {
        const rows = await createOnce(
          ctx,
          scope,
          key,
          () => handoffs.appendMany(scope.db, scope.schema, items, signal, key),
          signal,
        );
        return { handoffs: rows.map(handoffToProto) };
      });
    },

    async listHandoffs(req, { signal }) {
      const limit = v.pageSize(req.pageSize);
      const fromAgent = v.optionalAgent(req.fromAgent, 'from_agent');
      const toAgent = v.optionalAgent(req.toAgent, 'to_agent');
      const createdAfter = v.optionalTimestamp(req.createdAfter, 'created_after');
      const createdBefore = v.optionalTimestamp(req.createdBefore, 'created_before');
      const order = parseOrderBy(req.orderBy);
      const filters = [
        req.clientId,
        fromAgent,
        toAgent,
        createdAfter?.getTime(),
        createdBefore?.getTime(),
        // Oldest first joins the fingerprint and the default adds nothing: tokens issued before
        // order_by existed stay valid (across a rolling upgrade too), and neither order takes
        // the other's.
        ...(order === 'oldest-first' ? [order] : []),
      ];
      const cursor = decodePageToken(req.pageToken, filters);
      const after = cursor && {
        createdAt: cursorDate(cursor[0]),
        id: v.uuid(cursorString(cursor[1]), 'page_token'),
      };
      return withClient(ctx, req.clientId, signal, 'read', async (scope) => {
        const rows = await handoffs.list(
          scope.db,
          scope.schema,
          { fromAgent, toAgent, createdAfter, createdBefore, order, after, limit: limit + 1 },
          signal,
        );
        const { items, nextPageToken } = pageOf(
          rows,
          limit,
          filters,
          (h) => [h.createdAt.getTime(), h.id],
          // Summaries run to 256 KiB each: a full page could exceed the message limit.
          (page) => fitPage(page, handoffBytes, ctx.config.limits.maxMessageBytes / 2),
        );
        return { handoffs: items.map(handoffToProto), nextPageToken };
      });
    },

    async getLatestHandoff(req, { signal }) {
      const toAgent = v.agentName(req.toAgent, 'to_agent');
      return withClient(ctx, req.clientId, signal, 'read', async (scope) => {
        const row = await handoffs.latestTo(scope.db, scope.schema, toAgent, signal);
        if (!row) throw notFound(`client '${req.clientId}' has no handoff to '${toAgent}'`);
        return { handoff: handoffToProto(row) };
      });
    },

    /**
     * Subscribes before sending the response header, so a caller that waits for the header
     * (nice-grpc `onHeader`) knows every handoff committed from then on will reach it.
     */
    async *watchHandoffs(req, context) {
      const { signal } = context;
      const toAgent = v.optionalAgent(req.toAgent, 'to_agent');
      const scope = await openClientScope(ctx, req.clientId, signal);
      const events = new EventEmitter();
      // An 'error' emitted with no listener throws where it is emitted, in the shard feed's code:
      // an uncaught exception. The iterator below listens only until it ends (a cancelled call
      // leaves it before `unsubscribe` runs), so a feed error in between must land somewhere.
      events.on('error', () => undefined);
      const arrivals = on(events, 'handoff', { signal });
      const unsubscribe = await ctx.feed.subscribe(scope.placement.shard, scope.placement.schema, {
        onHandoff: (h) => {
          if (toAgent === undefined || h.toAgent === toAgent) events.emit('handoff', h);
        },
        onError: (err) => events.emit('error', err),
      });
      const stopFollowing = new AbortController();
      void endWhenMoved(
        ctx,
        scope.placement,
        AbortSignal.any([signal, stopFollowing.signal]),
        (err) => events.emit('error', err),
      );
      try {
        // nice-grpc's sendHeader() sends nothing while the header is empty, so say something.
        context.header.set('shardgate-watch', 'subscribed');
        context.sendHeader();
        for await (const [handoff] of arrivals) {
          yield { handoff: handoffToProto(handoff as HandoffRecord) };
        }
      } catch (err) {
        if (!signal.aborted) throw err;
      } finally {
        stopFollowing.abort();
        unsubscribe();
      }
    },
  };
}

/** The field name is an identifier, matched exactly; the keyword is checked in any case. */
const ORDER_BY = /^\s*created_at(?:\s+([A-Za-z]+))?\s*$/;

/**
 * ListHandoffs' order_by (AIP-132): the one field, `created_at`, with `asc` or `desc` in any case
 * (`asc` when absent); spaces around and between are insignificant. Empty is newest first.
 */
function parseOrderBy(raw: string): HandoffOrder {
  if (raw.trim() === '') return 'newest-first';
  const match = ORDER_BY.exec(raw);
  const direction = match ? (match[1] ?? 'asc').toLowerCase() : '';
  if (direction === 'asc') return 'oldest-first';
  if (direction === 'desc') return 'newest-first';
  throw invalidArgument(
    'order_by must be empty or "created_at desc" (newest first), or "created_at" or ' +
      '"created_at asc" (oldest first)',
  );
}

/** An answer's handoff over its request's: an id and created_at, with their tags and framing. */
const ADDED_PER_HANDOFF_BYTES = 96;

/**
 * At least the bytes a handoff takes in a response: its summary dominates, and a Struct takes up
 * to about twice the bytes of its JSON (a tag and a length around every key and value).
 */
function handoffBytes(h: HandoffRecord): number {
  const text = JSON.stringify(h.summary) + h.fromAgent + h.toAgent;
  return 2 * Buffer.byteLength(text) + 64;
}

/** A new handoff's fields, validated; `field` prefixes error messages. */
function newHandoff(h: Handoff, field: string): NewHandoff {
  if (h.version < 0) throw invalidArgument(`${field}.version must not be negative`);
  return {
    fromAgent: v.agentName(h.fromAgent, `${field}.from_agent`),
    toAgent: v.agentName(h.toAgent, `${field}.to_agent`),
    version: h.version,
    summaryJson: v.jsonObject(h.summary, `${field}.summary`),
  };
}

/**
 * What a handoff's request_id fingerprint covers: the validated fields, with the summary as an
 * object (hashed with sorted keys, so the order its fields arrived in does not matter).
 */
function fingerprintOf(input: NewHandoff, h: Handoff): object {
  return {
    fromAgent: input.fromAgent,
    toAgent: input.toAgent,
    version: input.version,
    summary: h.summary,
  };
}

/**
 * Ends a watch with UNAVAILABLE once its client's placement moves to another shard: handoffs are
 * then written there, and the caller re-watches (catching up with ListHandoffs' created_after).
 */
async function endWhenMoved(
  ctx: GatewayContext,
  placement: Placement,
  signal: AbortSignal,
  fail: (err: Error) => void,
): Promise<void> {
  while (!signal.aborted) {
    await ctx.router.waitForChange(placement.clientId, 60_000, signal);
    if (signal.aborted) return;
    const now = await ctx.router.resolve(placement.clientId, signal).catch(() => undefined);
    if (signal.aborted) return;
    if (!now || now.shard !== placement.shard) {
      fail(placementStale(placement.shard));
      return;
    }
  }
}
