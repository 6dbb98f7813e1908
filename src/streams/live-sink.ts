import type { Connection } from '../jsonrpc/connection.js';
import { RpcError } from '../jsonrpc/errors.js';
import { errorResponse, resultResponse, type JsonRpcId, type JsonRpcResponse } from '../jsonrpc/message.js';
import type { Chunk, Stream } from './stream.js';

/** A chunk as a live connection carries it: a response to `requestId`, naming its stream so it can be resumed. */
export function chunkResponse(requestId: JsonRpcId, streamId: string, chunk: Chunk): JsonRpcResponse {
  return resultResponse(requestId, { chunk: { ...chunk, stream_id: streamId } });
}

export interface LiveSinkOptions {
  stream: Stream;
  connection: Connection;
  /** The id every chunk answers: the request that started the stream or attached it. */
  requestId: JsonRpcId;
  /** The last seq the client already has; later chunks only are sent. -1: none. */
  afterSeq: number;
  /**
   * The stream is buffered (detached, HTTP or UDP): it outlives this delivery. The sink then stops
   * when the connection closes or falls behind, and the stream goes on buffering. Otherwise the
   * sink delivers to the stream's end, and a connection that falls behind stops the stream.
   */
  buffered: boolean;
  /** Stops the stream with `error` in its final chunk (unbuffered streams whose client falls behind). */
  stop: (error: RpcError) => void;
  /** Called once when the sink stops delivering, whatever the reason. */
  onClose: () => void;
}

/**
 * Delivers one stream's chunks live on one connection, each as a JSON-RPC response carrying the
 * request id. It can first replay chunks read from the stream's buffer: chunks produced meanwhile
 * are held back and sent after the replay, skipping any it covered, so the client receives every
 * seq after `afterSeq` exactly once and in order. It keeps its connection from being closed as idle.
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
    this.#release = options.connection.hold();
    this.#unsubscribe = options.stream.subscribe((chunk) => {
      if (this.#held) this.#held.push(chunk);
      else this.#deliver(chunk);
    });
    if (options.buffered) options.connection.closed.addEventListener('abort', this.close, { once: true });
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
    this.#options.connection.closed.removeEventListener('abort', this.close);
    this.#options.onClose();
  };

  #deliver(chunk: Chunk): void {
    if (this.#closed || chunk.seq <= this.#lastSeq) return;
    const { connection, requestId, stream } = this.#options;
    this.#lastSeq = chunk.seq;
    const accepted = connection.send(chunkResponse(requestId, stream.id, chunk));
    if (chunk.end) this.close();
    else if (!accepted) this.#fellBehind();
  }

  /** The client does not read fast enough: stop pushing, leaving memory bounded by the connection's cap. */
  #fellBehind(): void {
    const { connection, requestId, stream, buffered } = this.#options;
    if (this.#overflowed || connection.closed.aborted) return;
    this.#overflowed = true;
    const { bytes, setting } = connection.sendLimit;
    const cause = `The connection's send buffer passed its cap of ${bytes} bytes (setting ${setting}) because the client is not reading`;
    const data = { stream_id: stream.id, last_seq: this.#lastSeq, max_send_buffer_bytes: bytes };
    if (!buffered) {
      this.#options.stop(new RpcError('SEND_BUFFER_FULL', `${cause}; the stream was stopped.`, data));
      return;
    }
    this.close();
    const message = `${cause}; live delivery stopped after seq ${this.#lastSeq}. The stream goes on buffering: resume it with rkllm_stream_attach or poll.`;
    connection.send(errorResponse(requestId, new RpcError('SEND_BUFFER_FULL', message, data)));
  }
}
