import type { Command } from 'commander';
import type { AuditEvent } from '../gen/shardgate/v1/admin.js';
import { parseArg } from './args.js';
import { withContext, type CliContext } from './cli-context.js';
import { renderTable } from './render.js';

/** Events shown without `--limit`: the gateway's default page. */
const DEFAULT_LIMIT = 50;
/** The gateway's largest page; longer listings follow the page tokens. */
const MAX_PAGE_SIZE = 1000;

interface AuditOptions {
  actor?: string;
  method?: string;
  limit?: number;
  pageToken?: string;
}

/** The audit command: who did which admin action when, and how it ended. */
export function addAuditCommands(program: Command): void {
  program
    .command('audit')
    .description('list recorded admin actions (who, what, when, outcome), newest first')
    .option('--actor <actor>', 'only actions by this actor (a token id, bootstrap or anonymous)')
    .option(
      '--method <method>',
      'only this method, e.g. AddShard or shardgate.v1.AdminService/AddShard',
    )
    .option(
      '--limit <n>',
      `at most this many events (default: ${DEFAULT_LIMIT})`,
      parseArg.positiveInt,
    )
    .option('--page-token <token>', 'continue after the last event of a previous listing')
    .action((opts: AuditOptions, cmd: Command) => withContext(cmd, (ctx) => listAudit(ctx, opts)));
}

async function listAudit(ctx: CliContext, opts: AuditOptions): Promise<void> {
  const limit = opts.limit ?? DEFAULT_LIMIT;
  const filters = { actor: opts.actor ?? '', method: opts.method ?? '' };
  const found: AuditEvent[] = [];
  let pageToken = opts.pageToken ?? '';
  do {
    const pageSize = Math.min(limit - found.length, MAX_PAGE_SIZE);
    const page = await ctx.admin.listAuditEvents({ ...filters, pageSize, pageToken });
    found.push(...page.events);
    pageToken = page.nextPageToken;
  } while (found.length < limit && pageToken !== '');
  const doc = { events: found.map(auditEventJson), nextPageToken: pageToken };
  ctx.print(doc, () => {
    const more = pageToken ? `\n\nmore: add --page-token ${pageToken} (or a larger --limit)` : '';
    return renderAuditEvents(found) + more;
  });
}

/** `--json` shape of one event: the proto3 JSON of AuditEvent with every field present. */
export function auditEventJson(e: AuditEvent) {
  return {
    id: e.id,
    createdAt: e.createdAt?.toISOString() ?? null,
    actor: e.actor,
    actorName: e.actorName,
    method: e.method,
    target: e.target,
    requestJson: e.requestJson,
    outcome: e.outcome,
    error: e.error,
  };
}

/** A table of events; the method without its service, the actor with its name when it has one. */
export function renderAuditEvents(events: readonly AuditEvent[]): string {
  if (events.length === 0) return 'no audit events';
  return renderTable(
    [
      { header: 'time' },
      { header: 'actor' },
      { header: 'method' },
      { header: 'target' },
      { header: 'outcome' },
      { header: 'error' },
    ],
    events.map((e) => [
      e.createdAt?.toISOString() ?? '',
      e.actorName === '' ? e.actor : `${e.actor} (${e.actorName})`,
      e.method.slice(e.method.indexOf('/') + 1),
      e.target === '' ? '-' : e.target,
      e.outcome,
      e.error,
    ]),
  );
}
