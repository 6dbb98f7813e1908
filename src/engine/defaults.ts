import { defaultParam } from '../request-schema.js';
import type { RKLLMExtendParam, RKLLMParam } from './params.js';
import type { RKLLMPerfStat } from './results.js';

/** What `rkllm_init` is given: the model and any other field; the engine's defaults fill in the rest. */
export type InitParam = Partial<Omit<RKLLMParam, 'extend_param'>> & { model_path: string; extend_param?: Partial<RKLLMExtendParam> };

/** `given` laid over `base`: the fields given replace the base's, `extend_param` field by field. */
export function overParam(base: RKLLMParam, given: InitParam): RKLLMParam {
  return { ...base, ...given, extend_param: { ...base.extend_param, ...given.extend_param } };
}

/** The defaults of `rkllm_createDefaultParam()` in rkllm.h, for engines without a library to ask (llama.cpp). */
export const createDefaultParam: () => RKLLMParam = defaultParam;

export function emptyPerf(): RKLLMPerfStat {
  return { prefill_time_ms: 0, prefill_tokens: 0, generate_time_ms: 0, generate_tokens: 0, memory_usage_mb: 0 };
}
