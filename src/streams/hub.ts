import type { Logger } from 'pino';
import {
  LLMCallState,
  emptyPerf,
  type Engine,
  type FinishReason,
  type RKLLMPerfStat,
  type RKLLMResult,
  type RunOutputs,
  type RunRequest,
} from '../engine/types.js';
import { errorObject, fault, ServerError } from '../errors.js';
import { requestKey, type BufferStore } from './buffer-store.js';
import { StreamDelivery, type Delivery } from './delivery.js';
import type { ChunkOutlet } from './outlet.js';
import { ANYONE, type StreamOwner } from './owner.js';
import type { Peers } from './peers.js';
import type { Scheduler } from './scheduler.js';
import { checkForFleet } from './fleet/receiver-check.js';
import type { SharedRun, SharedRuns } from './shared-runs.js';
import { Stream, newStreamId, type Chunk, type RequestId } from './stream.js';

/** Instrumentation: sees every chunk the moment its stream produces it (benchmarks, metrics). */
export interface StreamObserver {
  chunk(streamId: string, chunk: Chunk): void;
  /** A stream was admitted: it waits for an engine slot. */
  started?(streamId: string): void;
  /** A stream got its engine slot. */
  running?(streamId: string): void;
}

/**
 * The engine and the slot pool of one run, held from admission until `release`, so a model is
 * never unloaded under a queued or running stream.
 */
export interface RunTarget {
  readonly engine: Engine;
  readonly scheduler: Scheduler;
  /** With a fleet, the run may execute on any instance that serves the same model (the server's default model). */
  readonly shared: boolean;
  /** Frees the hold on the model; called exactly once, when the run has ended (or was not admitted). */
  release(): void;
}

/**
 * Finds (and loads when needed) the model a run names (absent: the default); rejects for an unknown
 * name without loading anything, and, when `admin` is false (a user key), where a load would be
 * needed and users may not load.
 */
export type RunResolver = (model: string | undefined, signal?: AbortSignal, admin?: boolean) => Promise<RunTarget>;

export interface StreamHubOptions {
  engine: Engine;
  scheduler: Scheduler;
  store: BufferStore;
  /** Which engine and slot pool run a run, by the model it names (default: `engine` and `scheduler` for every run). */
  resolve?: RunResolver;
  /** With a shared store: reaches the streams other instances generate, and lets them reach ours. */
  peers?: Peers;
  /** With a fleet: the run queue shared by every instance, tried before this server's own scheduler. */
  shared?: SharedRuns;
  log: Logger;
  observer?: StreamObserver;
}

export interface RunResult extends RunOutputs {
  text: string;
  finish_reason: FinishReason;
  perf: RKLLMPerfStat;
  error?: string;
}

/** A run as the hub takes it: the engine's run request, and the name of the model that runs it (absent: the default model). */
export type RunParams = EngineRun & { model?: string };

/** A run as an engine takes it, but for the signal (the hub adds the stream's own). */
type EngineRun = Omit<RunRequest, 'signal'>;

/** An admitted run: its stream, what the engine gets, how to free its places, and where it runs. */
interface Admitted {
  stream: Stream;
  request: EngineRun;
  release: () => void;
  target: RunTarget;
  shared?: SharedRun;
}

/** Selects streams for `rkllm_abort` and `poll`. */
export interface StreamSelector {
  stream_id?: string;
  request_id?: RequestId;
}

/** The run, as its owner's: it continues that owner's `keep_history` conversation only. */
function ownedBy(params: RunParams, owner: StreamOwner): RunParams {
  return owner.id === undefined ? params : { ...params, owner: owner.id };
}

/**
 * Owns every stream of one server: admits runs through the scheduler, drives the engine, hands
 * each stream's chunks to its delivery (the buffer store, a live outlet), and aborts what is
 * abandoned.
 */
export class StreamHub {
  readonly #resolve: RunResolver;
  readonly #store: BufferStore;
  readonly #peers: Peers | undefined;
  readonly #shared: SharedRuns | undefined;
  readonly #log: Logger;
  readonly #delivery: StreamDelivery;
  /** Streams that have not ended, by id. */
  readonly #live = new Map<string, Stream>();
  /** Why a stream was stopped by the server rather than by its client. */
  readonly #stopErrors = new WeakMap<Stream, ServerError>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #observer: StreamObserver | undefined;
  #closed: Promise<void> | undefined;

  constructor(options: StreamHubOptions) {
    this.#observer = options.observer;
    const { engine, scheduler } = options;
    this.#resolve = options.resolve ?? (async () => ({ engine, scheduler, shared: true, release: () => {} }));
    this.#store = options.store;
    this.#peers = options.peers;
    this.#shared = options.shared;
    this.#log = options.log;
    this.#delivery = new StreamDelivery({ store: options.store, log: options.log, stop: (stream, error) => this.#stop(stream, error) });
  }

