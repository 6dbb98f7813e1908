/**
 * The messages between the RKLLM engine (in the server process) and its runtime worker (a child
 * process that owns the native handle), over the channel of worker-process.ts. While a `run`
 * request is open, the worker also sends its callbacks as `result` messages, in order, before the
 * run's reply.
 */
import type { RKLLMParam, RKLLMPerfStat, TokenState } from '../types.js';
import type { LayoutVersion, NativeCrossAttnParam, NativeInferParam, NativeInput, NativeLoraAdapter, NativeParam } from './abi.js';

/** The layout setting: a version, or `auto` to let the library tell (see `plausibleLayouts`). */
export type LayoutSetting = LayoutVersion | 'auto';

/** Runtime functions that take the handle and answer a status code, with their arguments. */
export type Call =
  | { fn: 'rkllm_load_lora'; adapter: NativeLoraAdapter }
  | { fn: 'rkllm_load_prompt_cache'; path: string }
  | { fn: 'rkllm_release_prompt_cache' }
  | { fn: 'rkllm_clear_kv_cache'; keep_system_prompt: number; start_pos: Int32Array | null; end_pos: Int32Array | null }
  | { fn: 'rkllm_set_chat_template'; system_prompt: string; prompt_prefix: string; prompt_postfix: string }
  | { fn: 'rkllm_set_function_tools'; system_prompt: string; tools: string; tool_response_str: string }
  | { fn: 'rkllm_set_cross_attn_params'; params: NativeCrossAttnParam }
  | { fn: 'rkllm_abort' }
  | { fn: 'rkllm_destroy' };

/** What the engine asks of the worker. */
export type Command =
  /** Loads the library and binds every function with the layout. Replies {@link Opened}. */
  | { op: 'open'; library: string; layout: LayoutSetting }
  /** `rkllm_init`. Replies the status code. */
  | { op: 'init'; param: NativeParam }
  /**
   * One generation, through `rkllm_run` or `rkllm_run_async`. `limit` makes the worker pause the
   * runtime (callback return 1) after that many tokens, for layouts without a per-run
   * `max_new_tokens`. Replies {@link RunEnd} once the generation is over.
   */
  | { op: 'run'; run: number; async: boolean; input: NativeInput; infer: NativeInferParam; limit: number | null }
  /** Makes the run's next callback return 1 (pause): the consumer asked to stop. Replies null. */
  | { op: 'stop'; run: number }
  /** `rkllm_get_kv_cache_size` for `n_batch` slots. Replies {@link KvCacheSizes}. */
  | { op: 'kv_cache_size'; n_batch: number }
  /** Any other function of the handle. Replies the status code. */
  | { op: 'call'; call: Call };

/** The reply to `open`. */
export interface Opened {
  layout: LayoutVersion;
  /** Whether the layout was set or told by the library's defaults. */
  source: 'setting' | 'library';
  /** What the library's `rkllm_createDefaultParam()` returned, under that layout. */
  defaults: RKLLMParam;
}

/** The reply to `run`. */
export interface RunEnd {
  /** What `rkllm_run`/`rkllm_run_async` returned. */
  code: number;
  /** The last state the runtime reported: FINISH, ERROR, or none (paused or silent). */
  final: 'finish' | 'error' | null;
  /** The worker paused the runtime because the engine asked (`stop`). */
  stopped: boolean;
  /** The worker paused the runtime at `limit` tokens. */
  limited: boolean;
  /** The last RKLLMPerfStat the runtime reported. */
  perf: RKLLMPerfStat | null;
}

/** The reply to `kv_cache_size`. */
export interface KvCacheSizes {
  code: number;
  sizes: number[];
}

/** One callback of a run, copied out of the runtime's memory. `text` is whole UTF-8 characters. */
export interface ResultMessage {
  type: 'result';
  run: number;
  /** The runtime's FINISH and ERROR callbacks end the run: they arrive with its reply ({@link RunEnd}). */
  state: TokenState;
  text: string;
  token_id: number;
  perf: RKLLMPerfStat;
  last_hidden_layer?: { hidden_states: Float32Array; embd_size: number; num_tokens: number };
  logits?: { logits: Float32Array; vocab_size: number; num_tokens: number };
}
