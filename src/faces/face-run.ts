/**
 * One generation for a face: started through the hub (admission, queue, the client's limits and
 * ownership, metrics) with a live outlet of its own, so the face sees each piece of text as it is
 * made. Stop strings and tool calls are applied on the way; the run is aborted when a stop string
 * is seen or the client goes away (`signal`), queued or running, prefill included.
 */
import type { Client } from '../clients.js';
import type { FinishReason, RKLLMPerfStat } from '../engine/types.js';
import type { RunParams, StreamHub } from '../streams/hub.js';
import type { ChunkOutlet } from '../streams/outlet.js';
import type { Chunk } from '../streams/stream.js';
import { errorObject, type ErrorObject } from '../errors.js';
import { StopFilter } from './stop-filter.js';
import { ToolCallCatcher, parseCall, type ToolCall } from './tool-calls.js';

/** How a face wants its run. */
export interface FaceRunOptions {
  params: RunParams;
  client: Client;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
  stop: readonly string[];
  /** "catch": tools are offered, calls may appear in the text; "forced": the whole output is one call's JSON. */
  tools?: 'catch' | 'forced';
  /** Called once the run is admitted (queued or running), before any text: a streaming face sends its headers. */
  onStarted?: () => void;
  /** Receives the text the client may see, as it comes (streaming faces). */
  onText?: (text: string) => void;
  /** Over this many bytes waiting to be written, the client is not reading: the run is stopped. */
  sendLimit: { bytes: number; setting: string };
  /** Bytes waiting to be written to the client (a streaming reply's `writableLength`); 0 when nothing is written live. */
  pending?: () => number;
}

/** How a face run ended. */
export interface FaceRunResult {
  /** Everything the client may see (what `onText` received), joined. */
  text: string;
  calls: ToolCall[];
  /** "abort" only when the client went away; a stop string ends with "stop". */
  finish_reason: FinishReason;
  perf: RKLLMPerfStat;
  /** The prompt's size in tokens, a prefix still in the KV cache included (absent where the engine does not tell). */
  input_tokens?: number;
  error?: ErrorObject;
}

/** Runs `options.params` and resolves once it has ended. Rejects with the hub's refusal (queue full, limits, bad input). */
export async function runForFace(hub: StreamHub, options: FaceRunOptions): Promise<FaceRunResult> {
  const { signal, onText } = options;
  const closed = new AbortController();
  const onGone = (): void => closed.abort();
  if (signal.aborted) closed.abort();
  else signal.addEventListener('abort', onGone, { once: true });
  const stops = new StopFilter(options.stop);
  const catcher = options.tools === 'catch' ? new ToolCallCatcher() : undefined;
  const parts: string[] = [];
  // A grammar lets JSON end with whitespace until the model stops: it is held back, and dropped at the end.
  const trimEnd = options.params.infer.json_schema !== undefined;
  let trailing = '';
  const emit = (text: string): void => {
    let visible = catcher ? catcher.push(text) : text;
    if (trimEnd) {
      const all = trailing + visible;
      visible = all.trimEnd();
      trailing = all.slice(visible.length);
    }
    if (visible === '' || options.tools === 'forced') return;
    parts.push(visible);
    onText?.(visible);
  };
  let raw = '';
  let last: Chunk | undefined;
  let failure: ErrorObject | undefined;
  let ended!: () => void;
  const done = new Promise<void>((resolve) => (ended = resolve));
  const outlet: ChunkOutlet = {
    closed: closed.signal,
    sendLimit: options.sendLimit,
    send: (_streamId, chunk) => {
      if (chunk.end) {
        emit(stops.flush());
        last = chunk;
        ended();
        return true;
      }
      raw += chunk.delta;
      emit(stops.push(chunk.delta));
      if (stops.stopped) closed.abort();
      return (options.pending?.() ?? 0) <= options.sendLimit.bytes;
    },
    fail: (error) => {
      failure = errorObject(error);
      ended();
    },
    hold: () => () => {},
  };
  try {
    const stream = await hub.start(options.params, undefined, { kind: 'push', outlet }, options.client);
    options.onStarted?.();
    await Promise.race([done, stream.ended]);
    last ??= await stream.ended;
  } finally {
    signal.removeEventListener('abort', onGone);
  }
  const caught = catcher?.finish() ?? { text: '', calls: [] };
  const forced = options.tools === 'forced' ? parseCall(raw) : undefined;
  // A forced call that did not complete (max_tokens) is given back as text, so the client sees what was made.
  const leftover = options.tools === 'forced' && !forced ? raw.trim() : caught.text;
  if (leftover !== '') {
    parts.push(leftover);
    onText?.(leftover);
  }
  const calls = forced ? [forced] : caught.calls;
  let reason = last.finish_reason ?? 'stop';
  if (reason === 'abort' && stops.stopped && !signal.aborted) reason = 'stop';
  const result: FaceRunResult = { text: parts.join(''), calls, finish_reason: reason, perf: last.perf! };
  if (last.input_tokens !== undefined) result.input_tokens = last.input_tokens;
  const error = failure ?? last.error;
  if (error) result.error = error;
  return result;
}
