/** A run's account from the worker, as its consumer sees it: each callback as an RKLLMResult, and how the run ended. */
import type { FinishReason, RKLLMResult } from '../types.js';
import type { ResultMessage, RunEnd } from './protocol.js';
import { explain } from './runtime-process.js';

/** One callback of the worker as the consumer's RKLLMResult: the runtime's typed arrays become plain arrays, its logits raw. */
export function resultOf(message: ResultMessage): RKLLMResult {
  const result: RKLLMResult = { text: message.text, token_id: message.token_id, perf: message.perf };
  if (message.last_hidden_layer) {
    const { hidden_states, embd_size, num_tokens } = message.last_hidden_layer;
    result.last_hidden_layer = { hidden_states: [...hidden_states], embd_size, num_tokens };
  }
  if (message.logits) {
    const { logits, vocab_size, num_tokens } = message.logits;
    result.logits = { logits: [...logits], vocab_size, num_tokens, normalization: 'none' };
  }
  return result;
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
