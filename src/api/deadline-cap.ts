/**
 * The deadline cap with one timer for all calls instead of one per call: every unary call gets the
 * same cap, so calls expire in the order they started and a FIFO list keeps them sorted; the timer
 * is armed for the oldest only.
 */
export class DeadlineCap {
  readonly capMs: number;
  #head: CappedCall | undefined;
  #tail: CappedCall | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(capMs: number) {
    this.capMs = capMs;
  }

  /** A capped signal for a call starting now, following `parent` (the caller's cancel/deadline). */
  start(parent: AbortSignal): CappedCall {
    const call = new CappedCall(this, parent, performance.now() + this.capMs);
    if (this.#tail) {
      this.#tail.next = call;
      call.prev = this.#tail;
      this.#tail = call;
    } else {
      this.#head = this.#tail = call;
      this.#arm();
    }
    return call;
  }

  /** @internal Called by CappedCall.end. */
  unlink(call: CappedCall): void {
    if (call.prev) call.prev.next = call.next;
    else if (this.#head === call) this.#head = call.next;
    else return; // already unlinked (it fired)
    if (call.next) call.next.prev = call.prev;
    else this.#tail = call.prev;
    call.prev = call.next = undefined;
  }

  #arm(): void {
    if (this.#timer || !this.#head) return;
    const delayMs = Math.max(0, this.#head.expiresAt - performance.now());
    this.#timer = setTimeout(this.#fire, delayMs);
    this.#timer.unref();
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    const now = performance.now();
    while (this.#head && this.#head.expiresAt <= now) {
      const expired = this.#head;
      this.unlink(expired);
      expired.cap();
    }
    this.#arm();
  };
}

/**
 * One unary call under the cap: its own signal fires when the caller's does (with its reason) or
 * at the cap (with a TimeoutError, which the database layer reports as a deadline). It listens to
 * the caller's signal as a listener object, so no closure is made per call.
 */
export class CappedCall {
  readonly #controller = new AbortController();
  readonly #owner: DeadlineCap;
  readonly #parent: AbortSignal;
  readonly expiresAt: number;
  prev: CappedCall | undefined;
  next: CappedCall | undefined;
  /** True once the cap fired (before the caller's own deadline or cancel). */
  capped = false;

  constructor(owner: DeadlineCap, parent: AbortSignal, expiresAt: number) {
    this.#owner = owner;
    this.#parent = parent;
    this.expiresAt = expiresAt;
    if (parent.aborted) this.#controller.abort(parent.reason);
    else parent.addEventListener('abort', this, { once: true });
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get capMs(): number {
    return this.#owner.capMs;
  }

  /** The caller's signal fired. */
  handleEvent(): void {
    this.#controller.abort(this.#parent.reason);
  }

  /** @internal The cap passed. */
  cap(): void {
    if (this.#controller.signal.aborted) return;
    this.capped = true;
    this.#controller.abort(new DOMException('the gateway deadline cap passed', 'TimeoutError'));
  }

  end(): void {
    this.#owner.unlink(this);
    this.#parent.removeEventListener('abort', this);
  }
}
