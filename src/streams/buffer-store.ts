import type { Chunk } from './stream.js';

/** Limits every buffer store enforces. Times are in milliseconds. */
export interface BufferLimits {
  /** Live buffers at most; a new stream beyond this is refused, never evicting a live one. */
  maxBuffers: number;
  /** Bytes buffered per stream; past it the stream is stopped (the crossing chunk is kept). */
  maxBufferBytes: number;
  /** A buffer not polled for this long expires. */
  bufferTimeoutMs: number;
}

export interface CreateOptions {
  /** The JSON-RPC id of the request that started the stream, as a key (see `requestKey`). */
  requestKey?: string;
  /** Diagnostics only: pretend the buffer has already been idle this long. */
  idleMs?: number;
}

export interface AppendResult {
  /** The buffer has reached its byte cap: the producer must stop and end the stream. */
  full: boolean;
}

export interface PollResult {
  /** Chunks after the cursor, in seq order. */
  chunks: Chunk[];
}

export interface StoreStatus {
  active_buffers: number;
  buffered_bytes: number;
}

/**
 * The polling buffer store: an append-only log per stream with a read cursor, acknowledgement
 * and expiry (the shape of the MCP SDK's EventStore). The in-memory store is the default; a
 * shared store (Redis Streams) lets several instances serve the same streams.
 *
 * Errors are RpcErrors: STREAM_NOT_FOUND (with a message that says unknown, expired or
 * released), TOO_MANY_STREAMS and INVALID_PARAMS (an `after_seq` beyond what was sent).
 */
export interface BufferStore {
  readonly limits: BufferLimits;
  create(streamId: string, options?: CreateOptions): Promise<void>;
  append(streamId: string, chunk: Chunk): Promise<AppendResult>;
  /**
   * Reads what follows the cursor and acknowledges. Without `afterSeq` the cursor is the last
   * acknowledged seq and everything returned is acknowledged (clear after read). With `afterSeq`
   * only chunks up to `afterSeq` are acknowledged, and everything after it is returned. A buffer
   * whose final chunk is acknowledged is released. Every poll refreshes the expiry.
   */
  poll(streamId: string, afterSeq?: number): Promise<PollResult>;
  /** Refreshes expiry without reading: the stream is being delivered live to a client. Unknown ids are ignored. */
  touch(streamId: string): Promise<void>;
  /** Reads without acknowledging or refreshing expiry (diagnostics). */
  peek(streamId: string): Promise<Chunk[]>;
  /**
   * Resolves once a chunk after `afterSeq` (or, without it, after the acknowledged cursor) is
   * buffered, once the stream has ended, after `timeoutMs`, or when `signal` aborts.
   */
  wait(streamId: string, afterSeq: number | undefined, timeoutMs: number, signal?: AbortSignal): Promise<void>;
  /** Stream ids of the live buffers started by the request with this key. */
  findByRequest(requestKey: string): Promise<string[]>;
  /** Drops expired buffers; returns their stream ids. */
  sweep(): Promise<string[]>;
  delete(streamId: string): Promise<void>;
  status(): Promise<StoreStatus>;
  close(): Promise<void>;
}

/** A JSON-RPC id as a map key that keeps its type: 7 and "7" are different requests. */
export function requestKey(id: string | number | null): string {
  return JSON.stringify(id);
}

/** The bytes a chunk accounts for in a buffer: its text plus a fixed overhead for the record. */
export function chunkBytes(chunk: Chunk): number {
  return Buffer.byteLength(chunk.delta, 'utf8') + 48;
}
