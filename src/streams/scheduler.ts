import { fault, type ServerError } from '../errors.js';

/**
 * Admits at most `slots` runs at once and queues the rest first in, first out, up to
 * `queueLimit`. A queued run whose signal aborts leaves the queue without ever running.
 */
export class Scheduler {
  readonly slots: number;
  readonly queueLimit: number;
  #active = 0;
  #queue: Array<() => void> = [];
  /** Once set (a shutdown), every new run is refused with it; runs already admitted carry on. */
  #closedWith: ServerError | undefined;

  constructor(slots: number, queueLimit: number) {
    this.slots = slots;
    this.queueLimit = queueLimit;
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Refuses every run not admitted yet with `refusal` from now on. */
  close(refusal: ServerError): void {
    this.#closedWith = refusal;
  }

  /** Throws BUSY, with a retry hint, when neither a slot nor a queue place is free; throws the refusal once closed. */
  checkCapacity(): void {
    if (this.#closedWith) throw this.#closedWith;
    if (this.#active < this.slots || this.#queue.length < this.queueLimit) return;
    const [active, queued] = [this.#active, this.#queue.length];
    throw fault('BUSY', 'queue_full', { active, queued }, { retry_after: 1, active, queued });
  }

  /**
   * Waits for a slot. Resolves with a release function that must be called exactly once when
   * the run ends. Rejects with the signal's reason if aborted while queued.
   */
  async acquire(signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    if (this.#active < this.slots) {
      this.#active++;
      return this.#releaser();
    }
    this.checkCapacity();
    await new Promise<void>((resolve, reject) => {
      const waiter = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        this.#queue = this.#queue.filter((w) => w !== waiter);
        reject(new Error('aborted while queued'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(waiter);
    });
    return this.#releaser();
  }

  /** Releasing hands the slot straight to the next queued run, so no newcomer can jump the queue. */
  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#queue.shift();
      if (next) next();
      else this.#active--;
    };
  }
}
