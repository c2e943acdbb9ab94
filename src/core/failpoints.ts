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
  readonly #holds = new Map<string, { reach: () => void; released: Promise<void> }>();

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

  /**
   * Makes the next hit of `name` wait until `release` is called, so a test can act at exactly
   * that step (e.g. start a competing writer) before the job goes on. In-process only.
   */
  hold(name: string): { reached: Promise<void>; release: () => void } {
    let reach!: () => void;
    let release!: () => void;
    const reached = new Promise<void>((r) => (reach = r));
    const released = new Promise<void>((r) => (release = r));
    this.#holds.set(name, { reach, released });
    return { reached, release };
  }

  /** Crashes the process (as a kill would), throws, or waits for a hold, if `name` is armed. */
  async hit(name: string): Promise<void> {
    const hold = this.#holds.get(name);
    if (hold) {
      this.#holds.delete(name);
      hold.reach();
      await hold.released;
    }
    const action = this.#armed.get(name);
    if (action === 'crash') {
      process.stderr.write(`failpoint ${name}: crashing\n`);
      process.kill(process.pid, 'SIGKILL');
    }
    if (action === 'error') throw new ShardgateError('internal', `failpoint ${name} fired`);
  }
}
