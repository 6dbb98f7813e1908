import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { BufferLimits, BufferStore } from './buffer-store.js';
import type { Peers } from './peers.js';
import { MemoryBufferStore } from './memory-store.js';
import { RedisPeers } from './redis/peers.js';
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
  };
}

/** The buffer store a server uses, with the cluster it belongs to when the store is shared. */
export interface OpenStore {
  store: BufferStore;
  /** Present with the Redis store: reaches the streams the other instances generate. */
  cluster?: Peers;
  /** Present with the Redis store: the connection, and this instance's id in the cluster (a fleet shares them). */
  redis?: { link: RedisLink; instanceId: string };
  /** Closes the cluster, the store and their connections; shared buffers stay in Redis. */
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
  const { url, keyPrefix, leaseMs, retryMs, maxBlockingReads } = options.redis;
  if (url === null) throw new Error('streams.store is "redis" but no Redis URL is set: give --redis URL or the setting redis.url');
  const link = await RedisLink.open({ url, keyPrefix });
  const instanceId = `${process.pid}-${randomBytes(6).toString('hex')}`;
  const store = new RedisBufferStore({ link, limits, instanceId, leaseMs, retryMs, maxBlockingReads });
  let cluster: RedisPeers;
  try {
    cluster = await RedisPeers.start({ link, instanceId, leaseMs, retryMs, bufferTimeoutMs: limits.bufferTimeoutMs, log });
  } catch (err) {
    await store.close();
    link.close();
    throw link.unavailable(err);
  }
  log.info({ redis: link.where, instance: instanceId }, 'stream buffers are shared through Redis');
  return {
    store,
    cluster,
    redis: { link, instanceId },
    close: async () => {
      await cluster.close();
      await store.close();
      link.close();
    },
  };
}
