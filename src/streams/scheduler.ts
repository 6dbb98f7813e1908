import { fault, type ServerError } from '../errors.js';

/** One queued run: its turn, and how to wake it when a slot is handed to it. */
interface Waiter {
  turn: number;
  wake(): void;
}

/**
 * Admits at most `slots` runs at once and queues the rest, up to `queueLimit` in all and
 * `clientQueueLimit` per client (0: no per-client bound). The queue is fair across clients (an
 * API key, or an address without keys), in the manner of start-time fair queueing: every run gets
 * a turn number, one past the later of its client's previous turn and the turn now in service, and
 * a freed slot goes to the waiting run with the lowest turn. So a client's many queued runs take
 * turns with everyone else's, and a newcomer's run is served at the next free slot (its turn is
 * the lowest), however many runs others have queued. Within a client, runs keep their order. A
 * queued run whose signal aborts leaves the queue without ever running.
 *
 * The fleet's shared queue applies the same rule inside Redis (ENQUEUE and CLAIM in
 * fleet/scripts.ts): there it must run atomically with admission and claims across instances, with
 * no coordinator; here it must run synchronously, with no round trip per slot and with no Redis.
 * Both pass the same test vectors (test/unit/fair-queue-vectors.ts).
 */
export class Scheduler {
  readonly slots: number;
  readonly queueLimit: number;
  readonly clientQueueLimit: number;
  #active = 0;
  #queued = 0;
  /** The turn of the run most recently given a slot. */
  #inService = 0;
  /** Each client's last turn, kept while it is ahead of the turn in service. */
  readonly #lastTurn = new Map<string, number>();
  /** Each client's waiting runs, in order (their turns rise). */
  readonly #lines = new Map<string, Waiter[]>();
  /** Once set (a shutdown), every new run is refused with it; runs already admitted carry on. */
  #closedWith: ServerError | undefined;

  constructor(slots: number, queueLimit: number, clientQueueLimit = 0) {
    this.slots = slots;
    this.queueLimit = queueLimit;
    this.clientQueueLimit = clientQueueLimit;
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queued;
  }

  /** Runs `client` has waiting for a slot. */
  queuedBy(client: string): number {
    return this.#lines.get(client)?.length ?? 0;
  }

  /** Refuses every run not admitted yet with `refusal` from now on. */
  close(refusal: ServerError): void {
    this.#closedWith = refusal;
  }

  /**
   * Throws BUSY, with a retry hint, when no slot is free and either the queue or `client`'s share
   * of it is full; throws the refusal once closed.
   */
  checkCapacity(client = ''): void {
    if (this.#closedWith) throw this.#closedWith;
    if (this.#active < this.slots) return;
    const data = { retry_after: 1, active: this.#active, queued: this.#queued };
    if (this.#queued >= this.queueLimit) throw fault('BUSY', 'queue_full', { active: this.#active, queued: this.#queued }, data);
    const mine = this.queuedBy(client);
    if (this.clientQueueLimit > 0 && mine >= this.clientQueueLimit) {
      throw fault('BUSY', 'client_queue_full', { queued: mine }, data);
    }
  }

  /**
   * Waits for a slot, in `client`'s line. Resolves with a release function that must be called
   * exactly once when the run ends. Rejects if aborted while queued.
   */
  async acquire(signal: AbortSignal, client = ''): Promise<() => void> {
    signal.throwIfAborted();
    if (this.#active < this.slots) {
      this.#active++;
      this.#serve(this.#turnFor(client));
      return this.#releaser();
    }
    this.checkCapacity(client);
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        turn: this.#turnFor(client),
        wake: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        this.#leave(client, waiter);
        reject(new Error('aborted while queued'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const line = this.#lines.get(client);
      if (line) line.push(waiter);
      else this.#lines.set(client, [waiter]);
      this.#queued++;
    });
    return this.#releaser();
  }

  /** The next turn of `client`: one past the later of its last turn and the turn in service. */
  #turnFor(client: string): number {
    const turn = Math.max(this.#lastTurn.get(client) ?? 0, this.#inService) + 1;
    this.#lastTurn.set(client, turn);
    return turn;
  }

  /** A run of `turn` got a slot: turns up to the one before it are served; clients not ahead of that are forgotten. */
  #serve(turn: number): void {
    this.#inService = Math.max(this.#inService, turn - 1);
    for (const [client, last] of this.#lastTurn) if (last <= this.#inService) this.#lastTurn.delete(client);
  }

  #leave(client: string, waiter: Waiter): void {
    const line = this.#lines.get(client);
    const at = line?.indexOf(waiter) ?? -1;
    if (!line || at < 0) return;
    line.splice(at, 1);
    this.#queued--;
    if (line.length === 0) this.#lines.delete(client);
  }

  /** The waiting run with the lowest turn (the earliest client on a tie), taken off its line. */
  #next(): Waiter | undefined {
    let best: [string, Waiter[]] | undefined;
    for (const entry of this.#lines) if (!best || entry[1][0]!.turn < best[1][0]!.turn) best = entry;
    if (!best) return undefined;
    const [client, line] = best;
    const waiter = line.shift()!;
    this.#queued--;
    if (line.length === 0) this.#lines.delete(client);
    this.#serve(waiter.turn);
    return waiter;
  }

  /** Releasing hands the slot straight to the next queued run, so no newcomer can jump the queue. */
  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#next();
      if (next) next.wake();
      else this.#active--;
    };
  }
}
