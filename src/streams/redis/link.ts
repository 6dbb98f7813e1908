import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis, ReplyError, type RedisOptions } from 'ioredis';
import { fault, ServerError } from '../../errors.js';

/** How long one connection attempt may take before it counts as failed. */
const CONNECT_TIMEOUT_MS = 5_000;
/** The longest pause between two reconnection attempts: instances may come back from an outage that much apart. */
export const RECONNECT_MAX_MS = 1_000;

/** Options every connection of the store shares: fail fast while Redis is away, reconnect in the background. */
function connectionOptions(name: string): RedisOptions {
  return {
    lazyConnect: true,
    connectionName: name,
    connectTimeout: CONNECT_TIMEOUT_MS,
    // Commands sent while Redis is away fail at once, so callers report it instead of hanging.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt: number) => Math.min(attempt * 100, RECONNECT_MAX_MS),
  };
}

/** Where Redis is, for messages: the URL without its credentials. */
function describe(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname === '/' ? '' : parsed.pathname}`;
  } catch {
    return 'redis';
  }
}

/**
 * Connects one Redis connection, failing with a clear message when Redis cannot be reached. Once
 * connected it reconnects by itself; commands sent meanwhile fail at once.
 */
export async function connect(url: string, name: string): Promise<Redis> {
  const redis = new Redis(url, connectionOptions(name));
  // The reason a connection attempt failed (ECONNREFUSED...); later, failures surface through the commands.
  let reason: Error | undefined;
  redis.on('error', (err: Error) => (reason = err));
  try {
    await redis.connect();
    return redis;
  } catch (err) {
    redis.disconnect();
    throw new Error(`Cannot connect to Redis at ${describe(url)}: ${(reason ?? (err as Error)).message}`);
  }
}

/** An error Redis replied (a bad command, a failing script), as opposed to a failure to reach it. */
function isReplyError(err: unknown): boolean {
  return err instanceof (ReplyError as typeof Error);
}

/** True for errors of the connection (Redis away, connection closed), as opposed to errors Redis replied. */
function isConnectionError(err: unknown): boolean {
  return err instanceof Error && !isReplyError(err) && !(err instanceof ServerError);
}

/**
 * Runs `attempt` until it succeeds, retrying while it fails with STORE_UNAVAILABLE (Redis away),
 * until `deadline` (a `Date.now()` time) or `signal`; pauses double from 50 ms to 500 ms.
 */
export async function retrying<T>(attempt: () => Promise<T>, deadline: number, signal?: AbortSignal): Promise<T> {
  for (let pause = 50; ; pause = Math.min(pause * 2, 500)) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof ServerError && err.name === 'STORE_UNAVAILABLE') || Date.now() >= deadline || signal?.aborted) throw err;
    }
    await delay(pause, undefined, { signal }).catch(() => {});
  }
}

/** A Lua script run by its SHA1, loaded on first use and again after Redis forgot it (a restart). */
export class Script {
  readonly #source: string;
  readonly #sha: string;

  constructor(source: string) {
    this.#source = source;
    this.#sha = createHash('sha1').update(source).digest('hex');
  }

  async run(redis: Redis, args: Array<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(this.#sha, 0, ...args);
    } catch (err) {
      if (!isReplyError(err) || !(err as Error).message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(this.#source, 0, ...args);
    }
  }
}

export interface RedisLinkOptions {
  url: string;
  /** Every key starts with this, so several deployments can share one Redis. */
  keyPrefix: string;
  /** The clock, in ms; tests pass their own. Defaults to this machine's clock set to Redis's time. */
  now?: () => number;
}

/**
 * The command connection of one server to the shared Redis, with what the store and the fleet
 * need around it: the key prefix, a clock that all instances share, new connections for blocking
 * reads and subscriptions, and when the connection last came back from an outage.
 */
export class RedisLink {
  readonly redis: Redis;
  readonly prefix: string;
  readonly now: () => number;
  readonly url: string;
  /** Where Redis is, for logs and messages: the URL without credentials. */
  readonly where: string;
  /** When the connection last became ready again after being lost; 0 if it never was lost. */
  #recoveredAt = 0;
  #lost = false;

  private constructor(redis: Redis, options: RedisLinkOptions, now: () => number) {
    this.redis = redis;
    this.prefix = options.keyPrefix;
    this.url = options.url;
    this.where = describe(options.url);
    this.now = now;
    redis.on('close', () => (this.#lost = true));
    redis.on('ready', () => {
      if (!this.#lost) return;
      this.#lost = false;
      this.#recoveredAt = this.now();
    });
  }

  /** Connects; throws a clear error when Redis cannot be reached. */
  static async open(options: RedisLinkOptions): Promise<RedisLink> {
    const redis = await connect(options.url, 'rkllm-mcp');
    try {
      const now = options.now ?? (await redisClock(redis));
      return new RedisLink(redis, options, now);
    } catch (err) {
      redis.disconnect();
      throw err;
    }
  }

  /** A new connection to the same Redis (blocking reads and subscriptions need their own). */
  duplicate(name: string): Promise<Redis> {
    return connect(this.url, name);
  }

  /**
   * True when the connection has been up for at least `ms`. Leases and expiry are judged only
   * then, so owners and pollers get that long to catch up after an outage before anything is
   * declared dead.
   */
  stableFor(ms: number): boolean {
    return this.redis.status === 'ready' && this.now() - this.#recoveredAt >= ms;
  }

  /** Runs a script of the store with the key prefix as its first argument; a failure to reach Redis throws STORE_UNAVAILABLE. */
  async run(script: Script, args: Array<string | number>): Promise<unknown> {
    try {
      return await script.run(this.redis, [this.prefix, ...args]);
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  /** Turns a failure to reach Redis into the error clients see; other errors pass through. */
  unavailable(err: unknown): Error {
    if (!isConnectionError(err)) return err instanceof Error ? err : new Error(String(err));
    return fault('STORE_UNAVAILABLE', 'unreachable', { where: this.where, reason: (err as Error).message });
  }

  close(): void {
    this.redis.disconnect();
  }
}

/** This machine's clock shifted to Redis's, so instances judge leases and expiry by one time. */
async function redisClock(redis: Redis): Promise<() => number> {
  const before = Date.now();
  const [seconds, micros] = await redis.time();
  const after = Date.now();
  const offset = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - (before + after) / 2;
  return () => Date.now() + offset;
}
