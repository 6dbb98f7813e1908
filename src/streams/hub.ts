import type { Logger } from 'pino';
import {
  LLMCallState,
  emptyPerf,
  type Engine,
  type FinishReason,
  type RKLLMPerfStat,
  type RunOutputs,
  type RunRequest,
} from '../engine/types.js';
import type { Connection } from '../jsonrpc/connection.js';
import { ErrorCodes, RpcError, invalidParams } from '../jsonrpc/errors.js';
import type { JsonRpcId } from '../jsonrpc/message.js';
import { requestKey, type BufferStore } from './buffer-store.js';
import type { Cluster } from './cluster.js';
import { followStored } from './follow.js';
import { LiveSink } from './live-sink.js';
import { ANYONE, type StreamOwner } from './owner.js';
import type { Scheduler } from './scheduler.js';
import { Stream, newStreamId, type Chunk } from './stream.js';

/** Instrumentation: sees every chunk the moment its stream produces it (benchmarks, metrics). */
export interface StreamObserver {
  chunk(streamId: string, chunk: Chunk): void;
  /** A stream was admitted: it waits for an engine slot. */
  started?(streamId: string): void;
  /** A stream got its engine slot. */
  running?(streamId: string): void;
}

export interface StreamHubOptions {
  engine: Engine;
  scheduler: Scheduler;
  store: BufferStore;
  /** With a shared store: reaches the streams other instances generate, and lets them reach ours. */
  cluster?: Cluster;
  log: Logger;
  observer?: StreamObserver;
}

export interface RunResult extends RunOutputs {
  text: string;
  finish_reason: FinishReason;
  perf: RKLLMPerfStat;
  error?: string;
}

export type RunParams = Omit<RunRequest, 'signal'>;

/** How the chunks of a stream started by `start` reach the client. */
export interface Delivery {
  /** Push every chunk live on this connection. Without one (HTTP), the stream is buffered for `poll`. */
  connection?: Connection;
  /** Survive the connection: keep running and buffering after it closes (`detach: true`). */
  detach?: boolean;
}

/** Selects streams for `rkllm_abort` and `poll`. */
export interface StreamSelector {
  stream_id?: string;
  request_id?: JsonRpcId;
}

/**
 * Owns every stream of one server: admits runs through the scheduler, drives the engine, feeds
 * buffered streams into the buffer store, and aborts what is abandoned.
 */
export class StreamHub {
  readonly #engine: Engine;
  readonly #scheduler: Scheduler;
  readonly #store: BufferStore;
  readonly #cluster: Cluster | undefined;
  readonly #log: Logger;
  /** Streams that have not ended, by id. */
  readonly #live = new Map<string, Stream>();
  /** Why a stream was stopped by the server rather than by its client. */
  readonly #stopErrors = new WeakMap<Stream, RpcError>();
  readonly #tasks = new Set<Promise<void>>();
  /** The pending appends of each buffered stream: once settled, its buffer holds every chunk produced before. */
  readonly #appends = new WeakMap<Stream, Promise<unknown>>();
  /** Live deliveries by stream id: one connection at most receives a stream live. */
  readonly #sinks = new Map<string, LiveSink>();
  readonly #observer: StreamObserver | undefined;

  constructor(options: StreamHubOptions) {
    this.#observer = options.observer;
    this.#engine = options.engine;
    this.#scheduler = options.scheduler;
    this.#store = options.store;
    this.#cluster = options.cluster;
    this.#log = options.log;
  }

  get store(): BufferStore {
    return this.#store;
  }

  get scheduler(): Scheduler {
    return this.#scheduler;
  }

  /**
   * Starts a stream (`rkllm_run_async`). Without a connection (HTTP) it is buffered for `poll`. On a
   * live connection its chunks are pushed there; it is buffered too when the connection is lossy
   * (UDP) or the run detached, and otherwise it is aborted when the connection closes. Refuses at
   * once, before anything is created, when the input is invalid, the queue is full, the owner's
   * stream limit or the buffer limit is reached. The owner names the stream and is charged for it.
   */
  async start(params: RunParams, requestId: JsonRpcId | undefined, delivery: Delivery = {}, owner: StreamOwner = ANYONE): Promise<Stream> {
    const { stream, release } = await this.#admit(params, requestId, owner);
    const { connection } = delivery;
    const buffered = connection === undefined || connection.lossy || delivery.detach === true;
    if (buffered) {
      try {
        await this.#store.create(stream.id, { generated: true, ...(requestId === undefined ? {} : { requestKey: requestKey(requestId) }) });
      } catch (err) {
        release();
        throw err;
      }
      this.#attachStore(stream);
      this.#cluster?.own(stream);
    }
    if (connection) {
      if (!buffered) this.#abortOnClose(stream, connection.closed);
      this.#deliverLive(stream, this.#newSink(stream, connection, requestId ?? null, -1));
    }
    this.#launch(stream, params, release);
    return stream;
  }

