import { identityOf } from '../auth/identity.js';
import { invalidArgument, notFound } from '../core/errors.js';
import type { SharedServiceImplementation } from '../gen/shardgate/v1/shared.js';
import type { BenchmarkRecord, KnowledgeRecord } from '../shared-db/shared-store.js';
import type { GatewayContext } from './gateway-context.js';
import { callerOf, requestKeyOf } from './idempotency.js';
import { cursorDate, cursorString, decodePageToken, pageOf, fitPage } from './page-token.js';
import * as v from './validate.js';

const optionalKey = (
  raw: string,
  field: string,
  max: number,
  allowDot = true,
): string | undefined => (raw === '' ? undefined : v.key(raw, field, max, allowDot));
/** Industry keys have no `.` (shared.proto); metric and topic keys may. */
const industryKey = (raw: string, field: string): string => v.key(raw, field, 64, false);

/** SharedService: cross-client benchmarks and agent knowledge in the shared database. */
export function createSharedService(ctx: GatewayContext): SharedServiceImplementation {
  return {
    async putBenchmark(req, { signal }) {
      const b = req.benchmark;
      if (!b) throw invalidArgument('benchmark is required');
      if (!Number.isFinite(b.value))
        throw invalidArgument('benchmark.value must be a finite number');
      const row = await ctx.shared.putBenchmark(
        {
          industry: industryKey(b.industry, 'benchmark.industry'),
          metric: v.key(b.metric, 'benchmark.metric', 128),
          value: b.value,
          unit: v.text(b.unit, 'benchmark.unit', 0, 32),
          source: v.text(b.source, 'benchmark.source', 0, 500),
        },
        signal,
      );
      return { benchmark: row };
    },

    async getBenchmark(req, { signal }) {
      const industry = industryKey(req.industry, 'industry');
      const metric = v.key(req.metric, 'metric', 128);
      const row = await ctx.shared.getBenchmark(industry, metric, signal);
      if (!row) throw notFound(`no benchmark for industry '${industry}' and metric '${metric}'`);
      return { benchmark: row };
    },

    async listBenchmarks(req, { signal }) {
      const limit = v.pageSize(req.pageSize);
      const industry = optionalKey(req.industry, 'industry', 64, false);
      const metric = optionalKey(req.metric, 'metric', 128);
      const filters = ['benchmarks', industry, metric];
      const cursor = decodePageToken(req.pageToken, filters);
      const after: [string, string] | undefined = cursor && [
        cursorString(cursor[0]),
        cursorString(cursor[1]),
      ];
      const rows = await ctx.shared.listBenchmarks(
        { industry, metric, after, limit: limit + 1 },
        signal,
      );
      const { items, nextPageToken } = pageOf(rows, limit, filters, (b: BenchmarkRecord) => [
        b.industry,
        b.metric,
      ]);
      return { benchmarks: items, nextPageToken };
    },

    async addKnowledgeEntry(req, context) {
      const e = req.entry;
      if (!e) throw invalidArgument('entry is required');
      const entry = {
        topic: v.key(e.topic, 'entry.topic', 128),
        agent: v.agentName(e.agent, 'entry.agent'),
        content: longText(e.content, 'entry.content', 64 * 1024),
      };
      const key = requestKeyOf(
        req.requestId,
        'AddKnowledgeEntry',
        entry,
        callerOf(identityOf(context)),
      );
      const row = await ctx.shared.addKnowledge(entry, context.signal, key);
      return { entry: row };
    },

    async listKnowledgeEntries(req, { signal }) {
      const limit = v.pageSize(req.pageSize);
      const topic = optionalKey(req.topic, 'topic', 128);
      const agent = v.optionalAgent(req.agent, 'agent');
      const filters = ['knowledge', topic, agent];
      const cursor = decodePageToken(req.pageToken, filters);
      const before = cursor && {
        createdAt: cursorDate(cursor[0]),
        id: v.uuid(cursorString(cursor[1]), 'page_token'),
      };
      const rows = await ctx.shared.listKnowledge(
        { topic, agent, before, limit: limit + 1 },
        signal,
      );
      const { items, nextPageToken } = pageOf(
        rows,
        limit,
        filters,
        (k: KnowledgeRecord) => [k.createdAt.getTime(), k.id],
        // Contents run to 64 KiB each: a full page could exceed the message limit.
        (page) =>
          fitPage(
            page,
            (k) => 3 * (k.content.length + k.topic.length + k.agent.length) + 64,
            ctx.config.limits.maxMessageBytes / 2,
          ),
      );
      return { entries: items, nextPageToken };
    },
  };
}

/** Multi-line text: newlines and tabs allowed, NUL and other control characters not. */
function longText(raw: string, field: string, maxBytes: number): string {
  if (raw === '') throw invalidArgument(`${field} is required`);
  if (Buffer.byteLength(raw) > maxBytes)
    throw invalidArgument(`${field} must be at most ${maxBytes} bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(raw)) {
    throw invalidArgument(
      `${field} must not contain control characters other than newline and tab`,
    );
  }
  return raw;
}
