import type { Stream } from './stream.js';

/**
 * What one server shares with the other instances of its cluster, beyond the buffer store: control
 * of the streams each of them generates. A server on the in-memory store has none.
 */
export interface Cluster {
  /**
   * Registers a buffered stream generated here: its lease is renewed until it has ended in the
   * store, and it is aborted when an instance asks for it or its buffer is dropped.
   */
  own(stream: Stream): void;
  /**
   * Asks whichever instance generates `streamId` to abort it. Resolves true when the request was
   * made, false when there is nothing to abort (the stream has ended). Throws STREAM_NOT_FOUND for
   * an unknown or dropped stream, and STORE_UNAVAILABLE when Redis is away.
   */
  abort(streamId: string): Promise<boolean>;
  close(): Promise<void>;
}
