/**
 * The engine contract, in the RKLLM C API's own vocabulary (rkllm.h). Both engines implement it:
 * the llama.cpp engine (node-llama-cpp) and, on Rockchip boards, the RKLLM runtime through FFI.
 * Field names follow the header exactly, so JSON-RPC parameters map onto them one to one.
 */
import type { EngineFeature } from './capabilities.js';
import type { EngineStatus } from './status.js';

/** The CPU masks of rkllm.h, for `extend_param.enabled_cpus_mask`. */
export const CPU_MASKS = {
  CPU0: 1 << 0,
  CPU1: 1 << 1,
  CPU2: 1 << 2,
  CPU3: 1 << 3,
  CPU4: 1 << 4,
  CPU5: 1 << 5,
  CPU6: 1 << 6,
  CPU7: 1 << 7,
} as const;

/** `LLMCallState`: the state passed with each callback. */
export const LLMCallState = {
  RKLLM_RUN_NORMAL: 0,
  RKLLM_RUN_WAITING: 1,
  RKLLM_RUN_FINISH: 2,
  RKLLM_RUN_ERROR: 3,
} as const;
export type LLMCallState = (typeof LLMCallState)[keyof typeof LLMCallState];

export const RKLLMInputType = {
  RKLLM_INPUT_PROMPT: 0,
  RKLLM_INPUT_TOKEN: 1,
  RKLLM_INPUT_EMBED: 2,
  RKLLM_INPUT_MULTIMODAL: 3,
} as const;
export type RKLLMInputType = (typeof RKLLMInputType)[keyof typeof RKLLMInputType];

export const RKLLMInferMode = {
  RKLLM_INFER_GENERATE: 0,
  RKLLM_INFER_GET_LAST_HIDDEN_LAYER: 1,
  RKLLM_INFER_GET_LOGITS: 2,
} as const;
export type RKLLMInferMode = (typeof RKLLMInferMode)[keyof typeof RKLLMInferMode];

export interface RKLLMExtendParam {
  base_domain_id: number;
  embed_flash: number;
  enabled_cpus_num: number;
  enabled_cpus_mask: number;
  n_batch: number;
  use_cross_attn: number;
}

/** `RKLLMParam`: what `rkllm_init` takes. */
export interface RKLLMParam {
  model_path: string;
  max_context_len: number;
  max_new_tokens: number;
  top_k: number;
  n_keep: number;
  top_p: number;
  temperature: number;
  repeat_penalty: number;
  frequency_penalty: number;
  presence_penalty: number;
  mirostat: number;
  mirostat_tau: number;
  mirostat_eta: number;
  skip_special_token: boolean;
  /** RKLLM 1.3 and later: keep generating past the end-of-sequence token. Absent means false. */
  ignore_eos_token?: boolean;
  is_async: boolean;
  img_start: string;
  img_end: string;
  img_content: string;
  extend_param: RKLLMExtendParam;
}

/** The sampling fields a single run may override (RKLLM 1.3's `sampling_params`). */
export interface SamplingParams {
  top_k: number;
  top_p: number;
  temperature: number;
  repeat_penalty: number;
  frequency_penalty: number;
  presence_penalty: number;
  mirostat?: number;
  mirostat_tau?: number;
  mirostat_eta?: number;
  /** Not in rkllm.h: a seed for reproducible sampling when temperature > 0. */
  seed?: number;
}

/** `RKLLMInput`, with the union flattened into optional members selected by `input_type`. */
export interface RKLLMInput {
  role: string;
  enable_thinking: boolean;
  input_type: RKLLMInputType;
  prompt_input?: string;
  token_input?: { input_ids: number[] };
  embed_input?: { embed: number[]; n_tokens?: number };
  multimodal_input?: Record<string, unknown>;
}

/** `RKLLMInferParam`, with RKLLM 1.3's per-run `max_new_tokens` and `sampling_params`. */
export interface RKLLMInferParam {
  mode: RKLLMInferMode;
  lora_params?: { lora_adapter_name: string } | null;
  prompt_cache_params?: { save_prompt_cache: number; prompt_cache_path: string } | null;
  keep_history: number;
  max_new_tokens?: number;
  sampling_params?: Partial<SamplingParams>;
}

/** `RKLLMLoraAdapter`: what `rkllm_load_lora` takes. */
export interface RKLLMLoraAdapter {
  lora_adapter_path: string;
  lora_adapter_name: string;
  scale: number;
}

/** `RKLLMCrossAttnParam`, with arrays in place of the pointers. */
export interface RKLLMCrossAttnParam {
  encoder_k_cache: number[];
  encoder_v_cache: number[];
  encoder_mask: number[];
  encoder_pos: number[];
  num_tokens: number;
}

/** The arguments of `rkllm_set_chat_template`: how a prompt is wrapped before tokenization. */
export interface ChatTemplate {
  system_prompt: string;
  prompt_prefix: string;
  prompt_postfix: string;
}

/** The arguments of `rkllm_set_function_tools`. `tools` is a JSON array of tool definitions. */
export interface FunctionTools {
  system_prompt: string;
  tools: string;
  /** The tag that wraps a function result fed back with role "tool", e.g. "tool_response". */
  tool_response_str: string;
}

