import { fault } from '../errors.js';
import {
  chunkBytes,
  streamNotFound,
  type AppendResult,
  type BufferLimits,
  type BufferStore,
  type CreateOptions,
  type PollResult,
  type StoreStatus,
} from './buffer-store.js';
import type { Chunk } from './stream.js';

/** What the in-memory store keeps of one stream. */
interface StoredStream {
  requestKey: string | undefined;
  /** Unacknowledged chunks, in seq order. */
  chunks: Chunk[];
  /** The last acknowledged seq (-1: none). */
  acked: number;
  /** The last seq appended (-1: none). */
  lastSeq: number;
  ended: boolean;
  bytes: number;
  lastAccess: number;
  waiters: Set<() => void>;
}

type Gone = 'expired' | 'released';

/** How many ended stream ids are remembered, so a late poll hears "expired"/"released", not "unknown". */
const TOMBSTONES = 10_000;

export interface MemoryStoreOptions {
  limits: BufferLimits;
  /** The clock, in milliseconds; tests pass their own to control expiry without sleeping. */
  now?: () => number;
}

/** The default, in-process buffer store. */
export class MemoryBufferStore implements BufferStore {
  readonly limits: BufferLimits;
  readonly #now: () => number;
  readonly #buffers = new Map<string, StoredStream>();
  readonly #gone = new Map<string, Gone>();
  #bytes = 0;

  constructor(options: MemoryStoreOptions) {
    this.limits = options.limits;
    this.#now = options.now ?? Date.now;
  }

  async create(streamId: string, options: CreateOptions = {}): Promise<void> {
    if (this.#buffers.has(streamId)) throw fault('INTERNAL_ERROR', 'duplicate_buffer', { stream_id: streamId });
    if (this.#buffers.size >= this.limits.maxBuffers) {
      const max = this.limits.maxBuffers;
      throw fault('TOO_MANY_STREAMS', 'local', { max_buffers: max }, { max_buffers: max, retry_after: 1 });
    }
    this.#buffers.set(streamId, {
      requestKey: options.requestKey,
      chunks: [],
      acked: -1,
      lastSeq: -1,
      ended: false,
      bytes: 0,
      lastAccess: this.#now() - (options.idleMs ?? 0),
      waiters: new Set(),
    });
  }

  async append(streamId: string, chunk: Chunk): Promise<AppendResult> {
    const buffer = this.#buffers.get(streamId);
    // A buffer that expired or was released while its generation still ran: nobody reads it.
    if (!buffer || buffer.ended) return { full: true };
    const bytes = chunkBytes(chunk);
    buffer.chunks.push(chunk);
    buffer.lastSeq = chunk.seq;
    buffer.ended = chunk.end;
    buffer.bytes += bytes;
    this.#bytes += bytes;
    this.#wake(buffer);
    return { full: buffer.bytes >= this.limits.maxBufferBytes };
  }

  async poll(streamId: string, afterSeq?: number): Promise<PollResult> {
    const buffer = this.#get(streamId);
    buffer.lastAccess = this.#now();
    if (afterSeq === undefined) {
      const chunks = buffer.chunks.slice();
      this.#ack(streamId, buffer, buffer.lastSeq);
      return { chunks };
    }
    if (afterSeq > buffer.lastSeq) {
      throw fault('INVALID_PARAMS', 'after_seq_beyond', { after_seq: afterSeq, last_seq: buffer.lastSeq }, { last_seq: buffer.lastSeq });
    }
    if (afterSeq < buffer.acked) {
      throw fault('INVALID_PARAMS', 'after_seq_released', { after_seq: afterSeq, acked_seq: buffer.acked }, { acked_seq: buffer.acked });
    }
    this.#ack(streamId, buffer, afterSeq);
    return { chunks: buffer.chunks.slice() };
  }

  async touch(streamId: string): Promise<void> {
    const buffer = this.#buffers.get(streamId);
    if (buffer) buffer.lastAccess = this.#now();
  }

  async peek(streamId: string): Promise<Chunk[]> {
    return this.#get(streamId).chunks.slice();
  }

  async wait(streamId: string, afterSeq: number | undefined, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const buffer = this.#get(streamId);
    const ready = (): boolean => buffer.ended || buffer.lastSeq > (afterSeq ?? buffer.acked);
    if (ready() || timeoutMs <= 0 || signal?.aborted) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        buffer.waiters.delete(wake);
        resolve();
      };
      const wake = (): void => {
        if (ready()) done();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', done, { once: true });
      buffer.waiters.add(wake);
    });
  }

  async findByRequest(key: string): Promise<string[]> {
    const ids: string[] = [];
    for (const [id, buffer] of this.#buffers) if (buffer.requestKey === key) ids.push(id);
    return ids;
  }

  async sweep(): Promise<string[]> {
    const cutoff = this.#now() - this.limits.bufferTimeoutMs;
    const expired: string[] = [];
    for (const [id, buffer] of this.#buffers) {
      if (buffer.lastAccess <= cutoff) {
        expired.push(id);
        this.#drop(id, buffer, 'expired');
      }
    }
    return expired;
  }

  async delete(streamId: string): Promise<void> {
    const buffer = this.#buffers.get(streamId);
    if (buffer) this.#drop(streamId, buffer, 'released');
  }

  async status(): Promise<StoreStatus> {
    return { active_buffers: this.#buffers.size, buffered_bytes: this.#bytes };
  }

  /** Releases every buffer, waking whoever waits on one. Idempotent. */
  async close(): Promise<void> {
    for (const [id, buffer] of this.#buffers) this.#drop(id, buffer, 'released');
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #get(streamId: string): StoredStream {
    const buffer = this.#buffers.get(streamId);
    if (buffer) return buffer;
    throw streamNotFound(streamId, this.#gone.get(streamId) ?? 'unknown', this.limits.bufferTimeoutMs);
  }

  /** Drops chunks up to `seq`; releases the buffer once its final chunk is acknowledged. */
  #ack(streamId: string, buffer: StoredStream, seq: number): void {
    if (seq <= buffer.acked) return;
    let dropped = 0;
    while (buffer.chunks.length > 0 && buffer.chunks[0]!.seq <= seq) dropped += chunkBytes(buffer.chunks.shift()!);
    buffer.bytes -= dropped;
    this.#bytes -= dropped;
    buffer.acked = seq;
    if (buffer.ended && seq >= buffer.lastSeq) this.#drop(streamId, buffer, 'released');
  }

  #drop(streamId: string, buffer: StoredStream, why: Gone): void {
    this.#buffers.delete(streamId);
    this.#bytes -= buffer.bytes;
    buffer.ended = true;
    this.#wake(buffer);
    this.#gone.set(streamId, why);
    if (this.#gone.size > TOMBSTONES) this.#gone.delete(this.#gone.keys().next().value!);
  }

  #wake(buffer: StoredStream): void {
    for (const wake of [...buffer.waiters]) wake();
  }
}
