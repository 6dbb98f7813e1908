import type { Logger } from 'pino';
import { fault, ServerError } from '../errors.js';
import type { BufferStore } from './buffer-store.js';
import { sendBufferFull, type ChunkOutlet } from './live-sink.js';
import type { Chunk } from './stream.js';

/** How long each blocking read of a followed stream lasts before it is made again. */
const FOLLOW_WAIT_MS = 10_000;

export interface FollowOptions {
  store: BufferStore;
  streamId: string;
  /** The last seq the client has; -1 for none. */
  afterSeq: number;
  /** Where the chunks go: the replies to the attach request. */
  outlet: ChunkOutlet;
  log: Logger;
}

/**
 * Delivers a buffered stream that this server does not generate (another instance does, or it has
 * ended) live to an outlet, by reading its buffer: first every chunk after `afterSeq`, then each
 * new one as the store receives it (blocking reads), until the final chunk, until the outlet
 * closes or falls behind, or until the buffer is gone, which is answered as an error. Resolves
 * false when nothing will be sent: the stream has ended and the client already has every chunk.
 * A failure of the first read rejects, so the attach request itself is answered with it.
 */
export async function followStored(options: FollowOptions): Promise<boolean> {
  const { store, streamId, afterSeq } = options;
  const { chunks } = await store.poll(streamId, afterSeq);
  if (chunks.length === 0 && (await released(store, streamId))) return false;
  const follower = new Follower(options);
  if (follower.deliver(chunks)) void follower.run();
  else follower.stop();
  return true;
}

/** True when the buffer was released, which a poll does once the final chunk is acknowledged. */
async function released(store: BufferStore, streamId: string): Promise<boolean> {
  try {
    await store.peek(streamId);
    return false;
  } catch (err) {
    if (err instanceof ServerError && err.name === 'STREAM_NOT_FOUND') return true;
    throw err;
  }
}

class Follower {
  readonly #options: FollowOptions;
  readonly #release: () => void;
  #lastSeq: number;

  constructor(options: FollowOptions) {
    this.#options = options;
    this.#lastSeq = options.afterSeq;
    this.#release = options.outlet.hold();
  }

  /** Reads and delivers until the stream ends, the outlet closes, or reading fails. */
  async run(): Promise<void> {
    const { store, streamId, outlet, log } = this.#options;
    try {
      while (!outlet.closed.aborted) {
        await store.wait(streamId, this.#lastSeq, FOLLOW_WAIT_MS, outlet.closed);
        if (outlet.closed.aborted) break;
        if (!this.deliver((await store.poll(streamId, this.#lastSeq)).chunks)) break;
      }
    } catch (err) {
      if (!(err instanceof ServerError)) log.error({ err, stream_id: streamId }, 'following a stored stream failed');
      outlet.fail(err instanceof ServerError ? err : fault('INTERNAL_ERROR', 'follow_failed'));
    } finally {
      this.stop();
    }
  }

  /** Sends chunks in order; false once nothing more should be sent (the final chunk went, or the client fell behind). */
  deliver(chunks: Chunk[]): boolean {
    const { outlet, streamId } = this.#options;
    for (const chunk of chunks) {
      this.#lastSeq = chunk.seq;
      const accepted = outlet.send(streamId, chunk);
      if (chunk.end) return false;
      if (!accepted) {
        outlet.fail(sendBufferFull(outlet.sendLimit, streamId, this.#lastSeq, 'delivery'));
        return false;
      }
    }
    return true;
  }

  stop(): void {
    this.#release();
  }
}
