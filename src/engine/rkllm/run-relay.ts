import {
  LLMCallState,
  emptyPerf,
  type FinishReason,
  type LLMResultCallback,
  type RKLLMPerfStat,
  type RKLLMResult,
  type RunOutcome,
} from '../types.js';
import type { ResultMessage, RunEnd } from './protocol.js';
import { explain } from './runtime-process.js';

/**
 * One run as its consumer sees it: the worker's result messages become `LLMResultCallback`
 * calls (NORMAL/WAITING per token), and the run ends with exactly one FINISH or ERROR. A non-zero
 * return (or a throw) from the consumer is a stop request, after which no more tokens reach it.
 */
export class RunRelay {
  readonly #callback: LLMResultCallback;
  #perf: RKLLMPerfStat = emptyPerf();
  #ended = false;
  stopRequested = false;

  constructor(callback: LLMResultCallback) {
    this.#callback = callback;
  }

  /** Hands one callback to the consumer. Returns true when the consumer has just asked to stop. */
  deliver(message: ResultMessage): boolean {
    if (this.#ended || this.stopRequested) return false;
    this.#perf = message.perf;
    const result: RKLLMResult = { text: message.text, token_id: message.token_id, perf: message.perf };
    if (message.last_hidden_layer) {
      const { hidden_states, embd_size, num_tokens } = message.last_hidden_layer;
      result.last_hidden_layer = { hidden_states: [...hidden_states], embd_size, num_tokens };
    }
    if (message.logits) {
      const { logits, vocab_size, num_tokens } = message.logits;
      result.logits = { logits: [...logits], vocab_size, num_tokens, normalization: 'none' };
    }
    try {
      if (this.#callback(result, message.state)) this.stopRequested = true;
    } catch {
      this.stopRequested = true;
    }
    return this.stopRequested;
  }

  /** Ends the run (once): the final FINISH callback, or ERROR when `error` is given. */
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

  fail(error: string): RunOutcome {
    return this.end('error', null, error);
  }
}

/** What the engine knows about a run when judging how it ended. */
export interface RunVerdictContext {
  /** Aborted (rkllm_abort or the run's signal) or stopped by its consumer. */
  stopped: boolean;
  /** The most tokens it could generate, when bounded. */
  maxNewTokens: number | null;
  maxContextLen: number;
  /** The runtime's output lines that explain a refusal. */
  log: string[];
}

/** Why a run ended, from the worker's account of it, or the error to report. */
export function judge(end: RunEnd, context: RunVerdictContext): { reason: FinishReason; error?: string } {
  const why = explain(context.log);
  if (end.code !== 0) return { reason: 'error', error: `rkllm_run failed with code ${end.code}: ${why}` };
  if (end.final === 'error') return { reason: 'error', error: `the RKLLM runtime reported RKLLM_RUN_ERROR: ${why}` };
  if (context.stopped) return { reason: 'abort' };
  const generated = end.perf?.generate_tokens ?? 0;
  const filled = (end.perf?.prefill_tokens ?? 0) + generated >= context.maxContextLen;
  if (end.limited || filled || (context.maxNewTokens !== null && generated >= context.maxNewTokens)) return { reason: 'length' };
  return { reason: 'stop' };
}
