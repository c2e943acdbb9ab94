import type { Logger } from 'pino';
import { auditRetentionCutoff, type AuditLog } from './audit-log.js';

/** How often a gateway deletes audit events past `audit.retentionDays` (and once at start). */
const AUDIT_PURGE_INTERVAL_MS = 60 * 60 * 1000;

/**
 * Deletes audit events past `retentionDays` now and every AUDIT_PURGE_INTERVAL_MS, off any request
 * path; every replica does (harmless: see AuditLog.purgeOlderThan). Returns a stop function that
 * clears the timer and cancels a running purge. Failures are logged and retried at the next tick.
 */
export function purgeAuditPeriodically(
  audit: AuditLog,
  retentionDays: number,
  log: Logger,
): () => Promise<void> {
  if (retentionDays === 0) {
    log.info('audit.retentionDays is 0: audit events are kept forever');
    return () => Promise.resolve();
  }
  const stop = new AbortController();
  let running: Promise<void> | undefined;
  const purge = (): void => {
    if (running) return;
    const cutoff = auditRetentionCutoff(retentionDays)!;
    running = audit
      .purgeOlderThan(cutoff, { signal: stop.signal })
      .then((deleted) => {
        if (deleted > 0) log.info({ deleted, cutoff }, 'deleted audit events past retention');
      })
      .catch((err: unknown) => {
        if (!stop.signal.aborted)
          log.warn({ err }, 'audit retention purge failed; it runs again in an hour');
      })
      .finally(() => (running = undefined));
  };
  purge();
  const timer = setInterval(purge, AUDIT_PURGE_INTERVAL_MS);
  timer.unref();
  return async () => {
    clearInterval(timer);
    stop.abort();
    await running;
  };
}
