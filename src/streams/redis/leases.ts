import type { Redis } from 'ioredis';
import type { RedisLink } from './link.js';

export interface LeasesOptions {
  link: RedisLink;
  /** The connection name of its subscriber. */
  name: string;
  /** The channels it hears (abort requests, wake-ups), and what it does with a message. */
  channels: string[];
  onMessage: (channel: string, message: string) => void;
  leaseMs: number;
  /** Renews the holder's leases (and hears which it lost): at start, every third of a lease, and as soon as Redis is back. */
  renew: () => Promise<void>;
  /** Takes back, every half lease, the leases of other holders that ran out; not until Redis has been back for `reapAfterMs`. */
  reap: () => Promise<void>;
  reapAfterMs: number;
  /** Told how each round of a task went (`err` undefined: Redis answered). */
  onRound: (task: string, err?: unknown) => void;
}

/** What a task returns for a round that did not ask Redis: no news of it, so not reported. */
export const SKIPPED = Symbol('skipped');

/**
 * The fleet's one lease primitive, held by the peers (the streams generated here) and by the fleet
 * executor (the runs it claimed). Each lease is a member of a Redis sorted set scored by when it
 * runs out (the Lua `renew` and `expired` of scripts.ts); the holder renews its own, and every
 * instance takes back those that ran out, so a dead holder's work is ended or retried with no
 * coordinator. It also hears the holder's control channels. Each periodic task runs one round at
 * a time: a round still under way when the next is due skips it.
 */
export class Leases {
  readonly #o: LeasesOptions;
  readonly #subscriber: Redis;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #busy = new Set<string>();
  #stopListening = (): void => {};

  private constructor(options: LeasesOptions, subscriber: Redis) {
    this.#o = options;
    this.#subscriber = subscriber;
  }

  /** Subscribes, renews once (a failure throws STORE_UNAVAILABLE), and starts renewing and reaping. */
  static async start(options: LeasesOptions): Promise<Leases> {
    const { link, leaseMs } = options;
    const subscriber = await link.duplicate(options.name);
    const leases = new Leases(options, subscriber);
    subscriber.on('message', (channel: string, message: string) => options.onMessage(channel, message));
    try {
      await subscriber.subscribe(...options.channels);
      await options.renew();
    } catch (err) {
      subscriber.disconnect();
      throw link.unavailable(err);
    }
    leases.every(leaseMs / 3, 'renew', options.renew);
    // Back from an outage: renew at once, before other instances judge the leases that ran out meanwhile.
    const renewNow = (): void => leases.now('renew', options.renew);
    link.redis.on('ready', renewNow);
    leases.#stopListening = () => link.redis.off('ready', renewNow);
    // A round skipped (Redis not back for long enough) is no news of Redis: it is not reported.
    leases.every(leaseMs / 2, 'reap', async () => (link.stableFor(options.reapAfterMs) ? options.reap() : SKIPPED));
    return leases;
  }

  /** Runs `task` every `ms`, one round at a time. */
  every(ms: number, name: string, task: () => Promise<unknown>): void {
    const timer = setInterval(() => this.now(name, task), ms);
    timer.unref();
    this.#timers.push(timer);
  }

  /** Runs a round of `task` now, unless one is under way or the leases are closed. */
  now(name: string, task: () => Promise<unknown>): void {
    if (this.#busy.has(name) || this.#timers.length === 0) return;
    this.#busy.add(name);
    task()
      .then((done) => done !== SKIPPED && this.#o.onRound(name))
      .catch((err: unknown) => this.#o.onRound(name, err))
      .finally(() => this.#busy.delete(name));
  }

  /** Stops the periodic tasks and the subscription. Idempotent. */
  close(): void {
    for (const timer of this.#timers.splice(0)) clearInterval(timer);
    this.#stopListening();
    this.#subscriber.disconnect();
  }
}
