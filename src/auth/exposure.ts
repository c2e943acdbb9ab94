import type { AuthConfig } from '../core/config.js';

/**
 * True when a `listen` address only accepts connections from this host: a loopback address
 * (127.0.0.0/8, ::1, localhost) or a Unix socket. Anything else, 0.0.0.0 included, is exposed.
 */
export function isLoopbackListen(listen: string): boolean {
  if (listen.startsWith('unix:')) return true;
  const colon = listen.lastIndexOf(':');
  if (colon <= 0) return false;
  const host = listen
    .slice(0, colon)
    .replace(/^\[(.*)\]$/, '$1')
    .toLowerCase();
  return (
    host === 'localhost' ||
    host === '::1' ||
    host === '0:0:0:0:0:0:0:1' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
  );
}

/**
 * Why this configuration must not start, or undefined when it may: a gateway reachable from other
 * hosts never runs without authentication (every anonymous caller would be admin).
 */
export function exposureProblem(config: { listen: string; auth: AuthConfig }): string | undefined {
  if (config.auth.required || isLoopbackListen(config.listen)) return undefined;
  return (
    `refusing to listen on ${config.listen} without authentication: set auth.required ` +
    '(SHARDGATE_AUTH_REQUIRED=true) with a bootstrap auth.adminToken (SHARDGATE_ADMIN_TOKEN), ' +
    'or listen on a loopback address such as 127.0.0.1'
  );
}