  /**
   * Starts a stream (`rkllm_run_async`) whose chunks reach its client through `delivery`: buffered
   * for `poll`, pushed live, or both (see `Delivery`). Refuses at once, before anything is
   * created, when the input is invalid, the queue is full, the owner's stream limit or the buffer
   * limit is reached. The owner names the stream and is charged for it.
   */
  async start(params: RunParams, requestId: RequestId | undefined, delivery: Delivery, owner: StreamOwner = ANYONE): Promise<Stream> {
    params = ownedBy(params, owner);
    const { stream, request, release, target, shared } = await this.#admit(params, requestId, owner);
    try {
      await this.#delivery.open(stream, delivery);
    } catch (err) {
      release();
      throw err;
    }
    if (delivery.kind !== 'push') this.#peers?.own(stream);
    this.#launch(stream, request, owner, release, target, shared);
    return stream;
  }

  /**
   * Delivers a buffered stream live to `outlet` from after `afterSeq` (`rkllm_stream_attach`):
   * first what its buffer holds after that seq, then every new chunk, none lost and none repeated.
   * The outlet takes over from any other that received the stream live. Resolves false when
   * nothing will be sent: the stream has ended and the client already has every chunk.
   */
  attach(streamId: string, afterSeq: number, outlet: ChunkOutlet): Promise<boolean> {
    return this.#delivery.attach(streamId, this.#live.get(streamId), afterSeq, outlet);
  }

