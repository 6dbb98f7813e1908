import type { FinishReason } from '../engine/types.js';
import type { ErrorObject } from '../errors.js';
import type { Chunk as StreamChunk } from '../streams/stream.js';

export type { FinishReason };

/** How to reach the server. */
export interface RkllmClientOptions {
  /** `ws://host:port`, `tcp://host:port` or `http://host:port/` (also `wss://`, `https://`). */
  url: string;
  /** An API key, when the server has `auth.api_keys`: the Authorization header over HTTP and WebSocket, `authenticate` over TCP. */
  apiKey?: string;
  /** HTTP: how long each poll waits on the server for new chunks (default 5000 ms; the server caps it at `streams.max_wait_ms`). */
  pollWaitMs?: number;
  /** HTTP: polls in a row whose reply may be lost before a stream fails (default 5). */
  maxRetries?: number;
  /** HTTP: the fetch to use (default the global one). */
  fetch?: typeof fetch;
}

/** The run parameters of `rkllm_run` and `rkllm_run_async`, flat or nested (see docs/protocol.md); checked by the server. */
export interface RunParams {
  prompt_input?: string;
  input_type?: number;
  role?: string;
  keep_history?: number;
  max_new_tokens?: number;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  repeat_penalty?: number;
  seed?: number;
  [field: string]: unknown;
}

/** One piece of a stream, as the server sends it. Over HTTP, one chunk joins everything buffered since the last poll, and `seq` is the last seq it holds. */
export type Chunk = StreamChunk & { stream_id: string };

/** What `rkllm_run` resolves to. */
export interface RunResult {
  text: string;
  finish_reason: FinishReason;
  perf: Record<string, number>;
  [field: string]: unknown;
}

/** A JSON-RPC error answered by the server: its code, message and `data` (see docs/errors.md). */
export class RkllmError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'RkllmError';
  }
}

/** What a reply message looks like. */
export interface Reply {
  id: string | number | null;
  result?: unknown;
  error?: ErrorObject;
}

/** Turns a reply into its result, or throws its error (or the connection's failure). */
export function resultOf(reply: Reply | Error): unknown {
  if (reply instanceof Error) throw reply;
  if (reply.error) throw new RkllmError(reply.error.code, reply.error.message, reply.error.data);
  return reply.result;
}

/**
 * How the client reaches the server: one per URL scheme. `stream` starts `rkllm_run_async` and
 * yields its chunks until the final one; returning early (a `break` in the caller's loop) aborts
 * the stream on the server.
 */
export interface Channel {
  call(method: string, params?: unknown): Promise<unknown>;
  stream(params: RunParams): AsyncGenerator<Chunk, void, undefined>;
  close(): Promise<void>;
}
