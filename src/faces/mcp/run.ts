import type { Client } from '../../clients.js';
import type { FinishReason, RKLLMPerfStat } from '../../engine/types.js';
import { ERROR_NAMES, ERRORS, ServerError } from '../../errors.js';
import type { RunParams, StreamHub } from '../../streams/hub.js';
import type { ChunkOutlet } from '../../streams/outlet.js';
import { StopFilter } from '../stop-filter.js';

/** How a generation tool call ended: its whole text, as the final result gives it. */
export interface Generated {
  text: string;
  finish_reason: FinishReason;
  perf: RKLLMPerfStat;
  stream_id: string;
}

export interface GenerateOptions {
  hub: StreamHub;
  params: RunParams;
  client: Client;
  /** The MCP request id, which names the stream's request in logs and `request_id`. */
  requestId: string | number;
  /** Aborts the generation: the caller cancelled (notifications/cancelled) or went away. */
  signal: AbortSignal;
  stop: readonly string[];
  /** Told the stream's id once it is admitted. */
  onStart?: (streamId: string) => void;
  /** Sees each new piece of text and the number of tokens generated so far; joined, the pieces are the final text. */
  onText?: (text: string, tokens: number) => void;
}

/**
 * One generation through the hub, delivered live to the tool call that asked for it: admitted by
 * the same queue, limits and ownership as every run, aborted when `signal` aborts (including during
 * prefill). Stop sequences end it early, and the text stops before the first one.
 */
export async function generate(options: GenerateOptions): Promise<Generated> {
  const { hub, params, client, requestId, signal, onText } = options;
  const scanner = new StopFilter(options.stop);
  const stopSequence = new AbortController();
  const parts: string[] = [];
  let failed: ServerError | undefined;
  const release = (text: string, tokens: number): void => {
    if (text === '') return;
    parts.push(text);
    onText?.(text, tokens);
  };
  const outlet: ChunkOutlet = {
    closed: AbortSignal.any([signal, stopSequence.signal]),
    sendLimit: { bytes: Number.MAX_SAFE_INTEGER, setting: 'connections.max_send_buffer_bytes' },
    send: (_streamId, chunk) => {
      if (chunk.end) return true;
      release(scanner.push(chunk.delta), chunk.seq + 1);
      if (scanner.stopped) stopSequence.abort();
      return true;
    },
    fail: (error) => (failed = error),
    hold: () => () => {},
  };
  const stream = await hub.start(params, requestId, { kind: 'push', outlet }, client);
  options.onStart?.(stream.id);
  const last = await stream.ended;
  if (!scanner.stopped) release(scanner.flush(), last.seq);
  if (failed) throw failed;
  if (last.error) {
    const { code, message, data } = last.error;
    throw new ServerError(ERROR_NAMES.find((name) => ERRORS[name].code === code) ?? 'ENGINE_ERROR', message, data);
  }
  const finish: FinishReason = scanner.stopped ? 'stop' : last.finish_reason!;
  return { text: parts.join(''), finish_reason: finish, perf: last.perf!, stream_id: stream.id };
}
