/** Ollama's wire format: NDJSON streams, durations in nanoseconds. */
import type { RKLLMPerfStat } from '../../engine/types.js';
import type { Wire } from '../generation.js';

/** The Ollama API version these endpoints follow (what `GET /api/version` reports). */
export const OLLAMA_API_VERSION = '0.6.4';

/** One JSON object per line, `application/x-ndjson`; a failure is a last line `{"error"}`. */
export const NDJSON: Wire = {
  headers: { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' },
  frame: (line) => `${JSON.stringify(line)}\n`,
  failure: (message) => ({ error: message }),
};

/** Ollama's counts and durations (nanoseconds) of a finished run, from its perf and its wall time. */
export function timings(perf: RKLLMPerfStat, startedNs: bigint): Record<string, number> {
  const ns = (ms: number): number => Math.round(ms * 1e6);
  return {
    total_duration: Number(process.hrtime.bigint() - startedNs),
    load_duration: 0,
    prompt_eval_count: perf.prefill_tokens,
    prompt_eval_duration: ns(perf.prefill_time_ms),
    eval_count: perf.generate_tokens,
    eval_duration: ns(perf.generate_time_ms),
  };
}

export function now(): string {
  return new Date().toISOString();
}
