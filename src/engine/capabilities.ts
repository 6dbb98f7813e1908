import { fault, type ServerError } from '../errors.js';

/**
 * What an engine may or may not be able to do, one flag per RKLLM feature. Engines report them
 * through `Engine.supports`, `rkllm_list_functions` derives each method's `supported` from them,
 * and an engine refuses an unsupported request with {@link notSupported}.
 */
export const ENGINE_FEATURES = {
  input_prompt: 'PROMPT input (RKLLM_INPUT_PROMPT)',
  input_token: 'TOKEN input (RKLLM_INPUT_TOKEN)',
  input_embed: 'EMBED input (RKLLM_INPUT_EMBED)',
  input_multimodal: 'MULTIMODAL input (RKLLM_INPUT_MULTIMODAL)',
  images: 'images (a vision encoder: --vision-encoder)',
  infer_generate: 'inference mode GENERATE (RKLLM_INFER_GENERATE)',
  infer_last_hidden_layer: 'inference mode GET_LAST_HIDDEN_LAYER (RKLLM_INFER_GET_LAST_HIDDEN_LAYER)',
  infer_logits: 'inference mode GET_LOGITS (RKLLM_INFER_GET_LOGITS)',
  lora: 'LoRA adapters (rkllm_load_lora)',
  prompt_cache: 'prompt caches (rkllm_load_prompt_cache, save_prompt_cache)',
  kv_cache: 'KV cache control (rkllm_clear_kv_cache, rkllm_get_kv_cache_size)',
  chat_template: 'chat templates (rkllm_set_chat_template)',
  function_tools: 'function calling (rkllm_set_function_tools)',
  cross_attn: 'cross-attention (rkllm_set_cross_attn_params, extend_param.use_cross_attn)',
  mirostat: 'mirostat sampling (mirostat 1 or 2)',
  json_schema: 'JSON-schema constrained output (json_schema, response_format)',
  run_tools: 'function tools offered to one run (tools in a request)',
  run_template: 'a chat template for one run (chat_template in a request)',
  seed: 'seeded sampling (seed)',
} as const;

export type EngineFeature = keyof typeof ENGINE_FEATURES;

/** Every feature name, in a stable order. */
export const ENGINE_FEATURE_NAMES = Object.keys(ENGINE_FEATURES) as EngineFeature[];

/**
 * The "not supported by this engine" error (-32005). It names the engine and the feature, in the
 * message and in `data`, and says why when the engine knows.
 */
export function notSupported(engine: string, feature: EngineFeature, reason?: string): ServerError {
  const vars = { feature: ENGINE_FEATURES[feature], engine };
  return reason
    ? fault('NOT_SUPPORTED', 'feature_because', { ...vars, reason }, { engine, feature, reason })
    : fault('NOT_SUPPORTED', 'feature', vars, { engine, feature });
}
