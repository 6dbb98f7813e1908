import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Settings } from '../settings.js';
import type { BufferLimits, BufferStore } from './buffer-store.js';
import type { Peers } from './peers.js';
import { MemoryBufferStore } from './memory-store.js';
import { RedisPeers } from './redis/peers.js';
import { RedisLink } from './redis/link.js';
import { RedisBufferStore } from './redis/store.js';

/** The buffer store a server uses, with the cluster it belongs to when the store is shared. */
export interface OpenStore {
  store: BufferStore;
  /** Present with the Redis store: reaches the streams the other instances generate. */
  cluster?: Peers;
  /** Closes the cluster, the store and their connections; shared buffers stay in Redis. */
  close(): Promise<void>;
}

function limitsOf(settings: Settings): BufferLimits {
  const s = settings.streams;
  return { maxBuffers: s.max_buffers, maxBufferBytes: s.max_buffer_bytes, bufferTimeoutMs: s.buffer_timeout_s * 1000 };
}

/**
 * Opens the buffer store the settings choose: in memory (the default), or shared by every
 * instance through Redis (`streams.store: "redis"`, `redis.url`). Throws a clear error when Redis
 * cannot be reached.
 */
export async function openStore(settings: Settings, log: Logger): Promise<OpenStore> {
  const limits = limitsOf(settings);
  if (settings.streams.store === 'memory') {
    const store = new MemoryBufferStore({ limits });
    return { store, close: () => store.close() };
  }
  const { url, key_prefix: keyPrefix, lease_ms: leaseMs, retry_ms: retryMs, max_blocking_connections: maxBlockingReads } = settings.redis;
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
    close: async () => {
      await cluster.close();
      await store.close();
      link.close();
    },
  };
}
