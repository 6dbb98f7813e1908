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
import type { ChunkOutlet } from './live-sink.js';
import type { Fleet, SharedRun } from './fleet/fleet.js';
import { JsonEnd } from './json-end.js';
import type { Scheduler } from './scheduler.js';
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
  /** With a shared store, the fleet: instances reach each other's streams, and its run queue comes before this server's scheduler. */
  fleet?: Fleet;
  log: Logger;
  observer?: StreamObserver;
}

/** Who starts a stream: it makes the stream's id (with API keys, the id tells the key), and is charged for the stream while it is queued or running. */
export interface StreamOwner {
  /** Whose `keep_history` conversation its runs continue (`RunRequest.owner`); absent: the shared one. */
  readonly id?: string;
  /** Whether its runs may load a model that is not loaded (an admin key, or anyone without keys); absent: yes. */
  readonly admin?: boolean;
  /** Whose line the stream waits in, in the fair queue: one per API key, or per address without keys. */
  readonly queueKey: string;
  /** The id of a new stream, from a fresh random one. */
  streamId(fresh: string): string;
  /** Counts a new stream, or throws the refusal when the owner's limit is reached. Returns the release, called once when the stream ends. */
  admitStream(): () => void;
}

/** The owner of streams started by the server itself or when nobody needs telling apart: ids as they are, no limit. */
export const ANYONE: StreamOwner = {
  queueKey: '',
  streamId: (fresh) => fresh,
  admitStream: () => () => {},
};

/** One generation read in process, as node-llama-cpp reads tokens: its chunks in order, the final one last. Leaving the loop early aborts the run. */
export interface Generation extends AsyncIterable<Chunk> {
  /** The stream's id, for logs. */
  readonly id: string;
  /** Once ended: why it ended in error, the ServerError itself (the final chunk carries its wire form). */
  readonly error: ServerError | undefined;
  /** Stops the run; with `error`, for a server-side reason its final chunk carries (its reader fell behind). */
  stop(error?: ServerError): void;
}

/** A run as the hub takes it: the engine's run request but for the signal (the hub adds the stream's own), and the name of the model (absent: the default). */
export type RunParams = Omit<RunRequest, 'signal'> & { model?: string };

/** An admitted run: its stream, what the engine gets, how to free its places, and where it runs. */
interface Admitted {
  stream: Stream;
  request: Omit<RunRequest, 'signal'>;
  release: () => void;
  target: RunTarget;
  shared?: SharedRun;
}

/** Selects streams for `rkllm_abort` and `poll`. */
export interface StreamSelector {
  stream_id?: string;
  request_id?: RequestId;
}

/**
 * Owns every stream of one server: admits runs through the scheduler, drives the engine, hands
 * each stream's chunks to its delivery (the buffer store, a live outlet), and aborts what is
 * abandoned.
 */
export class StreamHub {
  readonly #resolve: RunResolver;
  readonly #store: BufferStore;
  readonly #fleet: Fleet | undefined;
  readonly #log: Logger;
  readonly #delivery: StreamDelivery;
  /** Streams not ended, by id. */
  readonly #live = new Map<string, Stream>();
  /** Why a stream was stopped by the server rather than by its client; once ended, why it ended in error. */
  readonly #errors = new WeakMap<Stream, ServerError>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #observer: StreamObserver | undefined;
  #closed: Promise<void> | undefined;

  constructor(options: StreamHubOptions) {
    this.#observer = options.observer;
    const { engine, scheduler } = options;
    this.#resolve = options.resolve ?? (async () => ({ engine, scheduler, shared: true, release: () => {} }));
    this.#store = options.store;
    this.#fleet = options.fleet;
    this.#log = options.log;
    this.#delivery = new StreamDelivery({ store: options.store, log: options.log, stop: (stream, error) => this.#stop(stream, error) });
  }

  /**
   * Starts a stream (`rkllm_run_async`) whose chunks reach its client through `delivery`: buffered
   * for `poll`, pushed live, or both (see `Delivery`). Refuses at once, before anything is created,
   * when the input is invalid, the queue is full, the owner's stream limit or the buffer limit is reached.
   */
  async start(params: RunParams, requestId: RequestId | undefined, delivery: Delivery, owner: StreamOwner = ANYONE): Promise<Stream> {
    const admitted = await this.#admit(params, requestId, owner, { delivery });
    if (delivery.kind !== 'push') this.#fleet?.own(admitted.stream);
    this.#launch(admitted, owner);
    return admitted.stream;
  }