  /** Runs to the end (`rkllm_run`). `signal` aborts it, e.g. when the client disconnects. */
  async run(params: RunParams, requestId: RequestId | undefined, signal: AbortSignal, owner: StreamOwner = ANYONE): Promise<RunResult> {
    params = ownedBy(params, owner);
    let admitted: Admitted;
    try {
      admitted = await this.#admit(params, requestId, owner, signal);
    } catch (err) {
      // The client went away before the run was admitted (a connection whose input ended before
      // this request was read, or a disconnect while its model loaded): it ends as a run stopped
      // by the same signal does, not as a server fault.
      if (signal.aborted && !(err instanceof ServerError)) return { text: '', finish_reason: 'abort', perf: emptyPerf() };
      throw err;
    }
    const { stream, request, release, target, shared } = admitted;
    const parts: string[] = [];
    stream.subscribe((chunk) => parts.push(chunk.delta));
    const onAbort = (): void => stream.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      this.#launch(stream, request, owner, release, target, shared);
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
   * peers. Resolves false when there is nothing to abort (it has ended, or there are no peers).
   * Throws STREAM_NOT_FOUND for a stream that has no buffer.
   */
  async abortElsewhere(streamId: string): Promise<boolean> {
    if (this.#peers) return this.#peers.abort(streamId);
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

  /** How many live streams `selected` accepts (a client's own, for a view that must not show other clients' streams). */
  countLive(selected: (stream: Stream) => boolean): number {
    let count = 0;
    for (const stream of this.#live.values()) if (selected(stream)) count++;
    return count;
  }

  /** Drops expired buffers and aborts the generations nobody is polling any more (nor receiving live). */
  async sweep(): Promise<string[]> {
    await this.#delivery.touchLive();
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
  async stopAll(error: ServerError): Promise<void> {
    const streams = [...this.#live.values()];
    for (const stream of streams) this.#stop(stream, error);
    await Promise.all(streams.map((stream) => stream.ended));
  }

  /** Aborts every stream and waits until all have ended. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      const streams = [...this.#live.values()];
      for (const stream of streams) stream.abort();
      await Promise.all(this.#tasks);
      // Their final chunks reach the buffer store before it closes.
      await Promise.all(streams.map((stream) => this.#delivery.settled(stream)));
    })();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Stops a stream for a server-side reason, which its final chunk will carry. */
  #stop(stream: Stream, error: ServerError): void {
    if (stream.state === 'ended' || this.#stopErrors.has(stream)) return;
    this.#stopErrors.set(stream, error);
    stream.abort();
  }

  /**
   * Admission, shared by `start` and `run`: the run's model is found (and loaded when needed), the
   * input is valid, the queue has room and the owner may start another stream. Only then is the
   * stream created; `release` frees the owner's place and the hold on the model. With a fleet, a
   * run of the default model is queued in the shared queue, under its fleet-wide limits (`shared`);
   * when that queue is unreachable, and for the other models of the folder, in this server's own.
   * `request` is the engine's run request: the run without the model's name, which admission used.
   */
  async #admit(params: RunParams, requestId: RequestId | undefined, owner: StreamOwner, signal?: AbortSignal): Promise<Admitted> {
    const { model, ...request } = params;
    const target = await this.#resolve(model, signal, owner.admin !== false);
    const admitted: Array<() => void> = [() => target.release()];
    const release = (): void => {
      for (const free of admitted.splice(0).reverse()) free();
    };
    try {
      const fleet = target.shared ? this.#shared : undefined;
      // With a fleet, a LoRA adapter this instance lacks may be loaded on another: `refusal` if none has it.
      let refusal: ServerError | undefined;
      if (fleet) refusal = await checkForFleet(target.engine, request);
      else {
        await target.engine.validate(request);
        target.scheduler.checkCapacity(owner.queueKey);
      }
      admitted.push(owner.admitStream());
      const stream = this.#newStream(requestId, owner);
      if (!fleet) return { stream, request, release, target };
      // It runs on the default model wherever it is claimed, whatever name that model has there.
      const shared = await fleet.enqueue({ streamId: stream.id, params: request, client: owner.queueKey, ...(refusal ? { refusal } : {}) });
      if (!shared) {
        target.scheduler.checkCapacity(owner.queueKey);
        return { stream, request, release, target };
      }
      admitted.push(() => shared.cancel());
      return { stream, request, release, target, shared };
    } catch (err) {
      release();
      throw err;
    }
  }

  /** A new stream whose first listener is the observer, so it sees each chunk before any sink sends it. */
  #newStream(requestId: RequestId | undefined, owner: StreamOwner): Stream {
    const stream = new Stream(requestId, owner.streamId(newStreamId()));
    const observer = this.#observer;
    if (observer) stream.subscribe((chunk) => observer.chunk(stream.id, chunk));
    return stream;
  }

  /** Runs `stream` through the scheduler and the engine; `release` frees its place in its owner's limit once it has ended. */
  #launch(stream: Stream, request: EngineRun, owner: StreamOwner, release: () => void, target: RunTarget, shared?: SharedRun): void {
    this.#live.set(stream.id, stream);
    this.#observer?.started?.(stream.id);
    const task = this.#drive(stream, request, owner.queueKey, target, shared).finally(() => {
      release();
      this.#live.delete(stream.id);
      this.#tasks.delete(task);
    });
    this.#tasks.add(task);
  }

  /** Runs `stream` on its target's engine once the target's scheduler gives it a slot, or, with `shared`, wherever the fleet runs it. */
  async #drive(stream: Stream, params: EngineRun, queueKey: string, target: RunTarget, shared?: SharedRun): Promise<void> {
    let release: (() => void) | undefined;
    try {
      if (!shared) release = await target.scheduler.acquire(stream.signal, queueKey);
    } catch {
      this.#end(stream, 'abort', undefined);
      return;
    }
    const running = (): void => {
      stream.markRunning();
      this.#observer?.running?.(stream.id);
    };
    try {
      if (!shared) running();
      const outputs: RunOutputs = {};
      const request = { ...params, signal: stream.signal };
      const callback = (result: RKLLMResult, state: LLMCallState): void => {
        if (state !== LLMCallState.RKLLM_RUN_NORMAL) return;
        stream.push(result.text);
        if (result.last_hidden_layer) outputs.last_hidden_layer = result.last_hidden_layer;
        if (result.logits) outputs.logits = result.logits;
      };
      const outcome = shared ? await shared.run(request, callback, running) : await target.engine.run(request, callback);
      const error = outcome.error === undefined ? undefined : fault('ENGINE_ERROR', 'detail', { detail: outcome.error });
      if (outcome.input_tokens !== undefined) outputs.input_tokens = outcome.input_tokens;
      this.#end(stream, outcome.finish_reason, outcome.perf, error, outputs);
    } catch (err) {
      if (err instanceof ServerError) {
        this.#end(stream, 'error', undefined, err);
        return;
      }
      this.#log.error({ err, stream_id: stream.id }, 'run failed');
      this.#end(stream, 'error', undefined, fault('INTERNAL_ERROR', 'run_failed'));
    } finally {
      release?.();
    }
  }

  #end(stream: Stream, reason: FinishReason, perf: RKLLMPerfStat | undefined, error?: ServerError, outputs?: RunOutputs): void {
    const stopError = this.#stopErrors.get(stream);
    const finalError = stopError ?? error;
    const stopReason = stopError?.name === 'SHUTTING_DOWN' ? 'shutdown' : 'error';
    stream.end(stopError ? stopReason : reason, perf ?? emptyPerf(), finalError && errorObject(finalError), outputs);
  }
}
