import type { Logger } from 'pino';
import { fault, ServerError } from '../errors.js';
import { requestKey, type BufferStore } from './buffer-store.js';
import { followStored } from './follow.js';
import { LiveSink } from './live-sink.js';
import type { ChunkOutlet } from './live-sink.js';
import type { Chunk, Stream } from './stream.js';

/**
 * The sinks a stream started by `StreamHub.start` gets, chosen by the caller, which knows its
 * transport:
 * - `buffer`: its chunks are buffered for `poll` only (HTTP, notifications);
 * - `push`: they are pushed live to `outlet` only, and the stream lives and dies with it: it is
 *   aborted when the outlet closes;
 * - `push+buffer`: they are pushed live and buffered, so the stream outlives the outlet (a detached
 *   run, resumed with attach) and a client that lost chunks repairs the gaps with `poll` (UDP).
 */
export type Delivery = { kind: 'buffer' } | { kind: 'push'; outlet: ChunkOutlet } | { kind: 'push+buffer'; outlet: ChunkOutlet };

export interface StreamDeliveryOptions {
  store: BufferStore;
  log: Logger;
  /** Stops a stream for a server-side reason (its buffer is full or failing, its client fell behind), which its final chunk will carry. */
  stop: (stream: Stream, error: ServerError) => void;
}

/** Aborts `stream` when `closed` aborts, until the stream has ended. */
function abortOnClose(stream: Stream, closed: AbortSignal): void {
  if (closed.aborted) {
    stream.abort();
    return;
  }
  const onClose = (): void => stream.abort();
  closed.addEventListener('abort', onClose, { once: true });
  void stream.ended.then(() => closed.removeEventListener('abort', onClose));
}

/**
 * How the chunks of one hub's streams reach clients: buffered streams feed the buffer store (for
 * `poll` and attach), and at most one outlet at a time receives a stream live. Attach moves that
 * live delivery to a new outlet, replaying from the buffer; a stream this server does not generate
 * is followed through the store.
 */
export class StreamDelivery {
  readonly #store: BufferStore;
  readonly #log: Logger;
  readonly #stop: (stream: Stream, error: ServerError) => void;
  /** The pending appends of each buffered stream: once settled, its buffer holds every chunk produced before. */
  readonly #appends = new WeakMap<Stream, Promise<unknown>>();
  /** Live deliveries by stream id: one outlet at most receives a stream live. */
  readonly #sinks = new Map<string, LiveSink>();
  /** Buffered streams whose text another instance of the fleet writes into their buffer: only their final chunk is appended here. */
  readonly #textElsewhere = new WeakSet<Stream>();

  constructor(options: StreamDeliveryOptions) {
    this.#store = options.store;
    this.#log = options.log;
    this.#stop = options.stop;
  }

  /** Subscribes a new stream's sinks, before it runs; resolves true when it made the stream a buffer. Rejects, subscribing nothing, when the store refuses its buffer. */
  async open(stream: Stream, delivery: Delivery): Promise<boolean> {
    if (delivery.kind !== 'push') {
      const key = stream.requestId === undefined ? {} : { requestKey: requestKey(stream.requestId) };
      await this.#store.create(stream.id, { generated: true, ...key });
      this.#buffer(stream);
    }
    if (delivery.kind === 'buffer') return true;
    if (delivery.kind === 'push') abortOnClose(stream, delivery.outlet.closed);
    this.#deliverLive(stream, this.#newSink(stream, delivery.outlet, -1));
    return delivery.kind !== 'push';
  }

  /**
   * Delivers a buffered stream live to `outlet` from after `afterSeq`: first what its buffer holds
   * after that seq, then every new chunk, none lost and none repeated. The outlet takes over from
   * any other that received the stream live. `stream` is the stream when this server generates it;
   * otherwise its buffer is followed. Resolves false when nothing will be sent: the stream has ended
   * and the client already has every chunk.
   */
  async attach(streamId: string, stream: Stream | undefined, afterSeq: number, outlet: ChunkOutlet): Promise<boolean> {
    if (!stream) return followStored({ store: this.#store, streamId, afterSeq, outlet, log: this.#log });
    const appended = this.#appends.get(stream);
    if (!appended) {
      throw fault('INVALID_PARAMS', 'not_buffered', { stream_id: streamId });
    }
    // The outlet that received the stream so far keeps it until the replay has succeeded.
    const sink = this.#newSink(stream, outlet, afterSeq);
    await sink.replay(async () => {
      await appended;
      return (await this.#store.poll(streamId, afterSeq)).chunks;
    });
    this.#deliverLive(stream, sink);
    return true;
  }

  /** From now on, `stream`'s text reaches its buffer without this delivery (the fleet instance that generates it writes it there). */
  textElsewhere(stream: Stream): void {
    this.#textElsewhere.add(stream);
  }

  /** Stops `stream`: its buffer is full. */
  full(stream: Stream): void {
    const cap = this.#store.limits.maxBufferBytes;
    this.#stop(stream, fault('BUFFER_FULL', 'full', { max_buffer_bytes: cap }, { max_buffer_bytes: cap }));
  }

  /** Refreshes the buffers of the buffered streams delivered live, so they do not expire while nobody polls them. */
  async touchLive(): Promise<void> {
    for (const [id, sink] of this.#sinks) if (sink.buffered) await this.#store.touch(id);
  }

  /** Resolves once every chunk `stream` has produced is in the buffer store; at once for a stream that is not buffered. */
  settled(stream: Stream): Promise<unknown> {
    return this.#appends.get(stream) ?? Promise.resolve();
  }

  #buffer(stream: Stream): void {
    let tail: Promise<unknown> = Promise.resolve();
    this.#appends.set(stream, tail);
    stream.subscribe((chunk: Chunk) => {
      if (!chunk.end && this.#textElsewhere.has(stream)) return;
      tail = tail
        .then(() => this.#store.append(stream.id, chunk))
        .then(({ full }) => {
          if (full && !chunk.end) this.full(stream);
        })
        .catch((err: unknown) => {
          if (err instanceof ServerError) {
            this.#log.warn({ err, stream_id: stream.id }, 'could not buffer a chunk');
            return this.#stop(stream, err);
          }
          this.#log.error({ err, stream_id: stream.id }, 'could not buffer a chunk');
          this.#stop(stream, fault('INTERNAL_ERROR', 'buffer_failed'));
        });
      this.#appends.set(stream, tail);
    });
  }

  /** Makes `sink` the one live delivery of `stream`, ending any other. */
  #deliverLive(stream: Stream, sink: LiveSink): void {
    const previous = this.#sinks.get(stream.id);
    if (previous !== sink) previous?.close();
    if (!sink.closed) this.#sinks.set(stream.id, sink);
  }

  #newSink(stream: Stream, outlet: ChunkOutlet, afterSeq: number): LiveSink {
    const sink: LiveSink = new LiveSink({
      stream,
      outlet,
      afterSeq,
      buffered: this.#appends.has(stream),
      stop: (error) => this.#stop(stream, error),
      onClose: () => {
        if (this.#sinks.get(stream.id) === sink) this.#sinks.delete(stream.id);
      },
    });
    return sink;
  }
}
