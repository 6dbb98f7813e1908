import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis, ReplyError, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { fault, ServerError } from '../../errors.js';

/** How long one connection attempt may take before it counts as failed. */
const CONNECT_TIMEOUT_MS = 5_000;
/** The longest pause between two reconnection attempts: instances may come back from an outage that much apart. */
export const RECONNECT_MAX_MS = 1_000;
/** How long a command waits for Redis's reply by default (`redis.command_timeout_ms`). */
const DEFAULT_COMMAND_TIMEOUT_MS = 2_000;
/** How long Redis counts as full after it last refused a write for lack of memory (reads succeed meanwhile). */
const FULL_MS = 5_000;

/** Options every connection of the store shares: fail fast while Redis is away, reconnect in the background. */
function connectionOptions(name: string, commandTimeoutMs?: number): RedisOptions {
  return {
    ...(commandTimeoutMs ? { commandTimeout: commandTimeoutMs } : {}),
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
export async function connect(url: string, name: string, commandTimeoutMs?: number): Promise<Redis> {
  const redis = new Redis(url, connectionOptions(name, commandTimeoutMs));
  // The reason a connection attempt failed (ECONNREFUSED...); later, failures surface through the commands.
  let reason: Error | undefined;
  redis.on('error', (err: Error) => (reason = err));
  let timer: NodeJS.Timeout | undefined;
  try {
    // A Redis that accepts the connection but never answers (stalled, partitioned) fails the start too.
    const silent = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`it accepted the connection but did not answer within ${CONNECT_TIMEOUT_MS} ms`)),
        CONNECT_TIMEOUT_MS,
      );
    });
    await Promise.race([redis.connect(), silent]);
    return redis;
  } catch (err) {
    redis.disconnect();
    throw new Error(`Cannot connect to Redis at ${describe(url)}: ${(reason ?? (err as Error)).message}`);
  } finally {
    clearTimeout(timer);
  }
}

/** True for Redis's refusal to write past `maxmemory` (OOM), a reply error of its own. */
function isFull(err: unknown): boolean {
  return isReplyError(err) && /\bOOM\b/.test((err as Error).message);
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
      const waitable = err instanceof ServerError && (err.name === 'STORE_UNAVAILABLE' || err.name === 'STORE_FULL');
      if (!waitable || Date.now() >= deadline || signal?.aborted) throw err;
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
  /** How long a command may wait for Redis's reply before it fails as unreachable (`redis.command_timeout_ms`). */
  commandTimeoutMs?: number;
  /** Where changes of Redis's state (unreachable, full, its data lost, answering again) are logged, once each. */
  log?: Logger;
}

/** Sets the fleet's epoch if Redis has none (its data was lost, or it is new); returns the epoch it has. */
const EPOCH = new Script(`
local e = redis.call('GET', ARGV[1] .. 'epoch')
if e then return e end
redis.call('SET', ARGV[1] .. 'epoch', ARGV[2])
return ARGV[2]
`);

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
  /** How long a command waits for Redis's reply. */
  readonly commandTimeoutMs: number;
  /** When Redis last answered again after a trouble (lost, not answering, full); 0 if it never had one. */
  #recoveredAt = 0;
  #trouble: string | undefined;
  /** When Redis last refused a write for lack of memory. */
  #fullAt = -Infinity;
  #epoch = '';
  /** When this instance found that Redis had lost its data (0: never). */
  lostDataAt = 0;
  readonly #log: Logger | undefined;
  #closed = false;

  private constructor(redis: Redis, options: RedisLinkOptions, now: () => number) {
    this.redis = redis;
    this.prefix = options.keyPrefix;
    this.url = options.url;
    this.where = describe(options.url);
    this.now = now;
    this.#log = options.log;
    this.commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    redis.on('close', () => this.#closed || this.#troubled('unreachable'));
  }

  /** Connects; throws a clear error when Redis cannot be reached or does not answer. */
  static async open(options: RedisLinkOptions): Promise<RedisLink> {
    const redis = await connect(options.url, 'rkllm-mcp', options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS);
    try {
      const now = options.now ?? (await redisClock(redis));
      const link = new RedisLink(redis, options, now);
      await link.checkEpoch();
      return link;
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
    return this.redis.status === 'ready' && this.#trouble === undefined && this.now() - Math.max(this.#recoveredAt, this.#fullAt) >= ms;
  }

  /** Why Redis cannot be used now (unreachable, not answering, full), for `/health`; undefined while it answers. */
  get trouble(): string | undefined {
    const problem = this.problem;
    return problem && `Redis at ${this.where} is ${problem}`;
  }

  /** The trouble alone: unreachable, not answering, or full (out of memory: maxmemory reached). */
  get problem(): string | undefined {
    return this.#trouble ?? (this.now() - this.#fullAt < FULL_MS ? 'full (out of memory: maxmemory reached)' : undefined);
  }

  /**
   * Checks that Redis still holds the fleet's epoch (a key written when it had none). A new epoch
   * means Redis lost its data (a restart without persistence, FLUSHALL, a failover to a lagging
   * replica): logged, and remembered in `lostDataAt`, so lost streams are reported as such.
   */
  async checkEpoch(): Promise<void> {
    const epoch = (await this.run(EPOCH, [randomBytes(8).toString('hex')])) as string;
    if (this.#epoch !== '' && epoch !== this.#epoch) {
      this.lostDataAt = this.now();
      this.#log?.error(
        { redis: this.where },
        'Redis lost its data (restarted without persistence, flushed, or failed over): the streams and runs it held are gone',
      );
    }
    this.#epoch = epoch;
  }

  /** Runs a script of the store with the key prefix as its first argument; a failure to reach Redis throws STORE_UNAVAILABLE, a full Redis STORE_FULL. */
  async run(script: Script, args: Array<string | number>): Promise<unknown> {
    try {
      const reply = await script.run(this.redis, [this.prefix, ...args]);
      this.#answered();
      return reply;
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  /** Turns a failure to reach Redis into the error clients see (and notes the trouble); other errors pass through. */
  unavailable(err: unknown): Error {
    if (isFull(err)) {
      if (this.now() - this.#fullAt >= FULL_MS)
        this.#log?.warn({ redis: this.where }, 'Redis is full (out of memory: maxmemory reached): it refuses writes');
      this.#fullAt = this.now();
      return fault('STORE_FULL', 'full', { where: this.where }, { retry_after: 1 });
    }
    if (!isConnectionError(err)) return err instanceof Error ? err : new Error(String(err));
    this.#troubled(/timed out/i.test((err as Error).message) ? 'not answering' : 'unreachable');
    return fault('STORE_UNAVAILABLE', 'unreachable', { where: this.where, reason: (err as Error).message });
  }

  #troubled(what: string): void {
    if (this.#trouble === what) return;
    this.#trouble = what;
    this.#log?.warn({ redis: this.where }, `Redis is ${what}`);
  }

  #answered(): void {
    if (this.#trouble === undefined) return;
    this.#trouble = undefined;
    this.#recoveredAt = this.now();
    this.#log?.info({ redis: this.where }, 'Redis answers again');
  }

  close(): void {
    this.#closed = true;
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
