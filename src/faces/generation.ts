/**
 * One generation for a face (OpenAI, Ollama, MCP), read from the hub's in-process generation: the
 * hub admits it (queue, the client's limits and ownership, metrics) and aborts it when the client
 * goes away, queued or running, prefill included. On the way, stop strings end it and tool calls
 * are caught; output constrained to JSON (a forced call's too) ends with the value, in the hub
 * (`JsonEnd`). `serveGeneration` is the one handler skeleton of the HTTP faces.
 */
import type { ServerResponse } from 'node:http';
import type { Client } from '../clients.js';
import type { FinishReason, RKLLMPerfStat } from '../engine/types.js';
import { fault, type ServerError } from '../errors.js';
import type { RunParams, StreamHub } from '../streams/hub.js';
import { sendBufferFull, type SendLimit } from '../streams/live-sink.js';
import type { Chunk } from '../streams/stream.js';
import type { HttpExchange } from '../transports/http-route.js';
import { toRunParams, useModel, type GenerationRequest } from './generation-request.js';
import type { HubDeps } from './http-kit.js';
import { StopFilter, ToolCallCatcher, parseCall, type ToolCall } from './text-filters.js';

/** How a face wants its generation. */
export interface TextRunOptions {
  params: RunParams;
  client: Client;
  /** Aborts when the client goes away (or cancels). */
  signal: AbortSignal;
  stop: readonly string[];
  /** "catch": tools are offered, calls may appear in the text; "forced": the whole output is one call's JSON. */
  tools?: 'catch' | 'forced' | undefined;
  /** The request that asked for it (MCP's request id), for logs and `request_id`. */
  requestId?: string | number | undefined;
  /** Called once the run is admitted (queued or running), before any text: a streaming face sends its headers. */
  onStarted?: (streamId: string) => void;
  /** Receives the text the client may see, as it comes, and the tokens generated so far. */
  onText?: (text: string, tokens: number) => void;
  /** A streaming reply: over `limit` bytes waiting to be written, the client is not reading, and the run is stopped. */
  backpressure?: { pending: () => number; limit: SendLimit } | undefined;
}

/** How a face's generation ended. */
export interface TextRun {
  /** Everything the client may see (what `onText` received), joined. */
  text: string;
  calls: ToolCall[];
  /** "abort" only when the client went away; a stop string ends with "stop". */
  finish_reason: FinishReason;
  perf: RKLLMPerfStat;
  /** The prompt's size in tokens, a prefix still in the KV cache included (absent where the engine does not tell). */
  input_tokens?: number;
  error?: ServerError;
  stream_id: string;
}

/** Runs `options.params` to its end. Rejects with the hub's refusal (queue full, limits, bad input). */
export async function runText(hub: StreamHub, options: TextRunOptions): Promise<TextRun> {
  const { signal, onText, tools, backpressure } = options;
  const stops = new StopFilter(options.stop);
  const catcher = tools === 'catch' ? new ToolCallCatcher() : undefined;
  const parts: string[] = [];
  let raw = '';
  let tokens = 0;
  const show = (text: string): void => {
    if (text === '') return;
    parts.push(text);
    onText?.(text, tokens);
  };
  const emit = (text: string): void => {
    const visible = catcher ? catcher.push(text) : text;
    if (tools !== 'forced') show(visible);
  };
  const generation = await hub.generate(options.params, { signal, owner: options.client, requestId: options.requestId });
  options.onStarted?.(generation.id);
  let last: Chunk | undefined;
  let behind = false;
  for await (const chunk of generation) {
    tokens = chunk.end ? chunk.seq : chunk.seq + 1;
    if (chunk.end) {
      emit(stops.flush());
      last = chunk;
      continue;
    }
    raw += chunk.delta;
    emit(stops.push(chunk.delta));
    if (stops.stopped) generation.stop();
    else if (backpressure && !behind && !signal.aborted && backpressure.pending() > backpressure.limit.bytes) {
      behind = true;
      generation.stop(sendBufferFull(backpressure.limit, generation.id, chunk.seq, 'stream'));
    }
  }
  const caught = catcher?.finish() ?? { text: '', calls: [] };
  const forced = tools === 'forced' ? parseCall(raw) : undefined;
  // A forced call that did not complete (max_tokens) is given back as text, so the client sees what was made.
  show(tools === 'forced' && !forced ? raw.trim() : caught.text);
  let reason = last!.finish_reason ?? 'stop';
  if (reason === 'abort' && stops.stopped && !signal.aborted) reason = 'stop';
  return {
    text: parts.join(''),
    calls: forced ? [forced] : caught.calls,
    finish_reason: reason,
    perf: last!.perf!,
    stream_id: generation.id,
    ...(last!.input_tokens !== undefined && { input_tokens: last!.input_tokens }),
    ...(generation.error && { error: generation.error }),
  };
}

