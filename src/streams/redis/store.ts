import { errorObject, fault, ServerError } from '../../errors.js';
import {
  chunkBytes,
  streamNotFound,
  type AppendResult,
  type BufferGone,
  type BufferLimits,
  type BufferStore,
  type CreateOptions,
  type PollResult,
  type StoreStatus,
} from '../buffer-store.js';
import type { Chunk } from '../stream.js';
import { BlockingReads } from './blocking-reads.js';
import { retrying, type RedisLink } from './link.js';
import { APPEND, CREATE, DELETE, READ, STATUS, SWEEP, TOUCH } from './scripts.js';

/** How long Redis remembers that a buffer expired or was released, so late polls hear why. */
const TOMBSTONE_MS = 3_600_000;
/** Expired buffers dropped per sweep script call. */
const SWEEP_BATCH = 100;

export interface RedisStoreOptions {
  link: RedisLink;
  limits: BufferLimits;
  /** This server's id in the fleet, recorded as the owner of the streams it generates. */
  instanceId: string;
  /** How long a lease lasts before an owner that did not renew it counts as dead. */
  leaseMs: number;
  /** How long an append keeps retrying while Redis is away before the stream is given up. */
  retryMs: number;
  /** Connections for blocking reads (long polls) at most. */
  maxBlockingReads: number;
}

/** Seqs that could not be stored in a stream: from the first that failed to the last produced. */
interface Loss {
  first: number;
  last: number;
  /** Redis lost the buffer (and its data): the final chunk goes to a new buffer. */
  dataLost?: boolean;
}

function isUnavailable(err: unknown): boolean {
  return err instanceof ServerError && (err.name === 'STORE_UNAVAILABLE' || err.name === 'STORE_FULL');
}

function isDataLost(err: unknown): boolean {
  return err instanceof ServerError && err.name === 'STORE_DATA_LOST';
}

type Read = ['ok', string[]] | ['state', number, number, number] | ['gone', BufferGone] | ['beyond', number] | ['before', number];

/**
 * The buffer store shared by every instance of a fleet, on Redis Streams: each chunk is an
 * entry (XADD) whose id is its seq, polls read after an id (XRANGE) and trim what they
 * acknowledge (XTRIM), long polls block on their own connections (XREAD BLOCK), and every state
 * change runs as one Lua script, so the limits hold across instances.
 *
 * While Redis is away, an append keeps retrying for `retryMs`: a short outage loses nothing. Past
 * that it fails, and the seqs that could not be stored are reported in the stream's final chunk.
 */
export class RedisBufferStore implements BufferStore {
  readonly limits: BufferLimits;
  readonly #link: RedisLink;
  readonly #options: RedisStoreOptions;
  readonly #reads: BlockingReads;
  /** Streams generated here that lost chunks while Redis was away. */
  readonly #losses = new Map<string, Loss>();
  readonly #closing = new AbortController();
  #closed: Promise<void> | undefined;

  constructor(options: RedisStoreOptions) {
    this.limits = options.limits;
    this.#link = options.link;
    this.#options = options;
    this.#reads = new BlockingReads(options.link, options.maxBlockingReads);
  }

