import type { AuditEventRecord } from '../catalog/audit-log.js';
import { invalidArgument } from '../core/errors.js';
import type { AdminServiceImplementation, AuditEvent } from '../gen/shardgate/v1/admin.js';
import { auditedMethods } from './audit-middleware.js';
import type { GatewayContext } from './gateway-context.js';
import { cursorString, decodePageToken, pageOf } from './page-token.js';
import * as v from './validate.js';

type AuditHandlers = Pick<AdminServiceImplementation, 'listAuditEvents'>;

/** The audit half of AdminService: listing the recorded admin actions, newest first. */
export function createAuditHandlers(ctx: GatewayContext): AuditHandlers {
  return {
    async listAuditEvents(req, { signal }) {
      const limit = v.pageSize(req.pageSize);
      const actor = req.actor === '' ? undefined : v.text(req.actor, 'actor', 1, 256);
      const methods = req.method === '' ? undefined : methodsMatching(req.method);
      const filters = ['ListAuditEvents', actor, methods];
      const cursor = decodePageToken(req.pageToken, filters);
      const beforeId = cursor && eventId(cursorString(cursor[0]));
      const rows = await ctx.audit.list({ actor, methods, beforeId, limit: limit + 1 }, signal);
      const { items, nextPageToken } = pageOf(rows, limit, filters, (e) => [e.id]);
      return { events: items.map(auditEventToProto), nextPageToken };
    },
  };
}

/**
 * The full names a `method` filter stands for: a full name (with or without the leading `/`) or
 * just the method name, case-insensitively. INVALID_ARGUMENT for a method that is never audited,
 * so a typo does not read as "no such actions".
 */
export function methodsMatching(raw: string): string[] {
  const wanted = v.text(raw, 'method', 1, 256).replace(/^\//, '').toLowerCase();
  const known = [...auditedMethods.values()].map((r) => r.method);
  const found = known.filter((m) => {
    const name = m.toLowerCase();
    return wanted.includes('/') ? name === wanted : name.slice(name.indexOf('/') + 1) === wanted;
  });
  if (found.length === 0) {
    const names = known.map((m) => m.slice(m.indexOf('/') + 1)).join(', ');
    throw invalidArgument(`method '${raw}' is never audited; audited methods are: ${names}`);
  }
  return found;
}

/** The keyset of a page token: a decimal event id; INVALID_ARGUMENT when tampered with. */
function eventId(raw: string): string {
  // 19 digits can exceed a bigint, which Postgres would refuse without naming the page token.
  if (!/^[1-9][0-9]{0,18}$/.test(raw) || BigInt(raw) > 9_223_372_036_854_775_807n)
    throw invalidArgument('page_token is not a token this API returned');
  return raw;
}

function auditEventToProto(e: AuditEventRecord): AuditEvent {
  return {
    id: e.id,
    createdAt: e.createdAt,
    actor: e.actor,
    actorName: e.actorName,
    method: e.method,
    target: e.target,
    requestJson: e.requestJson,
    outcome: e.outcome,
    error: e.error,
  };
}
