import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { BufferLimits, BufferStore } from './buffer-store.js';
import { MemoryBufferStore } from './memory-store.js';
import { RedisPeers } from './fleet/peers.js';
import { RedisLink } from './redis/link.js';
import { RedisBufferStore } from './redis/store.js';

/** Which buffer store to open, and how. */
export interface StoreOptions {
  /** "memory" (this process) or "redis" (shared by every instance using the same Redis). */
  kind: 'memory' | 'redis';
  limits: BufferLimits;
  redis: {
    /** redis://... or rediss://...; required with kind "redis". */
    url: string | null;
    keyPrefix: string;
    leaseMs: number;
    retryMs: number;
    maxBlockingReads: number;
    /** How long a command waits for Redis's reply. */
    commandTimeoutMs?: number;
  };
}

/** The buffer store a server uses, with the fleet it belongs to when the store is shared. */
export interface OpenStore {
  store: BufferStore;
  /**
   * Present with the Redis store: the connection, this instance's id in the fleet, and its peers
   * (they reach the streams the other instances generate; the shared queue adds to them).
   */
  redis?: { link: RedisLink; instanceId: string; peers: RedisPeers };
  /** Closes the peers, the store and their connections; shared buffers stay in Redis. */
  close(): Promise<void>;
}

/**
 * Opens the buffer store `options.kind` names: in memory (the default), or shared by every
 * instance through Redis. Throws a clear error when Redis cannot be reached.
 */
export async function openStore(options: StoreOptions, log: Logger): Promise<OpenStore> {
  const { limits } = options;
  if (options.kind === 'memory') {
    const store = new MemoryBufferStore({ limits });
    return { store, close: () => store.close() };
  }
  const { url, keyPrefix, leaseMs, retryMs, maxBlockingReads, commandTimeoutMs } = options.redis;
  if (url === null) throw new Error('streams.store is "redis" but no Redis URL is set: give --redis URL or the setting redis.url');
  const link = await RedisLink.open({ url, keyPrefix, log, ...(commandTimeoutMs ? { commandTimeoutMs } : {}) });
  const instanceId = `${process.pid}-${randomBytes(6).toString('hex')}`;
  const store = new RedisBufferStore({ link, limits, instanceId, leaseMs, retryMs, maxBlockingReads });
  let peers: RedisPeers;
  try {
    peers = await RedisPeers.start({ link, instanceId, leaseMs, retryMs, bufferTimeoutMs: limits.bufferTimeoutMs, log });
  } catch (err) {
    await store.close();
    link.close();
    throw link.unavailable(err);
  }
  log.info({ redis: link.where, instance: instanceId }, 'stream buffers are shared through Redis');
  return {
    store,
    redis: { link, instanceId, peers },
    close: async () => {
      await peers.close();
      await store.close();
      link.close();
    },
  };
}