  async create(streamId: string, options: CreateOptions = {}): Promise<void> {
    const owner = options.generated ? this.#options.instanceId : '';
    const status = await this.#link.run(CREATE, [
      streamId,
      this.limits.maxBuffers,
      this.#expiresAt() - (options.idleMs ?? 0),
      options.requestKey ?? '',
      owner,
      this.#options.leaseMs,
    ]);
    if (status === 'exists') throw fault('INTERNAL_ERROR', 'duplicate_buffer', { stream_id: streamId });
    if (status === 'full') {
      const max = this.limits.maxBuffers;
      throw fault('TOO_MANY_STREAMS', 'fleet', { max_buffers: max }, { max_buffers: max, retry_after: 1 });
    }
  }

  async append(streamId: string, chunk: Chunk): Promise<AppendResult> {
    const loss = this.#losses.get(streamId);
    if (loss) return this.#appendAfterLoss(streamId, chunk, loss);
    try {
      return await this.#retrying(() => this.#add(streamId, chunk));
    } catch (err) {
      if (isUnavailable(err)) this.#losses.set(streamId, { first: chunk.seq, last: chunk.seq });
      if (!isDataLost(err)) throw err;
      const lost = { first: 0, last: chunk.seq, dataLost: true };
      this.#losses.set(streamId, lost);
      if (chunk.end) return this.#appendAfterLoss(streamId, chunk, lost);
      throw err;
    }
  }

  async poll(streamId: string, afterSeq?: number): Promise<PollResult> {
    const mode = afterSeq === undefined ? 'ack' : 'after';
    return { chunks: this.#chunks(streamId, await this.#read(streamId, mode, afterSeq ?? -1), afterSeq) };
  }

  async touch(streamId: string): Promise<void> {
    await this.#link.run(TOUCH, [streamId, this.#expiresAt(), this.#ttlMs()]);
  }

  async peek(streamId: string): Promise<Chunk[]> {
    return this.#chunks(streamId, await this.#read(streamId, 'peek', -1));
  }

  async wait(streamId: string, afterSeq: number | undefined, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const state = await this.#read(streamId, 'state', -1);
    if (state[0] !== 'state') throw this.#readError(streamId, state);
    const [, acked, last, ended] = state;
    const after = afterSeq ?? acked;
    if (ended === 1 || last > after || timeoutMs <= 0 || signal?.aborted) return;
    const key = `${this.#link.prefix}l:${streamId}`;
    try {
      await this.#reads.waitFor([[key, after < 0 ? '0-0' : `${after}-1`]], timeoutMs, signal);
    } catch (err) {
      throw this.#link.unavailable(err);
    }
  }

  async findByRequest(requestKey: string): Promise<string[]> {
    try {
      return await this.#link.redis.smembers(`${this.#link.prefix}r:${requestKey}`);
    } catch (err) {
      throw this.#link.unavailable(err);
    }
  }

  /**
   * Drops expired buffers, whoever created them. After an outage it waits until Redis has been
   * back for a lease, so pollers can return before their streams are judged abandoned.
   */
  async sweep(): Promise<string[]> {
    if (!this.#link.stableFor(this.#options.leaseMs)) return [];
    const expired: string[] = [];
    const rounds = Math.ceil(this.limits.maxBuffers / SWEEP_BATCH) + 1;
    for (let round = 0; round < rounds; round++) {
      const ids = (await this.#link.run(SWEEP, [this.#link.now(), TOMBSTONE_MS, SWEEP_BATCH])) as string[];
      expired.push(...ids);
      if (ids.length < SWEEP_BATCH) break;
    }
    return expired;
  }

  async delete(streamId: string): Promise<void> {
    await this.#link.run(DELETE, [streamId, TOMBSTONE_MS]);
  }

  async status(): Promise<StoreStatus> {
    const [buffers, bytes] = (await this.#link.run(STATUS, [])) as [number, number];
    return { active_buffers: buffers, buffered_bytes: bytes };
  }

  /** Stops retrying and closes the blocking connections. The shared buffers stay for the other instances. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#closing.abort();
      await this.#reads.close();
    })();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #add(streamId: string, chunk: Chunk): Promise<AppendResult> {
    const args = [streamId, chunk.seq, JSON.stringify(chunk), chunk.end ? 1 : 0, chunkBytes(chunk), this.#ttlMs()];
    const [status, bytes] = (await this.#link.run(APPEND, args)) as [number, number];
    if (status === -2) throw this.#dataLost(streamId, { first: 0, last: chunk.seq });
    return { full: status < 0 || bytes >= this.limits.maxBufferBytes };
  }

  /**
   * Once a chunk was lost, the stream is being stopped: later chunks are lost too, except the final
   * one, which reports the loss. It too is retried for `retryMs`; if Redis stays away longer, the
   * owner's lease runs out and another instance ends the stream with an error.
   */
  async #appendAfterLoss(streamId: string, chunk: Chunk, loss: Loss): Promise<AppendResult> {
    if (!chunk.end) {
      loss.last = chunk.seq;
      throw this.#lossError(loss);
    }
    const lost = { first: loss.first, last: Math.max(loss.first, chunk.seq - 1) };
    const error = loss.dataLost ? this.#dataLost(streamId, lost) : this.#lossError(lost);
    const final: Chunk = { ...chunk, finish_reason: 'error', error: errorObject(error) };
    try {
      // Redis lost the buffer: a new one holds the final chunk, so pollers hear why.
      if (loss.dataLost) await this.#retrying(() => this.create(streamId));
      return await this.#retrying(() => this.#add(streamId, final));
    } finally {
      this.#losses.delete(streamId);
    }
  }

  #dataLost(streamId: string, loss: Loss): ServerError {
    const seqs = loss.first === loss.last ? `${loss.first}` : `${loss.first} to ${loss.last}`;
    return fault('STORE_DATA_LOST', 'stream', { seqs }, { stream_id: streamId, first_lost_seq: loss.first, last_lost_seq: loss.last });
  }

  #lossError(loss: Loss): ServerError {
    const seqs = loss.first === loss.last ? `seq ${loss.first}` : `seqs ${loss.first} to ${loss.last}`;
    return fault(
      'STORE_UNAVAILABLE',
      'lost',
      { retry_ms: this.#options.retryMs, seqs },
      { first_lost_seq: loss.first, last_lost_seq: loss.last },
    );
  }

  /** Runs `attempt`, retrying it for `retryMs` while Redis is unreachable, until the store closes. */
  #retrying<T>(attempt: () => Promise<T>): Promise<T> {
    return retrying(attempt, Date.now() + this.#options.retryMs, this.#closing.signal);
  }

  async #read(streamId: string, mode: 'ack' | 'after' | 'peek' | 'state', afterSeq: number): Promise<Read> {
    const read = (await this.#link.run(READ, [streamId, mode, afterSeq, this.#expiresAt(), this.#ttlMs(), TOMBSTONE_MS])) as Read;
    // Gone without a trace: was it Redis that lost it?
    if (read[0] === 'gone' && read[1] === 'unknown') await this.#link.checkEpoch();
    return read;
  }

  #chunks(streamId: string, read: Read, afterSeq?: number): Chunk[] {
    if (read[0] !== 'ok') throw this.#readError(streamId, read, afterSeq);
    return read[1].map((json) => JSON.parse(json) as Chunk);
  }

  #readError(streamId: string, read: Read, afterSeq = -1): ServerError {
    switch (read[0]) {
      case 'beyond':
        return fault('INVALID_PARAMS', 'after_seq_beyond', { after_seq: afterSeq, last_seq: read[1] }, { last_seq: read[1] });
      case 'before':
        return fault('INVALID_PARAMS', 'after_seq_released', { after_seq: afterSeq, acked_seq: read[1] }, { acked_seq: read[1] });
      case 'gone':
        if (read[1] === 'unknown' && this.#link.lostDataAt > 0)
          return fault('STORE_DATA_LOST', 'gone', { stream_id: streamId }, { stream_id: streamId });
        return streamNotFound(streamId, read[1], this.limits.bufferTimeoutMs);
      default:
        return fault('INTERNAL_ERROR', 'store_reply', { reply: read[0] });
    }
  }

  #expiresAt(): number {
    return this.#link.now() + this.limits.bufferTimeoutMs;
  }

  /** The Redis TTL of a stream's chunks: a safety net twice the buffer timeout, in case no instance sweeps. */
  #ttlMs(): number {
    return this.limits.bufferTimeoutMs * 2;
  }
}
