import type { ServerError } from '../errors.js';
import type { Chunk } from './stream.js';

/**
 * Where a live delivery pushes a stream's chunks: one request's replies on a live connection. The
 * wire layer builds it and decides what each chunk becomes on the wire (a JSON-RPC response to the
 * request, naming the stream); streams only hand over chunks.
 */
export interface ChunkOutlet {
  /** Aborts when the client has gone: nothing more can be sent. */
  readonly closed: AbortSignal;
  /** The cap on bytes waiting to be sent, and the setting it comes from, for the error that says delivery stopped. */
  readonly sendLimit: { bytes: number; setting: string };
  /** Sends one chunk of stream `streamId`. Returns false once the bytes waiting exceed `sendLimit`: stop pushing. */
  send(streamId: string, chunk: Chunk): boolean;
  /** Tells the client why delivery stopped (it fell behind, the buffer went away), answering the same request. */
  fail(error: ServerError): void;
  /** Keeps the connection from being closed as idle until the returned function is called. */
  hold(): () => void;
}
