import { pino, type Logger } from 'pino';

/**
 * The gateway's logger (pino: structured JSON, cheap when a level is off). Errors are reduced to
 * type, message, SQLSTATE/errno code and stack: driver errors carry their connection object,
 * which would otherwise be logged whole.
 */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    serializers: { err: serializeError },
  });
}

function serializeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const code = (err as { code?: unknown }).code;
  return {
    type: err.name,
    message: err.message,
    ...(code === undefined ? {} : { code }),
    stack: err.stack,
    ...(err.cause === undefined ? {} : { cause: serializeError(err.cause) }),
  };
}
