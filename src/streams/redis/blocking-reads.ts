import type { Redis } from 'ioredis';
import type { RedisLink } from './link.js';

/** What XREAD answers: per stream, its entries as [id, [field, value, ...]]. */
export type StreamRead = Array<[string, Array<[string, string[]]>]>;

interface Reader {
  redis: Redis;
  /** Its CLIENT ID, for CLIENT UNBLOCK; fetched again after each reconnection. */
  clientId: number | undefined;
}

/**
 * Blocking reads (XREAD BLOCK) for long polls. A blocked connection can do nothing else, so each
 * read gets a connection of its own from a pool that grows up to `max`; reads beyond that wait
 * for one to come back, first in, first out. A read whose caller gives up is unblocked at once
 * with CLIENT UNBLOCK, which frees its connection.
 */
export class BlockingReads {
  readonly #link: RedisLink;
  readonly #max: number;
  readonly #idle: Reader[] = [];
  readonly #all = new Set<Reader>();
  readonly #queue: Array<(reader: Reader) => void> = [];
  #opening = 0;
  #closed = false;

  constructor(link: RedisLink, max: number) {
    this.#link = link;
    this.#max = max;
  }

  /**
   * Resolves once one of `streams` (Redis Streams, each with the id its entries are read after) has
   * an entry after that id, after `timeoutMs`, or when `signal` aborts, with the entries read (null
   * when none came). Rejects when Redis cannot be reached.
   */
  async waitFor(streams: Array<[key: string, afterId: string]>, timeoutMs: number, signal?: AbortSignal): Promise<StreamRead | null> {
    const deadline = Date.now() + timeoutMs;
    const reader = await this.#acquire(signal);
    if (!reader) return null;
    const remaining = deadline - Date.now();
    const unblock = (): void => this.#unblock(reader);
    signal?.addEventListener('abort', unblock, { once: true });
    let timer: NodeJS.Timeout | undefined;
    try {
      if (remaining <= 0 || signal?.aborted) return null;
      // A read Redis does not answer within its block time plus the command timeout (a stall) fails; its connection is dropped.
      const silent = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          this.#all.delete(reader);
          reader.redis.disconnect();
          reject(new Error('Command timed out (a blocking read)'));
        }, remaining + this.#link.commandTimeoutMs);
      });
      return await Promise.race([
        reader.redis.xread('BLOCK', remaining, 'STREAMS', ...streams.map(([key]) => key), ...streams.map(([, id]) => id)),
        silent,
      ]);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', unblock);
      this.#release(reader);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const reader of this.#all) reader.redis.disconnect();
    this.#all.clear();
    this.#idle.length = 0;
  }

  /** A free connection, or undefined when the signal aborted while waiting for one. */
  async #acquire(signal: AbortSignal | undefined): Promise<Reader | undefined> {
    const idle = this.#idle.pop();
    if (idle) return idle;
    if (this.#all.size + this.#opening < this.#max) return this.#open();
    return new Promise<Reader | undefined>((resolve) => {
      const onAbort = (): void => {
        this.#queue.splice(this.#queue.indexOf(take), 1);
        resolve(undefined);
      };
      const take = (reader: Reader): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve(reader);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(take);
    });
  }

  async #open(): Promise<Reader> {
    this.#opening++;
    try {
      const redis = await this.#link.duplicate('rkllm-mcp:blocking');
      const reader: Reader = { redis, clientId: undefined };
      const identify = (): void => {
        redis.client('ID').then(
          (id) => (reader.clientId = id),
          () => (reader.clientId = undefined),
        );
      };
      redis.on('ready', identify);
      identify();
      this.#all.add(reader);
      if (this.#closed) redis.disconnect();
      return reader;
    } finally {
      this.#opening--;
    }
  }

  #release(reader: Reader): void {
    if (this.#closed || !this.#all.has(reader)) return;
    const next = this.#queue.shift();
    if (next) next(reader);
    else this.#idle.push(reader);
  }

  #unblock(reader: Reader): void {
    if (reader.clientId === undefined) return;
    // If it fails, the read ends at its own deadline instead: nothing is lost but a connection's time.
    this.#link.redis.client('UNBLOCK', reader.clientId).catch(() => {});
  }
}
