import type { CallContext, ServerMiddlewareCall } from 'nice-grpc';
import { describe, expect, it } from 'vitest';
import { auditAdminActions } from '../../../src/api/audit-middleware.js';
import type { GatewayContext } from '../../../src/api/gateway-context.js';
import { anonymousIdentity, type AuthContext } from '../../../src/auth/identity.js';
import type { AuditEventEnd, AuditEventStart } from '../../../src/catalog/audit-log.js';
import { ShardgateError } from '../../../src/core/errors.js';

/** An in-memory audit log whose writes can be made to fail. */
class MemoryAudit {
  readonly events = new Map<string, AuditEventStart & Partial<AuditEventEnd>>();
  failRecord: Error | undefined;
  failComplete: Error | undefined;

  async record(e: AuditEventStart): Promise<string> {
    if (this.failRecord) throw this.failRecord;
    const id = String(this.events.size + 1);
    this.events.set(id, { ...e });
    return id;
  }

  async complete(id: string, end: AuditEventEnd): Promise<void> {
    if (this.failComplete) throw this.failComplete;
    const e = this.events.get(id)!;
    this.events.set(id, { ...e, ...end, target: end.target ?? e.target });
  }
}

function setup() {
  const audit = new MemoryAudit();
  const errors: string[] = [];
  const ctx = {
    audit,
    log: { warn: () => undefined, error: (_o: object, msg: string) => errors.push(msg) },
  } as unknown as GatewayContext;
  return { audit, errors, middleware: auditAdminActions(ctx) };
}

function callOf<Req, Res>(
  path: string,
  request: Req,
  responseStream: boolean,
  next: (req: Req) => AsyncGenerator<Res, Res | void, undefined>,
): ServerMiddlewareCall<Req, Res> {
  return {
    method: { path, requestStream: false, responseStream, options: {} },
    requestStream: false,
    request,
    responseStream,
    next: (req: Req) => next(req),
  } as unknown as ServerMiddlewareCall<Req, Res>;
}

function contextOf(controller = new AbortController()): CallContext & AuthContext {
  return { signal: controller.signal, identity: anonymousIdentity } as unknown as CallContext &
    AuthContext;
}

/** A unary handler as middleware sees it: a generator that yields nothing and returns `run()`. */
function unaryHandler<Res>(run: () => Promise<Res>): () => AsyncGenerator<never, Res, undefined> {
  // eslint-disable-next-line require-yield -- a unary handler sends no stream messages
  return async function* () {
    return run();
  };
}

/** Runs a unary middleware call to its end and returns the response (or throws). */
async function unary<Res>(gen: AsyncGenerator<Res, Res | void, undefined>): Promise<Res | void> {
  const first = await gen.next();
  if (!first.done) throw new Error('a unary call yielded');
  return first.value;
}

describe('auditAdminActions', () => {
  it('passes a call that is not audited straight through, recording nothing', async () => {
    const { audit, middleware } = setup();
    const call = callOf(
      '/shardgate.v1.AdminService/GetTopology',
      {},
      false,
      unaryHandler(async () => {
        return { ringEpoch: 3 };
      }),
    );
    expect(await unary(middleware(call, contextOf()))).toEqual({ ringEpoch: 3 });
    expect(audit.events.size).toBe(0);
  });

  it('refuses the action when its event cannot be written first, and logs why', async () => {
    const { audit, errors, middleware } = setup();
    audit.failRecord = new ShardgateError('unavailable', 'the catalog is unavailable');
    let ran = false;
    const call = callOf(
      '/shardgate.v1.AdminService/RemoveShard',
      { name: 's' },
      false,
      unaryHandler(async () => {
        ran = true;
        return { ringEpoch: 1 };
      }),
    );
    const err = await unary(middleware(call, contextOf())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShardgateError);
    expect((err as ShardgateError).code).toBe('unavailable');
    expect((err as ShardgateError).message).toMatch(/RemoveShard was not run: the audit log/);
    expect(ran).toBe(false);
    expect(errors).toEqual(['could not write the audit log; action refused']);
  });

  it('keeps a successful action successful when its outcome cannot be recorded', async () => {
    const { audit, errors, middleware } = setup();
    audit.failComplete = new ShardgateError('unavailable', 'the catalog is unavailable');
    const call = callOf(
      '/shardgate.v1.AdminService/DrainShard',
      { name: 's' },
      false,
      unaryHandler(async () => {
        return { ringEpoch: 4 };
      }),
    );
    expect(await unary(middleware(call, contextOf()))).toEqual({ ringEpoch: 4 });
    expect([...audit.events.values()].map((e) => e.outcome)).toEqual(['UNKNOWN']);
    expect(errors).toEqual(['could not record the outcome of an admin action in the audit log']);
  });

  it('records the mapped status and message of a failed action, and rethrows the error', async () => {
    const { audit, middleware } = setup();
    const refusal = new ShardgateError('failed-precondition', "shard 's' still holds 2 clients");
    const call = callOf(
      '/shardgate.v1.AdminService/RemoveShard',
      { name: 's' },
      false,
      unaryHandler(async () => {
        throw refusal;
      }),
    );
    await expect(unary(middleware(call, contextOf()))).rejects.toBe(refusal);
    expect([...audit.events.values()]).toEqual([
      expect.objectContaining({
        method: 'shardgate.v1.AdminService/RemoveShard',
        target: 's',
        actor: 'anonymous',
        outcome: 'FAILED_PRECONDITION',
        error: "shard 's' still holds 2 clients",
      }),
    ]);
  });

  it('records an unexpected error as INTERNAL without its message', async () => {
    const { audit, middleware } = setup();
    const call = callOf(
      '/shardgate.v1.AdminService/DrainShard',
      { name: 's' },
      false,
      unaryHandler(async () => {
        throw new Error('password=hunter2');
      }),
    );
    await expect(unary(middleware(call, contextOf()))).rejects.toThrow('hunter2');
    const [event] = audit.events.values();
    expect(event?.outcome).toBe('INTERNAL');
    expect(event?.error).not.toContain('hunter2');
  });

  it('records a stream the caller stopped reading as CANCELLED', async () => {
    const { audit, middleware } = setup();
    const call = callOf(
      '/shardgate.v1.AdminService/MoveTenant',
      { clientId: 'acme', toShard: 's-2' },
      true,
      async function* () {
        yield { move: { id: 'm' } };
        yield { move: { id: 'm' } };
      },
    );
    const gen = middleware(call, contextOf());
    expect((await gen.next()).done).toBe(false);
    expect(await gen.return(undefined)).toEqual({ done: true, value: undefined });
    expect([...audit.events.values()]).toEqual([
      expect.objectContaining({ target: 'acme', outcome: 'CANCELLED' }),
    ]);
  });

  it('records a stream that ended after its caller left as CANCELLED, one that ran out as OK', async () => {
    const { audit, middleware } = setup();
    const run = async (abort: boolean) => {
      const controller = new AbortController();
      const call = callOf('/shardgate.v1.AdminService/Rebalance', {}, true, async function* () {
        yield { finished: 0, total: 1 };
        if (abort) controller.abort();
      });
      for await (const _ of middleware(call, contextOf(controller))) void _;
    };
    await run(true);
    await run(false);
    expect([...audit.events.values()].map((e) => e.outcome)).toEqual(['CANCELLED', 'OK']);
  });
});
