/** What the engine gives back, in rkllm.h's vocabulary: each callback's state and result, and how a run ended. */

/** `LLMCallState`: the state passed with each callback. */
export const LLMCallState = {
  RKLLM_RUN_NORMAL: 0,
  RKLLM_RUN_WAITING: 1,
  RKLLM_RUN_FINISH: 2,
  RKLLM_RUN_ERROR: 3,
} as const;
export type LLMCallState = (typeof LLMCallState)[keyof typeof LLMCallState];

/** The states of the callbacks before a run's last: NORMAL with a result, WAITING while a character is incomplete. */
export type TokenState = typeof LLMCallState.RKLLM_RUN_NORMAL | typeof LLMCallState.RKLLM_RUN_WAITING;

/** `RKLLMResultLastHiddenLayer`: `hidden_states` holds num_tokens x embd_size values, row-major. */
export interface RKLLMResultLastHiddenLayer {
  hidden_states: number[];
  embd_size: number;
  num_tokens: number;
}

/**
 * `RKLLMResultLogits`: `logits` holds num_tokens x vocab_size values, row-major. `normalization`
 * says what the numbers are: raw logits ("none"), or log-probabilities ("log_softmax") when the
 * engine can only give normalised values.
 */
export interface RKLLMResultLogits {
  logits: number[];
  vocab_size: number;
  num_tokens: number;
  normalization: 'none' | 'log_softmax';
}

/** `RKLLMPerfStat`. */
export interface RKLLMPerfStat {
  prefill_time_ms: number;
  prefill_tokens: number;
  generate_time_ms: number;
  generate_tokens: number;
  memory_usage_mb: number;
  /** Not in rkllm.h: the time the vision encoder took for the run's images (decode, resize, NPU). */
  image_encode_ms?: number;
}

/**
 * `RKLLMResult` as delivered to the callback. `text` is always complete UTF-8: a character split
 * across tokens arrives once whole, after callbacks in the WAITING state.
 */
export interface RKLLMResult {
  text: string;
  token_id: number;
  perf: RKLLMPerfStat;
  /** Set once, in a NORMAL callback, by a GET_LAST_HIDDEN_LAYER run. */
  last_hidden_layer?: RKLLMResultLastHiddenLayer;
  /** Set once, in a NORMAL callback, by a GET_LOGITS run. */
  logits?: RKLLMResultLogits;
  /** Set with RKLLM_RUN_ERROR. */
  error?: string;
}

/** What a run produces besides text: the outputs of GET_LAST_HIDDEN_LAYER and GET_LOGITS, and its input's size. */
export interface RunOutputs extends Pick<RKLLMResult, 'last_hidden_layer' | 'logits'> {
  /**
   * Not in rkllm.h: the run's whole input in tokens, history included, where the engine knows it.
   * `perf.prefill_tokens` counts only what was evaluated, which a prefix still in the KV cache spares.
   */
  input_tokens?: number;
}

/**
 * `LLMResultCallback`. Called once per token (NORMAL), while a character is incomplete (WAITING),
 * and a last time with FINISH or ERROR. Returning a non-zero number asks the engine to stop.
 */
export type LLMResultCallback = (result: RKLLMResult, state: LLMCallState) => number | void;

/** Why a run ended. "shutdown" is the server's own: a graceful shutdown cut the stream short. */
export type FinishReason = 'stop' | 'length' | 'abort' | 'error' | 'shutdown';

export interface RunOutcome {
  finish_reason: FinishReason;
  perf: RKLLMPerfStat;
  error?: string;
  /** See `RunOutputs.input_tokens`. */
  input_tokens?: number;
}