/**
 * The arguments of `rkllm_clear_kv_cache`. Without positions the whole cache is cleared (keeping
 * the system prompt when asked); with them, slot i loses the range [start_pos[i], end_pos[i]).
 */
export interface KvCacheClear {
  keep_system_prompt: boolean;
  start_pos?: number[];
  end_pos?: number[];
}

/** `rkllm_get_kv_cache_size`: tokens held in the KV cache, one entry per slot (batch index). */
export interface KvCacheSize {
  cache_sizes: number[];
}

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

/** What a GET_LAST_HIDDEN_LAYER or GET_LOGITS run produces besides text. */
export type RunOutputs = Pick<RKLLMResult, 'last_hidden_layer' | 'logits'>;

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
}

export interface RunRequest {
  input: RKLLMInput;
  infer: RKLLMInferParam;
  /** Aborting it stops this run (the per-run equivalent of `rkllm_abort`). */
  signal?: AbortSignal;
}

/** A run started with `runAsync`. */
export interface RunHandle {
  /** Settles when the run has ended; never rejects (failures arrive as `finish_reason: "error"`). */
  readonly done: Promise<RunOutcome>;
}

/**
 * The engine contract. One instance holds at most one loaded model (one RKLLM handle) at a time:
 * `init` loads it, `destroy` frees it, and `init` may then load another. Every method that needs
 * a model throws ENGINE_UNAVAILABLE (-32004) without one; a feature the engine cannot do throws
 * NOT_SUPPORTED (-32005) naming the engine and the feature (see `capabilities.ts`).
 */
export interface Engine {
  /** A short name, e.g. "llama.cpp" or "rkllm", used in messages. */
  readonly name: string;
  /** How many runs can execute at the same time. The scheduler queues the rest. */
  readonly slots: number;
  /** The parameters the engine was initialised with (defaults filled in). Throws without a model. */
  readonly param: RKLLMParam;
  /** Whether the engine can do `feature` at all (with any model). */
  supports(feature: EngineFeature): boolean;
  /** Loads the model (`rkllm_init`). Throws MODEL_LOADED while a model is loaded or loading. */
  init(param: RKLLMParam): Promise<void>;
  /**
   * Checks an input before it is queued, where the engine can (e.g. a prompt longer than the
   * context). Rejects with an RpcError. Engines that cannot check ahead accept everything.
   */
  validate(request: RunRequest): Promise<void>;
  /** Runs to the end, invoking `callback` for every token. Resolves when generation ends. */
  run(request: RunRequest, callback: LLMResultCallback): Promise<RunOutcome>;
  /** Starts a run and returns at once. */
  runAsync(request: RunRequest, callback: LLMResultCallback): RunHandle;
  /** Stops every running generation (`rkllm_abort`). */
  abort(): void;
  /** True while at least one generation runs (`rkllm_is_running`). */
  isRunning(): boolean;
  /** `rkllm_load_lora`: loads an adapter that runs can then name in `lora_params`. */
  loadLora(adapter: RKLLMLoraAdapter): Promise<void>;
  /** `rkllm_load_prompt_cache`: later runs whose input starts with the cached prefix reuse it. */
  loadPromptCache(path: string): Promise<void>;
  /** `rkllm_release_prompt_cache`. */
  releasePromptCache(): Promise<void>;
  /** `rkllm_clear_kv_cache`. */
  clearKvCache(request: KvCacheClear): Promise<void>;
  /** `rkllm_get_kv_cache_size`. */
  getKvCacheSize(): Promise<KvCacheSize>;
  /** `rkllm_set_chat_template`. */
  setChatTemplate(template: ChatTemplate): Promise<void>;
  /** `rkllm_set_function_tools`. */
  setFunctionTools(tools: FunctionTools): Promise<void>;
  /** `rkllm_set_cross_attn_params`. */
  setCrossAttnParams(params: RKLLMCrossAttnParam): Promise<void>;
  /** Frees the model (`rkllm_destroy`), after aborting its runs. The engine can `init` again. Idempotent. */
  destroy(): Promise<void>;
  /** Frees the model and everything else the engine holds (the runtime itself). Idempotent; the engine is unusable afterwards. */
  dispose(): Promise<void>;
  /** The engine's state for the status method, when it supervises a runtime that can fail and restart. */
  status?(): EngineStatus;
}

/** `rkllm_createDefaultParam()`: the runtime's defaults. */
export function createDefaultParam(): RKLLMParam {
  return {
    model_path: '',
    max_context_len: 512,
    max_new_tokens: -1,
    top_k: 40,
    n_keep: 0,
    top_p: 0.9,
    temperature: 0.8,
    repeat_penalty: 1.1,
    frequency_penalty: 0,
    presence_penalty: 0,
    mirostat: 0,
    mirostat_tau: 5.0,
    mirostat_eta: 0.1,
    skip_special_token: true,
    is_async: false,
    img_start: '',
    img_end: '',
    img_content: '',
    extend_param: {
      base_domain_id: 0,
      embed_flash: 0,
      enabled_cpus_num: 0,
      enabled_cpus_mask: 0,
      n_batch: 1,
      use_cross_attn: 0,
    },
  };
}

export function emptyPerf(): RKLLMPerfStat {
  return { prefill_time_ms: 0, prefill_tokens: 0, generate_time_ms: 0, generate_tokens: 0, memory_usage_mb: 0 };
}
