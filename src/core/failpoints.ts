import { ShardgateError } from './errors.js';

/** What a named failure point does when armed. */
export type FailAction = 'crash' | 'error';

/**
 * Named failure points, so tests can crash a long-running job at each step (SPQR's control
 * points). Armed from `SHARDGATE_FAILPOINTS="move.cutover=crash,move.copying=error"` or by tests
 * in-process. Unarmed points cost one Map lookup.
 */
export class Failpoints {
  readonly #armed = new Map<string, FailAction>();

  static fromEnv(raw: string | undefined): Failpoints {
    const fp = new Failpoints();
    for (const entry of (raw ?? '').split(',').filter(Boolean)) {
      const [name, action] = entry.split('=');
      if (name && (action === 'crash' || action === 'error')) fp.arm(name, action);
    }
    return fp;
  }

  arm(name: string, action: FailAction): void {
    this.#armed.set(name, action);
  }

  disarm(name: string): void {
    this.#armed.delete(name);
  }

  /** Crashes the process (as a kill would) or throws, if `name` is armed. */
  hit(name: string): void {
    const action = this.#armed.get(name);
    if (action === 'crash') {
      process.stderr.write(`failpoint ${name}: crashing\n`);
      process.kill(process.pid, 'SIGKILL');
    }
    if (action === 'error') throw new ShardgateError('internal', `failpoint ${name} fired`);
  }
}
