import {
  LLMCallState,
  emptyPerf,
  type FinishReason,
  type LLMResultCallback,
  type RKLLMPerfStat,
  type RKLLMResult,
  type RunOutcome,
} from './types.js';

function peakMemoryMb(): number {
  // maxRSS is in kilobytes: the process's high-water mark, like RKLLM's VmHWM figure.
  return Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10;
}

/**
 * Drives one run's callback in RKLLM's order: NORMAL/WAITING per token, then exactly one FINISH
 * or ERROR. Keeps the RKLLMPerfStat figures and remembers a non-zero callback return (a stop
 * request). A callback that throws counts as a stop request, so a faulty consumer never wedges
 * the engine.
 */
export class ResultEmitter {
  readonly #callback: LLMResultCallback;
  readonly #perf: RKLLMPerfStat = emptyPerf();
  #start = performance.now();
  #firstToken: number | undefined;
  #ended = false;
  stopRequested = false;

  constructor(callback: LLMResultCallback) {
    this.#callback = callback;
  }

  startPrefill(tokens: number): void {
    this.#start = performance.now();
    this.#perf.prefill_tokens = tokens;
  }

  token(text: string, tokenId: number, state: typeof LLMCallState.RKLLM_RUN_NORMAL | typeof LLMCallState.RKLLM_RUN_WAITING): void {
    const now = performance.now();
    if (this.#firstToken === undefined) {
      this.#firstToken = now;
      this.#perf.prefill_time_ms = round(now - this.#start);
    }
    this.#perf.generate_tokens++;
    this.#perf.generate_time_ms = round(now - this.#firstToken);
    this.#invoke({ text, token_id: tokenId, perf: this.#perf }, state);
  }

  /** Delivers the result of a GET_LAST_HIDDEN_LAYER or GET_LOGITS run, in one NORMAL callback as RKLLM does. */
  output(result: Pick<RKLLMResult, 'last_hidden_layer' | 'logits'>): void {
    this.#invoke({ text: '', token_id: -1, perf: this.#perf, ...result }, LLMCallState.RKLLM_RUN_NORMAL);
  }

  get perf(): RKLLMPerfStat {
    return { ...this.#perf, memory_usage_mb: peakMemoryMb() };
  }

  finish(reason: FinishReason): RunOutcome {
    if (this.#firstToken === undefined) this.#perf.prefill_time_ms = round(performance.now() - this.#start);
    return this.#end(LLMCallState.RKLLM_RUN_FINISH, { finish_reason: reason, perf: this.perf });
  }

  fail(message: string): RunOutcome {
    return this.#end(LLMCallState.RKLLM_RUN_ERROR, { finish_reason: 'error', perf: this.perf, error: message });
  }

  #end(state: LLMCallState, outcome: RunOutcome): RunOutcome {
    if (this.#ended) return outcome;
    this.#ended = true;
    try {
      this.#callback({ text: '', token_id: -1, perf: outcome.perf, ...(outcome.error ? { error: outcome.error } : {}) }, state);
    } catch {
      // The run is over either way; a failing consumer cannot change the outcome.
    }
    return outcome;
  }

  #invoke(result: RKLLMResult, state: LLMCallState): void {
    try {
      if (this.#callback(result, state)) this.stopRequested = true;
    } catch {
      this.stopRequested = true;
    }
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
