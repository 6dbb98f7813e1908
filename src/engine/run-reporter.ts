import {
  LLMCallState,
  emptyPerf,
  type FinishReason,
  type LLMResultCallback,
  type RKLLMPerfStat,
  type RKLLMResult,
  type RunOutcome,
  type TokenState,
} from './types.js';

/**
 * Drives one run's `LLMResultCallback` in RKLLM's order, for both engines: NORMAL/WAITING per
 * result, then exactly one FINISH or ERROR. A non-zero return (or a throw) from the consumer is a
 * stop request, after which no more results reach it: a faulty consumer never wedges the engine.
 */
export class RunReporter {
  readonly #callback: LLMResultCallback;
  #perf: RKLLMPerfStat = emptyPerf();
  #ended = false;
  stopRequested = false;

  constructor(callback: LLMResultCallback) {
    this.#callback = callback;
  }

  /** Hands one result to the consumer. Returns true when the consumer has just asked to stop. */
  deliver(result: RKLLMResult, state: TokenState): boolean {
    if (this.#ended || this.stopRequested) return false;
    this.#perf = result.perf;
    try {
      if (this.#callback(result, state)) this.stopRequested = true;
    } catch {
      this.stopRequested = true;
    }
    return this.stopRequested;
  }

  /**
   * Ends the run (once): the final FINISH callback, or ERROR when `error` is given. `perf` defaults
   * to the figures of the last result delivered.
   */
  end(reason: FinishReason, perf: RKLLMPerfStat | null = null, error?: string): RunOutcome {
    const outcome: RunOutcome = {
      finish_reason: error === undefined ? reason : 'error',
      perf: perf ?? this.#perf,
      ...(error === undefined ? {} : { error }),
    };
    if (this.#ended) return outcome;
    this.#ended = true;
    const state = error === undefined ? LLMCallState.RKLLM_RUN_FINISH : LLMCallState.RKLLM_RUN_ERROR;
    try {
      this.#callback({ text: '', token_id: -1, perf: outcome.perf, ...(error === undefined ? {} : { error }) }, state);
    } catch {
      // The run is over either way; a failing consumer cannot change the outcome.
    }
    return outcome;
  }

  fail(error: string, perf: RKLLMPerfStat | null = null): RunOutcome {
    return this.end('error', perf, error);
  }
}
