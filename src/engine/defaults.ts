import type { RKLLMExtendParam, RKLLMParam } from './params.js';
import type { RKLLMPerfStat } from './results.js';

/** What `rkllm_init` is given: the model and any other field; the engine's defaults fill in the rest. */
export type InitParam = Partial<Omit<RKLLMParam, 'extend_param'>> & { model_path: string; extend_param?: Partial<RKLLMExtendParam> };

/** `given` laid over `base`: the fields given replace the base's, `extend_param` field by field. */
export function overParam(base: RKLLMParam, given: InitParam): RKLLMParam {
  return { ...base, ...given, extend_param: { ...base.extend_param, ...given.extend_param } };
}

/** The defaults of `rkllm_createDefaultParam()` in rkllm.h, for engines without a library to ask (llama.cpp). */
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
