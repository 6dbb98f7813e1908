import type { LargeId } from '../jsonrpc/large-id.js';
import { randomBytes } from 'node:crypto';
import type { FinishReason, RKLLMPerfStat, RunOutputs } from '../engine/types.js';
import type { ErrorObject } from '../errors.js';

/** The id of the request that started a stream, as its client gave it (a JSON-RPC id: string, number or null). */
export type RequestId = string | number | LargeId | null;

/** One unit of a stream as it travels to clients. The final chunk also carries a GET_* run's outputs. */
export interface Chunk extends RunOutputs {
  seq: number;
  delta: string;
  end: boolean;
  /** Only on the final chunk. */
  finish_reason?: FinishReason;
  /** Only on the final chunk. */
  perf?: RKLLMPerfStat;
  /** Only on a final chunk that ends in error: why, as `errorObject` puts it (the shape of a JSON-RPC error object). */
  error?: ErrorObject;
}

export type StreamState = 'queued' | 'running' | 'ended';

export type ChunkListener = (chunk: Chunk) => void;

/** A stream id: 128 random bits, URL-safe, so ids cannot be guessed. */
export function newStreamId(): string {
  return `st_${randomBytes(16).toString('base64url')}`;
}

/**
 * One generation as clients see it: numbers its chunks from 0, ends exactly once (finish, abort
 * or error), and owns the AbortController that stops its generation. Sinks (the polling buffer,
 * a live connection) subscribe to its chunks.
 */
export class Stream {
  readonly id: string;
  readonly requestId: RequestId | undefined;
  readonly controller = new AbortController();
  #state: StreamState = 'queued';
  #nextSeq = 0;
  #listeners = new Set<ChunkListener>();
  #ended: Promise<Chunk>;
  #resolveEnded!: (chunk: Chunk) => void;

  constructor(requestId: RequestId | undefined, id: string = newStreamId()) {
    this.id = id;
    this.requestId = requestId;
    this.#ended = new Promise((resolve) => (this.#resolveEnded = resolve));
  }

  get state(): StreamState {
    return this.#state;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Resolves with the final chunk. */
  get ended(): Promise<Chunk> {
    return this.#ended;
  }

  /** The seq the next chunk will get. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  subscribe(listener: ChunkListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Its chunks from now on, in order, the final one last, for one in-process reader (as
   * node-llama-cpp gives tokens): leaving the loop before the end aborts the generation.
   */
  chunks(): AsyncIterable<Chunk> {
    const chunks: Chunk[] = [];
    let wake = (): void => {};
    this.subscribe((chunk) => {
      chunks.push(chunk);
      wake();
    });
    const ended = (): boolean => this.#state === 'ended';
    const abort = (): void => this.abort();
    return {
      [Symbol.asyncIterator]: async function* () {
        let next = 0;
        try {
          for (;;) {
            while (next < chunks.length) yield chunks[next++]!;
            if (ended()) return;
            await new Promise<void>((resolve) => (wake = resolve));
          }
        } finally {
          if (!ended()) abort();
        }
      },
    };
  }

  /** The next chunk is numbered `seq` (at least): the fleet instance that executes the stream numbers its chunks. */
  seqFrom(seq: number): void {
    this.#nextSeq = Math.max(this.#nextSeq, seq);
  }

  markRunning(): void {
    if (this.#state === 'queued') this.#state = 'running';
  }

  /** Stops the generation; the stream ends through `end` once the engine has stopped. */
  abort(): void {
    this.controller.abort();
  }

  push(delta: string): void {
    if (this.#state === 'ended' || delta === '') return;
    this.#emit({ seq: this.#nextSeq++, delta, end: false });
  }

  /** Ends the stream with its final chunk. Later calls do nothing. */
  end(finishReason: FinishReason, perf: RKLLMPerfStat, error?: ErrorObject, outputs: RunOutputs = {}): void {
    if (this.#state === 'ended') return;
    this.#state = 'ended';
    const chunk: Chunk = { seq: this.#nextSeq++, delta: '', end: true, finish_reason: finishReason, perf, ...outputs };
    if (error) chunk.error = error;
    this.#emit(chunk);
    this.#listeners.clear();
    this.#resolveEnded(chunk);
  }

  #emit(chunk: Chunk): void {
    for (const listener of this.#listeners) listener(chunk);
  }
}

/** Reads a generation to its end: its whole text, and its final chunk. */
export async function collect(generation: AsyncIterable<Chunk>): Promise<{ text: string; last: Chunk }> {
  const parts: string[] = [];
  for await (const chunk of generation) {
    parts.push(chunk.delta);
    if (chunk.end) return { text: parts.join(''), last: chunk };
  }
  throw new Error('a generation ended without its final chunk');
}
