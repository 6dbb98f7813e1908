import { retrying, type RedisLink } from '../redis/link.js';
import type { Entry } from './entries.js';
import { JOB_TTL_MS } from './queue.js';
import { EMIT } from './scripts.js';

/**
 * How long text waits to be joined with the text that follows before it is sent (ms). Without it
 * each token would cost a round trip to Redis and a wake-up of the receiver; with it a run costs
 * about one entry per this many ms. The first text of a run goes at once.
 */
const LINGER_MS = 5;

/**
 * Sends one execution's entries to its receiver, in order, through the fenced EMIT script. Text
 * is joined for up to `LINGER_MS` into one entry. `stop` is called when the run must stop: its
 * receiver asked, or its claim was taken back (then nothing more is sent).
 */
export class Emitter {
  readonly #link: RedisLink;
  readonly #args: [string, number];
  readonly #stop: (why: 'asked' | 'fenced' | 'unreachable') => void;
  readonly #retryMs: number;
  #tail: Promise<void> = Promise.resolve();
  #pending: Extract<Entry, { t: 't' }> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #texts = 0;
  /** Entries handed to `#send` so far: the next one's number. */
  #sent = 0;
  #fenced = false;

  /** `retryMs`: how long sending one entry is retried while Redis is away; past it the run is given up (its lease ends it). */
  constructor(link: RedisLink, runId: string, attempt: number, retryMs: number, stop: (why: 'asked' | 'fenced' | 'unreachable') => void) {
    this.#link = link;
    this.#retryMs = retryMs;
    this.#args = [runId, attempt];
    this.#stop = stop;
  }

  start(instance: string): void {
    this.#send({ t: 's', x: instance });
  }

  text(entry: Extract<Entry, { t: 't' }>): void {
    if (entry.h || entry.l || this.#texts++ === 0) {
      this.#flush();
      this.#send(entry);
      return;
    }
    if (this.#pending) {
      this.#pending.text += entry.text;
      return;
    }
    this.#pending = { t: 't', text: entry.text };
    this.#timer = setTimeout(() => this.#flush(), LINGER_MS);
  }

  /** Sends the end entry after everything before it; resolves once it is sent (or could not be). */
  end(entry: Extract<Entry, { t: 'e' }>): Promise<void> {
    this.#flush();
    this.#send(entry);
    return this.#tail;
  }

  #flush(): void {
    clearTimeout(this.#timer);
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending) this.#send(pending);
  }

  #send(entry: Entry): void {
    const n = this.#sent++;
    this.#tail = this.#tail.then(() => this.#deliver(entry, n));
  }

  /** Sends entry number `n`, retrying while Redis is away; a retry of one that got through is not added twice. */
  async #deliver(entry: Entry, n: number): Promise<void> {
    if (this.#fenced) return;
    const args = [...this.#args, entry.t, JSON.stringify(entry), JOB_TTL_MS, n];
    try {
      const status = await retrying(() => this.#link.run(EMIT, args), Date.now() + this.#retryMs);
      if (status === 0) {
        this.#fenced = true;
        this.#stop('fenced');
      } else if (status === 2) this.#stop('asked');
    } catch {
      this.#fenced = true;
      this.#stop('unreachable');
    }
  }
}
