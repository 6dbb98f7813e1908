import { fault, type ServerError } from './errors.js';

/**
 * Holds what arrives while the model loads: `wait` resolves with the loaded value once `open` is
 * called, or rejects with ENGINE_UNAVAILABLE ("the model is loading") after `waitMs`, when the
 * caller's signal aborts, or when the load failed (`fail`). Every transport and face waits here,
 * so a client that connects early is answered once the model is there instead of being refused.
 */
export class LoadGate<T> {
  readonly #waitMs: number;
  readonly #opened: Promise<T>;
  #open!: (value: T) => void;
  #fail!: (error: ServerError) => void;
  #value: { ready: true; value: T } | undefined;

  constructor(waitMs: number) {
    this.#waitMs = waitMs;
    this.#opened = new Promise<T>((resolve, reject) => {
      this.#open = resolve;
      this.#fail = reject;
    });
    // A load that fails with nobody waiting is reported by the server itself.
    this.#opened.catch(() => {});
  }

  /** The value once the model is loaded. */
  get value(): T | undefined {
    return this.#value?.value;
  }

  /** The model is loaded: every waiter, and every later caller, gets `value`. */
  open(value: T): void {
    this.#value = { ready: true, value };
    this.#open(value);
  }

  /** The model will not load: waiters are refused at once. */
  fail(): void {
    this.#fail(fault('ENGINE_UNAVAILABLE', 'server_loading', {}, { retry_after: 1 }));
  }

  #refusal(): ServerError {
    return this.#waitMs === 0
      ? fault('ENGINE_UNAVAILABLE', 'server_loading', {}, { retry_after: 1 })
      : fault('ENGINE_UNAVAILABLE', 'load_wait', { load_wait_ms: this.#waitMs }, { retry_after: 1 });
  }

  /** The value once the model is loaded; refused after `waitMs`, when `signal` aborts, or when the load failed. */
  wait(signal?: AbortSignal): Promise<T> {
    if (this.#value) return Promise.resolve(this.#value.value);
    if (this.#waitMs === 0 || signal?.aborted) return Promise.reject(this.#refusal());
    return new Promise<T>((resolve, reject) => {
      const settle = (done: () => void): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', refuse);
        done();
      };
      const refuse = (): void => settle(() => reject(this.#refusal()));
      const timer = setTimeout(refuse, this.#waitMs);
      signal?.addEventListener('abort', refuse, { once: true });
      this.#opened.then((value) => settle(() => resolve(value)), refuse);
    });
  }
}
