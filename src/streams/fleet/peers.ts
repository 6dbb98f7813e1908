import type { Logger } from 'pino';
import { emptyPerf } from '../../engine/types.js';
import { errorObject, fault } from '../../errors.js';
import { chunkBytes, streamNotFound, type BufferGone } from '../buffer-store.js';
import type { Chunk, Stream } from '../stream.js';
import { Leases } from '../redis/leases.js';
import type { RedisLink } from '../redis/link.js';
import type { Fleet } from './fleet.js';
import { ABORT, EXPIRE_LEASES, HEARTBEAT } from './scripts.js';

/** Leases ended per script call. */
const LEASE_BATCH = 100;

export interface RedisPeersOptions {
  link: RedisLink;
  instanceId: string;
  /** How long a lease lasts; owners renew theirs three times per lease, others check twice. */
  leaseMs: number;
  /** The buffer timeout: a final chunk written by a lease check lives twice as long in Redis. */
  bufferTimeoutMs: number;
  /**
   * How long the store retries a chunk while Redis is away. A stream that ended here keeps its
   * lease renewed while its last chunks may still be retried (twice this, plus a lease).
   */
  retryMs: number;
  log: Logger;
}

interface Owned {
  stream: Stream;
  /** When the stream ended here (its final chunk may not be stored yet); undefined while it runs. */
  endedAt: number | undefined;
}

type Heartbeat = 'ok' | 'abort' | 'ended' | 'gone' | 'lost';

/**
 * The peers of one instance on a shared Redis (one Redis server, not Redis Cluster). Each instance
 * leases the streams it generates (see `Leases`), hears abort requests on a channel of its own,
 * and ends, with an error chunk, the streams of owners whose lease ran out (they died, or lost
 * Redis for longer than a lease).
 */
export class RedisPeers implements Fleet {
  readonly #options: RedisPeersOptions;
  readonly #link: RedisLink;
  readonly #owned = new Map<string, Owned>();
  #leases: Leases | undefined;

  private constructor(options: RedisPeersOptions) {
    this.#options = options;
    this.#link = options.link;
  }

  static async start(options: RedisPeersOptions): Promise<RedisPeers> {
    const { link, instanceId, leaseMs, log } = options;
    const peers = new RedisPeers(options);
    peers.#leases = await Leases.start({
      link,
      name: 'rkllm-mcp:control',
      channels: [`${link.prefix}ctl:${instanceId}`],
      onMessage: (_channel, streamId) => peers.#abortLocal(streamId),
      leaseMs,
      renew: () => peers.#heartbeat(),
      reap: () => peers.#expireLeases(),
      reapAfterMs: leaseMs,
      onRound: (task, err) => err && log.warn({ err }, `peers: ${task} failed; retrying`),
    });
    return peers;
  }

  own(stream: Stream): void {
    const owned: Owned = { stream, endedAt: undefined };
    this.#owned.set(stream.id, owned);
    void stream.ended.then(() => (owned.endedAt = Date.now()));
  }

  async abort(streamId: string): Promise<boolean> {
    const reply = (await this.#link.run(ABORT, [streamId])) as ['gone', BufferGone] | ['none'] | ['asked', number];
    if (reply[0] === 'gone') throw streamNotFound(streamId, reply[1], this.#options.bufferTimeoutMs);
    if (reply[0] === 'asked' && reply[1] === 0) {
      this.#options.log.warn(
        { stream_id: streamId },
        'abort requested, but the owning instance is not listening; its lease will end the stream',
      );
    }
    return reply[0] === 'asked';
  }

  async close(): Promise<void> {
    this.#leases?.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Renews the leases of the streams generated here, and acts on what the store says of them. */
  async #heartbeat(): Promise<void> {
    const graceEnd = Date.now() - (this.#options.retryMs * 2 + this.#options.leaseMs);
    for (const [id, owned] of this.#owned) if (owned.endedAt !== undefined && owned.endedAt < graceEnd) this.#owned.delete(id);
    await this.#link.checkEpoch();
    const ids = [...this.#owned.keys()];
    if (ids.length === 0) return;
    const statuses = (await this.#link.run(HEARTBEAT, [this.#options.leaseMs, ...ids])) as Heartbeat[];
    ids.forEach((id, i) => {
      const status = statuses[i];
      if (status === 'abort') this.#abortLocal(id);
      if (status !== 'ended' && status !== 'gone') return;
      // Ended in the store (its final chunk stored, or its lease judged lost) or dropped: nobody reads more.
      this.#owned.get(id)?.stream.abort();
      this.#owned.delete(id);
    });
  }

  /** Ends the streams whose owner stopped renewing its lease. */
  async #expireLeases(): Promise<void> {
    const final = this.#ownerLostChunk();
    const args = [this.#link.now(), JSON.stringify(final), chunkBytes(final), this.#options.bufferTimeoutMs * 2, LEASE_BATCH];
    const ended = (await this.#link.run(EXPIRE_LEASES, args)) as string[];
    if (ended.length > 0) this.#options.log.warn({ stream_ids: ended }, 'ended streams whose owning instance stopped renewing its lease');
  }

  #ownerLostChunk(): Chunk {
    const error = fault('STREAM_OWNER_LOST', 'lease', { lease_ms: this.#options.leaseMs });
    return { seq: 0, delta: '', end: true, finish_reason: 'error', perf: emptyPerf(), error: errorObject(error) };
  }

  #abortLocal(streamId: string): void {
    const owned = this.#owned.get(streamId);
    if (!owned) return;
    this.#options.log.info({ stream_id: streamId }, 'aborting a stream at the request of another instance');
    owned.stream.abort();
  }
}