/** How a face frames its streamed reply: each piece of text as a value, and the value that opens the reply, if any. */
export interface Framing {
  piece: (text: string) => unknown;
  opening?: unknown;
}

/** A face's wire format for a streamed reply: OpenAI's server-sent events, Ollama's NDJSON. */
export interface Wire {
  headers: Readonly<Record<string, string>>;
  /** One value as written. */
  frame: (value: unknown) => string;
  /** The value that tells the client the run failed after the reply began. */
  failure: (message: string) => unknown;
  /** Written last, after every value (SSE's `data: [DONE]`). */
  trailer?: string;
}

/**
 * A face's streamed HTTP reply, as the skeleton drives it: the headers once (when the run is
 * admitted), then one frame per value, written as the run produces them.
 */
export class ResponseStream {
  readonly #res: ServerResponse;
  readonly #wire: Wire;
  readonly #framing: Framing;
  #open = false;

  constructor(res: ServerResponse, wire: Wire, framing: Framing) {
    this.#res = res;
    this.#wire = wire;
    this.#framing = framing;
  }

  /** The run is admitted: the headers, and the opening value. */
  start(): void {
    if (this.#framing.opening === undefined) this.#openOnce();
    else this.send(this.#framing.opening);
  }

  text(text: string): void {
    this.send(this.#framing.piece(text));
  }

  send(value: unknown): void {
    this.#openOnce();
    if (!this.#res.writableEnded) this.#res.write(this.#wire.frame(value));
  }

  /** Ends the reply: the last `values`, then the trailer. */
  end(...values: unknown[]): void {
    for (const value of values) this.send(value);
    this.#openOnce();
    if (!this.#res.writableEnded) this.#res.end(this.#wire.trailer);
  }

  /** The run failed after the reply began: say so in the face's wire format, and end. */
  fail(message: string): void {
    this.end(this.#wire.failure(message));
  }

  /** Bytes written but not yet sent. */
  get pending(): number {
    return this.#res.writableLength;
  }

  #openOnce(): void {
    if (this.#open) return;
    this.#open = true;
    this.#res.writeHead(200, this.#wire.headers);
    this.#res.flushHeaders();
  }
}

/** What a face makes of one generation request, once the model it names is held (its name is `model`). */
export interface FacePlan extends Pick<TextRunOptions, 'stop' | 'tools'> {
  request: GenerationRequest;
  /** Streaming: the reply the text goes to as it comes; absent: one answer at the end. */
  live?: ResponseStream | undefined;
  /** Sends the end of the answer: the last frames when streaming, the whole JSON body otherwise. */
  finish(result: TextRun): void;
}

/**
 * The one handler skeleton of the HTTP faces: holds the model the request names (loaded when
 * needed), makes the run from `plan`, runs it, and answers: nothing when the client went away, an
 * error in the face's framing (streaming) or as ENGINE_ERROR, else the face's `finish`. The model is
 * released at the end, whatever happened.
 */
export async function serveGeneration(
  deps: HubDeps,
  exchange: HttpExchange,
  client: Client,
  model: { name: string | undefined; keepAlive?: unknown },
  plan: (model: string) => FacePlan,
): Promise<void> {
  const lease = await useModel(deps, client, model.name, model.keepAlive, exchange.signal);
  try {
    const face = plan(lease.name);
    const live = face.live;
    const result = await runText(deps.hub, {
      params: toRunParams(lease.engine, face.request, lease.name),
      client,
      signal: exchange.signal,
      stop: face.stop,
      tools: face.tools,
      ...(live
        ? {
            onStarted: () => live.start(),
            onText: (text) => live.text(text),
            backpressure: { pending: () => live.pending, limit: deps.sendLimit },
          }
        : {}),
    });
    if (exchange.signal.aborted) return;
    if (result.error) {
      if (live) return live.fail(result.error.message);
      throw fault('ENGINE_ERROR', 'detail', { detail: result.error.message });
    }
    face.finish(result);
  } finally {
    lease.release();
  }
}
