import { fault, type ServerError } from '../errors.js';
import type { Chunk, Stream } from './stream.js';

/** A cap on the bytes waiting to be sent to a client, and the setting it comes from. */
export interface SendLimit {
  bytes: number;
  setting: string;
}

/**
 * Where a live delivery pushes a stream's chunks: one request's replies on a live connection. The
 * wire layer builds it and decides what each chunk becomes on the wire (a JSON-RPC response to the
 * request, naming the stream); streams only hand over chunks.
 */
export interface ChunkOutlet {
  /** Aborts when the client has gone: nothing more can be sent. */
  readonly closed: AbortSignal;
  /** The cap on bytes waiting to be sent, for the error that says delivery stopped. */
  readonly sendLimit: SendLimit;
  /** Sends one chunk of stream `streamId`. Returns false once the bytes waiting exceed `sendLimit`: stop pushing. */
  send(streamId: string, chunk: Chunk): boolean;
  /** Tells the client why delivery stopped (it fell behind, the buffer went away), answering the same request. */
  fail(error: ServerError): void;
  /** Keeps the connection from being closed as idle until the returned function is called. */
  hold(): () => void;
}

/**
 * SEND_BUFFER_FULL: the client does not read, so pushing stopped after `lastSeq`. What stopped is
 * either the stream itself (it was not buffered) or only its live delivery (it goes on buffering).
 */
export function sendBufferFull(limit: SendLimit, streamId: string, lastSeq: number, stopped: 'stream' | 'delivery'): ServerError {
  const { bytes, setting } = limit;
  const data = { stream_id: streamId, last_seq: lastSeq, max_send_buffer_bytes: bytes };
  return stopped === 'stream'
    ? fault('SEND_BUFFER_FULL', 'stopped', { bytes, setting }, data)
    : fault('SEND_BUFFER_FULL', 'detached', { bytes, setting, last_seq: lastSeq }, data);
}

export interface LiveSinkOptions {
  stream: Stream;
  /** Where the chunks go: the replies to the request that started the stream or attached it. */
  outlet: ChunkOutlet;
  /** The last seq the client already has; later chunks only are sent. -1: none. */
  afterSeq: number;
  /**
   * The stream is buffered (detached, HTTP or UDP): it outlives this delivery. The sink then stops
   * when the outlet closes or falls behind, and the stream goes on buffering. Otherwise the
   * sink delivers to the stream's end, and a connection that falls behind stops the stream.
   */
  buffered: boolean;
  /** Stops the stream with `error` in its final chunk (unbuffered streams whose client falls behind). */
  stop: (error: ServerError) => void;
  /** Called once when the sink stops delivering, whatever the reason. */
  onClose: () => void;
}

/**
 * Delivers one stream's chunks live to one outlet (a request's replies on a live connection). It
 * can first replay chunks read from the stream's buffer: chunks produced meanwhile are held back
 * and sent after the replay, skipping any it covered, so the client receives every seq after
 * `afterSeq` exactly once and in order. It keeps its connection from being closed as idle.
 */
export class LiveSink {
  readonly #options: LiveSinkOptions;
  readonly #unsubscribe: () => void;
  readonly #release: () => void;
  #lastSeq: number;
  /** Chunks produced while a replay is read; undefined when not replaying. */
  #held: Chunk[] | undefined;
  #overflowed = false;
  #closed = false;

  constructor(options: LiveSinkOptions) {
    this.#options = options;
    this.#lastSeq = options.afterSeq;
    this.#release = options.outlet.hold();
    this.#unsubscribe = options.stream.subscribe((chunk) => {
      if (this.#held) this.#held.push(chunk);
      else this.#deliver(chunk);
    });
    if (options.buffered) options.outlet.closed.addEventListener('abort', this.close, { once: true });
  }

  get buffered(): boolean {
    return this.#options.buffered;
  }

  /** True once the sink delivers nothing more. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Sends what `read` returns (chunks from the buffer), then what arrived meanwhile. A failed read closes the sink. */
  async replay(read: () => Promise<Chunk[]>): Promise<void> {
    this.#held = [];
    try {
      const chunks = await read();
      for (const chunk of chunks) this.#deliver(chunk);
    } catch (err) {
      this.close();
      throw err;
    } finally {
      const held = this.#held;
      this.#held = undefined;
      for (const chunk of held) this.#deliver(chunk);
    }
  }

  /** Stops delivering. Idempotent. */
  readonly close = (): void => {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    this.#release();
    this.#options.outlet.closed.removeEventListener('abort', this.close);
    this.#options.onClose();
  };

  #deliver(chunk: Chunk): void {
    if (this.#closed || chunk.seq <= this.#lastSeq) return;
    const { outlet, stream } = this.#options;
    this.#lastSeq = chunk.seq;
    const accepted = outlet.send(stream.id, chunk);
    if (chunk.end) this.close();
    else if (!accepted) this.#fellBehind();
  }

  /** The client does not read fast enough: stop pushing, leaving memory bounded by the connection's cap. */
  #fellBehind(): void {
    const { outlet, stream, buffered } = this.#options;
    if (this.#overflowed || outlet.closed.aborted) return;
    this.#overflowed = true;
    if (!buffered) {
      this.#options.stop(sendBufferFull(outlet.sendLimit, stream.id, this.#lastSeq, 'stream'));
      return;
    }
    this.close();
    outlet.fail(sendBufferFull(outlet.sendLimit, stream.id, this.#lastSeq, 'delivery'));
  }
}
