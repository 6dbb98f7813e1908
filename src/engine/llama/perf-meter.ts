import { emptyPerf, type RKLLMPerfStat } from '../types.js';

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/**
 * The RKLLMPerfStat figures of one llama.cpp run, measured as RKLLM does: prefill from its start
 * to the first token, generation from the first token to the last. Callbacks during the run see
 * one live object ({@link live}); the end of the run gets a copy with the peak memory.
 */
export class PerfMeter {
  readonly live: RKLLMPerfStat = emptyPerf();
  #start = performance.now();
  #firstToken: number | undefined;

  startPrefill(tokens: number): void {
    this.#start = performance.now();
    this.live.prefill_tokens = tokens;
  }

  /** Counts one generated token. */
  token(): RKLLMPerfStat {
    const now = performance.now();
    if (this.#firstToken === undefined) {
      this.#firstToken = now;
      this.live.prefill_time_ms = round(now - this.#start);
    }
    this.live.generate_tokens++;
    this.live.generate_time_ms = round(now - this.#firstToken);
    return this.live;
  }

  /** The figures so far, with the process's peak memory (maxRSS, in kilobytes: its high-water mark, like RKLLM's VmHWM figure). */
  snapshot(): RKLLMPerfStat {
    return { ...this.live, memory_usage_mb: Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10 };
  }

  /** The figures of a run that ended normally: without tokens, all of its time was prefill. */
  finished(): RKLLMPerfStat {
    if (this.#firstToken === undefined) this.live.prefill_time_ms = round(performance.now() - this.#start);
    return this.snapshot();
  }
}
