import { setTimeout as delay } from 'node:timers/promises';
import type { RedisLink } from '../redis/link.js';
import type { Entry } from './entries.js';
import { JOB_TTL_MS } from './queue.js';
import { EMIT } from './scripts.js';

/** How long sending one entry is retried while Redis is away; past it the run is given up (its lease will end it). */
const RETRY_FOR_MS = 5_000;

/**
 * Sends one execution's entries to its receiver, in order, through the fenced EMIT script. Text
 * produced while an entry is on its way is joined into the next one, so a fast engine costs
 * fewer round trips. `stop` is called once when the run must stop: its receiver asked, or its
 * claim was taken back (then nothing more is sent).
 */
export class Emitter {
  readonly #link: RedisLink;
  readonly #args: [string, number];
  readonly #stop: (why: 'asked' | 'fenced' | 'unreachable') => void;
  #tail: Promise<void> = Promise.resolve();
  #pending: Extract<Entry, { t: 't' }> | undefined;
  #fenced = false;
  /** Round trips made (for the docs' cost per run). */
  calls = 0;

  constructor(link: RedisLink, runId: string, attempt: number, stop: (why: 'asked' | 'fenced' | 'unreachable') => void) {
    this.#link = link;
    this.#args = [runId, attempt];
    this.#stop = stop;
  }

  start(instance: string): void {
    this.#send({ t: 's', x: instance });
  }

  text(entry: Extract<Entry, { t: 't' }>): void {
    if (this.#pending && !entry.h && !entry.l && !this.#pending.h && !this.#pending.l) {
      this.#pending.text += entry.text;
      return;
    }
    this.#pending = { ...entry };
    const sent = this.#pending;
    this.#tail = this.#tail.then(() => {
      if (this.#pending === sent) this.#pending = undefined;
      return this.#deliver(sent);
    });
  }

  /** Sends the end entry after everything before it; resolves once it is sent (or could not be). */
  end(entry: Extract<Entry, { t: 'e' }>): Promise<void> {
    this.#send(entry);
    return this.#tail;
  }

  #send(entry: Entry): void {
    this.#tail = this.#tail.then(() => this.#deliver(entry));
  }

  async #deliver(entry: Entry): Promise<void> {
    if (this.#fenced) return;
    const deadline = Date.now() + RETRY_FOR_MS;
    for (let pause = 50; ; pause = Math.min(pause * 2, 500)) {
      try {
        this.calls++;
        const status = await this.#link.run(EMIT, [...this.#args, entry.t, JSON.stringify(entry), JOB_TTL_MS]);
        if (status === 0) {
          this.#fenced = true;
          this.#stop('fenced');
        } else if (status === 2) this.#stop('asked');
        return;
      } catch (err) {
        if (!(err instanceof Error) || err.name !== 'STORE_UNAVAILABLE' || Date.now() > deadline) {
          this.#fenced = true;
          this.#stop('unreachable');
          return;
        }
      }
      await delay(pause);
    }
  }
}
