import type { Stream } from './stream.js';

/**
 * The other instances that share this server's buffer store (Redis), and the leases by which they
 * tell a live stream from an orphaned one: this server leases the buffered streams it generates,
 * and asks the instance that generates a stream to abort it. A server on the in-memory store has
 * no peers.
 */
export interface Peers {
  /**
   * Takes the lease of a buffered stream generated here: it is renewed until the stream has ended
   * in the store, and the stream is aborted when a peer asks for it or its buffer is dropped.
   */
  own(stream: Stream): void;
  /**
   * Asks whichever instance generates `streamId` to abort it. Resolves true when the request was
   * made, false when there is nothing to abort (the stream has ended). Throws STREAM_NOT_FOUND for
   * an unknown or dropped stream, and STORE_UNAVAILABLE when Redis is away.
   */
  abort(streamId: string): Promise<boolean>;
  /** Stops renewing and checking leases and listening for aborts. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}