  /** Delivers a buffered stream live to `outlet` from after `afterSeq` (`rkllm_stream_attach`; see `StreamDelivery.attach`). */
  attach(streamId: string, afterSeq: number, outlet: ChunkOutlet): Promise<boolean> {
    return this.#delivery.attach(streamId, this.#live.get(streamId), afterSeq, outlet);
  }

  /**
   * Runs a generation for an in-process caller (`rkllm_run`, the OpenAI, Ollama and MCP faces) and
   * gives its chunks as they come. Refuses, before anything is created, as `start` does. `signal`
   * aborts it, queued or running, prefill included; a client gone before admission (its input ended
   * before this request was read, or it left while its model loaded) gets a generation ended by "abort".
   */
  async generate(
    params: RunParams,
    { signal, owner = ANYONE, requestId }: { signal: AbortSignal; owner?: StreamOwner; requestId?: RequestId },
  ): Promise<Generation> {
    let admitted: Admitted | undefined;
    try {
      admitted = await this.#admit(params, requestId, owner, { signal });
    } catch (err) {
      if (!signal.aborted || err instanceof ServerError) throw err;
    }
    const stream = admitted?.stream ?? new Stream(requestId);
    const chunks = stream.chunks();
    if (admitted) {
      const onAbort = (): void => stream.abort();
      if (signal.aborted) stream.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      void stream.ended.then(() => signal.removeEventListener('abort', onAbort));
      this.#launch(admitted, owner);
    } else stream.end('abort', emptyPerf());
    const errors = this.#errors;
    return {
      id: stream.id,
      get error() {
        return errors.get(stream);
      },
      stop: (error) => (error ? this.#stop(stream, error) : stream.abort()),
      [Symbol.asyncIterator]: () => chunks[Symbol.asyncIterator](),
    };
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
   * Aborts a stream this server does not run: asks the instance of the fleet that generates it.
   * Resolves false when there is nothing to abort (it has ended, or there is no fleet).
   * Throws STREAM_NOT_FOUND for a stream that has no buffer.
   */
  async abortElsewhere(streamId: string): Promise<boolean> {
    if (this.#fleet) return this.#fleet.abort(streamId);
    await this.#store.peek(streamId);
    return false;
  }

  /** Aborts every running (not queued) stream that `selected` accepts: `rkllm_abort` without parameters. */
  abortRunning(selected: (stream: Stream) => boolean = () => true): number {
    const running = [...this.#live.values()].filter((stream) => stream.state === 'running' && selected(stream));
    for (const stream of running) stream.abort();
    return running.length;
  }

  get liveCount(): number {
    return this.#live.size;
  }

  /** The live streams `selected` picks (a client's own, for a view that must not show other clients' streams). */
  live(selected: (stream: Stream) => boolean): Stream[] {
    return [...this.#live.values()].filter(selected);
  }

  /** Drops expired buffers and aborts the generations nobody is polling any more (nor receiving live). */
  async sweep(): Promise<string[]> {
    await this.#delivery.touchLive();
    const expired = await this.#store.sweep();
    for (const stream of expired.flatMap((id) => this.#live.get(id) ?? [])) {
      this.#log.info({ stream_id: stream.id }, 'stream buffer expired; aborting its generation');
      stream.abort();
    }
    return expired;
  }

  /**
   * Stops every live stream, queued or running, with `error` in its final chunk (`rkllm_destroy`),
   * and waits until all have ended: `finish_reason` "shutdown" for SHUTTING_DOWN, else "error".
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
    if (stream.state === 'ended' || this.#errors.has(stream)) return;
    this.#errors.set(stream, error);
    stream.abort();
  }

  /**
   * Admission, shared by `start` and `generate`: the run's model is found (and loaded when needed), the
   * input is valid, the queue has room and the owner may start another stream. Only then is the
   * stream created, with the sinks `delivery` names; `release` frees the owner's place and the hold
   * on the model. With a fleet, a run of the default model is queued in the shared queue, under its
   * fleet-wide limits (`shared`; a polled one once its buffer exists: its executor writes its text
   * there); when that queue is unreachable, and for the other models, in this server's own.
   * `request` is the engine's run request: the run without the model's name, which admission used,
   * as its owner's (it continues that owner's `keep_history` conversation only).
   */
  async #admit(
    params: RunParams,
    requestId: RequestId | undefined,
    owner: StreamOwner,
    { signal, delivery }: { signal?: AbortSignal; delivery?: Delivery },
  ): Promise<Admitted> {
    const { model, ...request } = owner.id === undefined ? params : { ...params, owner: owner.id };
    const target = await this.#resolve(model, signal, owner.admin !== false);
    const admitted: Array<() => void> = [() => target.release()];
    const release = (): void => {
      for (const free of admitted.splice(0).reverse()) free();
    };
    let buffer: string | undefined;
    try {
      const fleet = target.shared ? this.#fleet?.runs : undefined;
      // With a fleet, a LoRA adapter this instance lacks may be loaded on another: `refusal` if none has it.
      let refusal: ServerError | undefined;
      if (fleet) refusal = await fleet.check(target.engine, request);
      else {
        await target.engine.validate(request);
        target.scheduler.checkCapacity(owner.queueKey);
      }
      admitted.push(owner.admitStream());
      const stream = this.#newStream(requestId, owner);
      if (delivery && (await this.#delivery.open(stream, delivery))) buffer = stream.id;
      if (!fleet) return { stream, request, release, target };
      // It runs on the default model wherever it is claimed, whatever name that model has there.
      const polled = delivery?.kind === 'buffer' ? this.#store.limits : undefined;
      const shared = await fleet.enqueue({ streamId: stream.id, params: request, client: owner.queueKey, refusal, buffer: polled });
      if (shared && polled) this.#delivery.textElsewhere(stream);
      if (!shared) {
        target.scheduler.checkCapacity(owner.queueKey);
        return { stream, request, release, target };
      }
      admitted.push(() => shared.cancel());
      return { stream, request, release, target, shared };
    } catch (err) {
      release();
      if (buffer) await this.#store.delete(buffer).catch(() => {});
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

  /** Runs an admitted stream through the scheduler and the engine; its `release` frees its places once it has ended. */
  #launch(admitted: Admitted, owner: StreamOwner): void {
    const { stream } = admitted;
    this.#live.set(stream.id, stream);
    this.#observer?.started?.(stream.id);
    const task = this.#drive(admitted, owner.queueKey).finally(() => {
      admitted.release();
      this.#live.delete(stream.id);
      this.#tasks.delete(task);
    });
    this.#tasks.add(task);
  }

  /** Runs `stream` on its target's engine once the target's scheduler gives it a slot, or, with `shared`, wherever the fleet runs it. */
  async #drive({ stream, request: params, target, shared }: Admitted, queueKey: string): Promise<void> {
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
      // Output constrained to JSON ends with the value: what follows it is dropped, and the run stopped.
      const json = params.infer.json_schema === undefined ? undefined : new JsonEnd();
      const callback = (result: RKLLMResult, state: LLMCallState): number => {
        if (json?.done) return 1;
        if (state !== LLMCallState.RKLLM_RUN_NORMAL) return 0;
        stream.push(json ? result.text.slice(0, json.push(result.text)) : result.text);
        if (result.last_hidden_layer) outputs.last_hidden_layer = result.last_hidden_layer;
        if (result.logits) outputs.logits = result.logits;
        // Returning 1 stops a run on this engine; a run elsewhere in the fleet stops through the stream's signal.
        if (json?.done) stream.abort();
        return json?.done ? 1 : 0;
      };
      const events = { running, seqFrom: (seq: number) => stream.seqFrom(seq), full: () => this.#delivery.full(stream) };
      const outcome = shared ? await shared.run(request, callback, events) : await target.engine.run(request, callback);
      const error = outcome.error === undefined ? undefined : fault('ENGINE_ERROR', 'detail', { detail: outcome.error });
      if (outcome.input_tokens !== undefined) outputs.input_tokens = outcome.input_tokens;
      this.#end(stream, json ? json.finish(outcome.finish_reason) : outcome.finish_reason, outcome.perf, error, outputs);
    } catch (err) {
      if (!(err instanceof ServerError)) this.#log.error({ err, stream_id: stream.id }, 'run failed');
      this.#end(stream, 'error', undefined, err instanceof ServerError ? err : fault('INTERNAL_ERROR', 'run_failed'));
    } finally {
      release?.();
    }
  }

  #end(stream: Stream, reason: FinishReason, perf: RKLLMPerfStat | undefined, error?: ServerError, outputs?: RunOutputs): void {
    const stopError = this.#errors.get(stream);
    const finalError = stopError ?? error;
    if (finalError) this.#errors.set(stream, finalError);
    const stopReason = stopError?.name === 'SHUTTING_DOWN' ? 'shutdown' : 'error';
    stream.end(stopError ? stopReason : reason, perf ?? emptyPerf(), finalError && errorObject(finalError), outputs);
  }
}