  /**
   * Delivers a buffered stream live on `connection` from after `afterSeq` (`rkllm_stream_attach`):
   * first what its buffer holds after that seq, then every new chunk, none lost and none repeated.
   * The connection takes over from any other that received the stream live. Resolves false when
   * nothing will be sent: the stream has ended and the client already has every chunk.
   */
  async attach(streamId: string, afterSeq: number, connection: Connection, requestId: JsonRpcId): Promise<boolean> {
    const stream = this.#live.get(streamId);
    if (!stream) return followStored({ store: this.#store, streamId, afterSeq, connection, requestId, log: this.#log });
    const appended = this.#appends.get(stream);
    if (!appended) {
      throw invalidParams(
        `Stream ${streamId} is not buffered, so it cannot be attached: it lives and dies with the connection that started it. Start runs with "detach": true to resume them later`,
      );
    }
    // The connection that received the stream so far keeps it until the replay has succeeded.
    const sink = this.#newSink(stream, connection, requestId, afterSeq);
    await sink.replay(async () => {
      await appended;
      return (await this.#store.poll(streamId, afterSeq)).chunks;
    });
    this.#deliverLive(stream, sink);
    return true;
  }

  /** Runs to the end (`rkllm_run`). `signal` aborts it, e.g. when the client disconnects. */
  async run(params: RunParams, requestId: JsonRpcId | undefined, signal: AbortSignal, owner: StreamOwner = ANYONE): Promise<RunResult> {
    const { stream, release } = await this.#admit(params, requestId, owner);
    const parts: string[] = [];
    stream.subscribe((chunk) => parts.push(chunk.delta));
    const onAbort = (): void => stream.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      this.#launch(stream, params, release);
      const last = await stream.ended;
      const result: RunResult = { text: parts.join(''), finish_reason: last.finish_reason!, perf: last.perf! };
      if (last.error) result.error = last.error.message;
      if (last.last_hidden_layer) result.last_hidden_layer = last.last_hidden_layer;
      if (last.logits) result.logits = last.logits;
      return result;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** The live (not yet ended) streams selected by stream id, or by request id (which several may share). */
  select(selector: StreamSelector): Stream[] {
    if (selector.stream_id !== undefined) {
      const stream = this.#live.get(selector.stream_id);
      return stream ? [stream] : [];
    }
    if (selector.request_id !== undefined) {
      const key = requestKey(selector.request_id);
      return [...this.#live.values()].filter((s) => s.requestId !== undefined && requestKey(s.requestId) === key);
    }
    return [];
  }

  /**
   * Aborts a stream this server does not run: asks the instance that generates it, through the
   * cluster. Resolves false when there is nothing to abort (it has ended, or there is no cluster).
   * Throws STREAM_NOT_FOUND for a stream that has no buffer.
   */
  async abortElsewhere(streamId: string): Promise<boolean> {
    if (this.#cluster) return this.#cluster.abort(streamId);
    await this.#store.peek(streamId);
    return false;
  }

  /** Aborts every running (not queued) stream that `selected` accepts: `rkllm_abort` without parameters. */
  abortRunning(selected: (stream: Stream) => boolean = () => true): number {
    let count = 0;
    for (const stream of this.#live.values()) {
      if (stream.state === 'running' && selected(stream)) {
        stream.abort();
        count++;
      }
    }
    return count;
  }

  get liveCount(): number {
    return this.#live.size;
  }

  /** Drops expired buffers and aborts the generations nobody is polling any more (nor receiving live). */
  async sweep(): Promise<string[]> {
    for (const [id, sink] of this.#sinks) if (sink.buffered) await this.#store.touch(id);
    const expired = await this.#store.sweep();
    for (const id of expired) {
      const stream = this.#live.get(id);
      if (stream) {
        this.#log.info({ stream_id: id }, 'stream buffer expired; aborting its generation');
        stream.abort();
      }
    }
    return expired;
  }

  /**
   * Stops every live stream, queued or running, each with `error` in its final chunk (e.g. when
   * `rkllm_destroy` unloads the model), and waits until all have ended. The final chunks say
   * `finish_reason: "shutdown"` when `error` is SHUTTING_DOWN, else "error".
   */
  async stopAll(error: RpcError): Promise<void> {
    const streams = [...this.#live.values()];
    for (const stream of streams) this.#stop(stream, error);
    await Promise.all(streams.map((stream) => stream.ended));
  }

  /** Aborts every stream and waits until all have ended. */
  async close(): Promise<void> {
    const streams = [...this.#live.values()];
    for (const stream of streams) stream.abort();
    await Promise.all(this.#tasks);
    // Their final chunks reach the buffer store before it closes.
    await Promise.all(streams.map((stream) => this.#appends.get(stream) ?? Promise.resolve()));
  }

  #attachStore(stream: Stream): void {
    let tail: Promise<unknown> = Promise.resolve();
    this.#appends.set(stream, tail);
    stream.subscribe((chunk: Chunk) => {
      tail = tail
        .then(() => this.#store.append(stream.id, chunk))
        .then(({ full }) => {
          if (full && !chunk.end) this.#stop(stream, this.#bufferFull());
        })
        .catch((err: unknown) => {
          this.#log.error({ err, stream_id: stream.id }, 'could not buffer a chunk');
          this.#stop(stream, new RpcError('INTERNAL_ERROR', 'The stream buffer failed; the stream was stopped'));
        });
      this.#appends.set(stream, tail);
    });
  }

  #abortOnClose(stream: Stream, closed: AbortSignal): void {
    if (closed.aborted) {
      stream.abort();
      return;
    }
    const onClose = (): void => stream.abort();
    closed.addEventListener('abort', onClose, { once: true });
    void stream.ended.then(() => closed.removeEventListener('abort', onClose));
  }

  /** Makes `sink` the one live delivery of `stream`, ending any other. */
  #deliverLive(stream: Stream, sink: LiveSink): void {
    const previous = this.#sinks.get(stream.id);
    if (previous !== sink) previous?.close();
    if (!sink.closed) this.#sinks.set(stream.id, sink);
  }

  #newSink(stream: Stream, connection: Connection, requestId: JsonRpcId, afterSeq: number): LiveSink {
    const sink: LiveSink = new LiveSink({
      stream,
      connection,
      requestId,
      afterSeq,
      buffered: this.#appends.has(stream),
      stop: (error) => this.#stop(stream, error),
      onClose: () => {
        if (this.#sinks.get(stream.id) === sink) this.#sinks.delete(stream.id);
      },
    });
    return sink;
  }

  #bufferFull(): RpcError {
    const cap = this.#store.limits.maxBufferBytes;
    return new RpcError(
      'BUFFER_FULL',
      `The stream buffer reached its cap of ${cap} bytes because it was not polled; generation stopped. Everything buffered before this chunk was kept.`,
      { max_buffer_bytes: cap },
    );
  }

  /** Stops a stream for a server-side reason, which its final chunk will carry. */
  #stop(stream: Stream, error: RpcError): void {
    if (stream.state === 'ended' || this.#stopErrors.has(stream)) return;
    this.#stopErrors.set(stream, error);
    stream.abort();
  }

  /**
   * Admission, shared by `start` and `run`: the input is valid, the queue has room and the owner
   * may start another stream. Only then is the stream created; `release` frees the owner's place.
   */
  async #admit(params: RunParams, requestId: JsonRpcId | undefined, owner: StreamOwner): Promise<{ stream: Stream; release: () => void }> {
    await this.#engine.validate(params);
    this.#scheduler.checkCapacity();
    const release = owner.admitStream();
    return { stream: this.#newStream(requestId, owner), release };
  }

  /** A new stream whose first listener is the observer, so it sees each chunk before any sink sends it. */
  #newStream(requestId: JsonRpcId | undefined, owner: StreamOwner): Stream {
    const stream = new Stream(requestId, owner.streamId(newStreamId()));
    const observer = this.#observer;
    if (observer) stream.subscribe((chunk) => observer.chunk(stream.id, chunk));
    return stream;
  }

  /** Runs `stream` through the scheduler and the engine; `release` frees its place in its owner's limit once it has ended. */
  #launch(stream: Stream, params: RunParams, release: () => void): void {
    this.#live.set(stream.id, stream);
    this.#observer?.started?.(stream.id);
    const task = this.#drive(stream, params).finally(() => {
      release();
      this.#live.delete(stream.id);
      this.#tasks.delete(task);
    });
    this.#tasks.add(task);
  }

  async #drive(stream: Stream, params: RunParams): Promise<void> {
    let release: (() => void) | undefined;
    try {
      release = await this.#scheduler.acquire(stream.signal);
    } catch {
      this.#end(stream, 'abort', undefined);
      return;
    }
    try {
      stream.markRunning();
      this.#observer?.running?.(stream.id);
      const outputs: RunOutputs = {};
      const outcome = await this.#engine.run({ ...params, signal: stream.signal }, (result, state) => {
        if (state !== LLMCallState.RKLLM_RUN_NORMAL) return;
        stream.push(result.text);
        if (result.last_hidden_layer) outputs.last_hidden_layer = result.last_hidden_layer;
        if (result.logits) outputs.logits = result.logits;
      });
      const error = outcome.error === undefined ? undefined : new RpcError('ENGINE_ERROR', outcome.error);
      this.#end(stream, outcome.finish_reason, outcome.perf, error, outputs);
    } catch (err) {
      this.#log.error({ err, stream_id: stream.id }, 'run failed');
      this.#end(stream, 'error', undefined, new RpcError('INTERNAL_ERROR', 'The run failed inside the server'));
    } finally {
      release();
    }
  }

  #end(stream: Stream, reason: FinishReason, perf: RKLLMPerfStat | undefined, error?: RpcError, outputs?: RunOutputs): void {
    const stopError = this.#stopErrors.get(stream);
    const finalError = stopError ?? error;
    const stopReason = stopError?.code === ErrorCodes.SHUTTING_DOWN ? 'shutdown' : 'error';
    stream.end(stopError ? stopReason : reason, perf ?? emptyPerf(), finalError?.toJSON(), outputs);
  }
}
