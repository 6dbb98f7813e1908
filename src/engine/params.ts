/**
 * What the engine takes, in the RKLLM C API's own vocabulary (rkllm.h): the parameters of
 * `rkllm_init`, of a run, and of the calls that configure a loaded model. Field names follow the
 * header exactly, so JSON-RPC parameters map onto them one to one.
 */
import type { Declared, DeclaredParam } from '../request-schema.js';

/** The CPU masks of rkllm.h, CPU0 = 1 << 0 to CPU7 = 1 << 7, for `extend_param.enabled_cpus_mask`. */
export const CPU_MASKS: Record<string, number> = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`CPU${i}`, 1 << i]));

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

/**
 * `RKLLMParam`: what `rkllm_init` takes, as declared (with its defaults) in src/request-schema.ts.
 * `ignore_eos_token` (RKLLM 1.3 and later: keep generating past the end-of-sequence token) is not
 * settable; absent means false.
 */
export type RKLLMParam = DeclaredParam & { ignore_eos_token?: boolean };
export type RKLLMExtendParam = RKLLMParam['extend_param'];

/**
 * The sampling fields a single run may override (RKLLM 1.3's `sampling_params`), as declared in
 * src/request-schema.ts; RKLLMParam holds the first six.
 */
export type SamplingParams = Pick<
  Declared,
  'top_k' | 'top_p' | 'temperature' | 'repeat_penalty' | 'frequency_penalty' | 'presence_penalty'
> &
  Partial<Pick<Declared, 'mirostat' | 'mirostat_tau' | 'mirostat_eta' | 'seed'>>;

/** `RKLLMInput`, with the union flattened into optional members selected by `input_type`. */
export interface RKLLMInput {
  role: string;
  enable_thinking: boolean;
  input_type: RKLLMInputType;
  prompt_input?: string;
  token_input?: { input_ids: number[] };
  embed_input?: { embed: number[]; n_tokens?: number };
  multimodal_input?: Record<string, unknown>;
  /**
   * Not in rkllm.h: a whole conversation (OpenAI/Ollama chat), for input_type PROMPT in place of
   * `prompt_input`. The engine turns it into a prompt with the model's own chat template when it
   * has one, else with the configured one (`rkllm_set_chat_template`).
   */
  messages?: ChatMessage[];
  /**
   * Not in rkllm.h: the run's images, as the client sent them (PNG, JPEG or WebP bytes), in the
   * order of the `<image>` placeholders in the prompt or messages (see `placeImages`). An engine
   * with a vision encoder encodes them and runs RKLLM_INPUT_MULTIMODAL; any other refuses with
   * NOT_SUPPORTED (feature `images`).
   */
  images?: Uint8Array[];
}

/** One message of a conversation (`RKLLMInput.messages`). */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
}

/** `RKLLMInferParam`, with RKLLM 1.3's per-run `max_new_tokens` and `sampling_params`. */
export interface RKLLMInferParam {
  mode: RKLLMInferMode;
  lora_params?: { lora_adapter_name: string } | null;
  prompt_cache_params?: { save_prompt_cache: number; prompt_cache_path: string } | null;
  keep_history: number;
  max_new_tokens?: number;
  sampling_params?: Partial<SamplingParams>;
  /**
   * Not in rkllm.h: constrains the output to JSON that matches this JSON Schema (a grammar on
   * llama.cpp); `{}` allows any JSON object. Engines without grammars refuse it (NOT_SUPPORTED).
   */
  json_schema?: Record<string, unknown>;
  /** Not in rkllm.h: this run's own chat template, in place of the one `rkllm_set_chat_template` set for everyone. */
  chat_template?: ChatTemplate;
  /** Not in rkllm.h: this run's own function tools, in place of those `rkllm_set_function_tools` set for everyone. */
  function_tools?: FunctionTools;
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
export type ChatTemplate = Declared['chat_template'];

/**
 * The arguments of `rkllm_set_function_tools`: `tools` is a JSON array of tool definitions,
 * `tool_response_str` the tag that wraps a function result fed back with role "tool".
 */
export type FunctionTools = Declared['function_tools'];

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
