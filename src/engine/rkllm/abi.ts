/**
 * The native surface of Rockchip's RKLLM runtime (librkllmrt.so, rkllm.h), typed for koffi: every
 * struct of the 1.2.x and 1.3.x layouts, and the result callback (functions.ts binds the exported functions with them). This is
 * the only file that knows the memory layout; everything else speaks the `Native*` shapes below,
 * which koffi converts to and from C structs.
 *
 * What changed in 1.3.0 (public header history):
 * - RKLLMParam gains `ignore_eos_token` (after `skip_special_token`) and loses `img_start`,
 *   `img_end` and `img_content`;
 * - `rkllm_init` takes a pointer to an RKLLMCallback struct instead of a bare function;
 * - RKLLMInferParam gains `sampling_params` (after `prompt_cache_params`) and `max_new_tokens` (last);
 * - the multimodal input nests its image fields (now with start/end/content tags) and adds video;
 * - `rkllm_is_running` returns 1 while a task runs (1.2.x returns 0 while a task runs);
 * - a callback may return 2 (release the output buffers) besides 0 (continue) and 1 (pause).
 *
 * Layouts are LP64 (aarch64 on the boards, x86-64 for the ABI twin): koffi applies the platform's
 * C alignment rules. `void *userdata` is declared `intptr_t` (same size and passing convention), so
 * it carries a run's number.
 */
import koffi, { type LibraryHandle, type TypeObject } from 'koffi';
import type { RKLLMExtendParam, RKLLMLoraAdapter, RKLLMParam, RKLLMPerfStat, SamplingParams } from '../types.js';

/** What a koffi signature names: a type, a type's name, or an output parameter. */
export type TypeSpec = TypeObject | string | ReturnType<typeof koffi.out>;
/** A function bound by koffi. */
export type KoffiFunction = ReturnType<LibraryHandle['func']>;

export const LAYOUT_VERSIONS = ['1.2', '1.3'] as const;
/** A struct layout: runtime 1.2.x or 1.3.x. */
export type LayoutVersion = (typeof LAYOUT_VERSIONS)[number];

/** `RKLLMExtendParam`. `reserved` is 104 bytes and must be zero. */
export type NativeExtendParam = RKLLMExtendParam & { reserved: Uint8Array };

/**
 * `RKLLMParam`: the engine's RKLLMParam (whose fields are the header's), where 1.2 has the
 * `img_*` strings (NULL when empty) and 1.3 has `ignore_eos_token` instead.
 */
export type NativeParam = Omit<RKLLMParam, 'img_start' | 'img_end' | 'img_content' | 'extend_param'> & {
  img_start?: string | null;
  img_end?: string | null;
  img_content?: string | null;
  extend_param: NativeExtendParam;
};

export type NativeLoraAdapter = RKLLMLoraAdapter;

/** 1.2's `RKLLMMultiModelInput` (flat image fields). */
const MULTIMODAL_12 = {
  prompt: 'const char *',
  image_embed: 'float *',
  n_image_tokens: 'size_t',
  n_image: 'size_t',
  image_width: 'size_t',
  image_height: 'size_t',
} as const;

/** 1.3's image part of `RKLLMMultiModalInput`. */
const IMAGE_13 = {
  image_embed: 'float *',
  n_image_tokens: 'size_t',
  n_image: 'size_t',
  image_start: 'const char *',
  image_end: 'const char *',
  image_content: 'const char *',
  image_width: 'size_t',
  image_height: 'size_t',
} as const;

/** 1.3's video part of `RKLLMMultiModalInput`. */
const VIDEO_13 = {
  video_embed: 'float *',
  n_frame_tokens: 'size_t',
  n_frame_per_video: 'size_t',
  n_video: 'size_t',
  video_start: 'const char *',
  video_end: 'const char *',
  video_content: 'const char *',
  frame_width: 'size_t',
  frame_height: 'size_t',
} as const;

/** A struct of C fields as koffi takes and gives it: strings and arrays (null for NULL), pointers, numbers. */
export type Fields<S> = {
  -readonly [K in keyof S]: S[K] extends 'const char *'
    ? string | null
    : S[K] extends 'float *'
      ? Float32Array | null
      : S[K] extends 'int32_t *'
        ? Int32Array | null
        : S[K] extends 'void *'
          ? unknown
          : number;
};

export type NativeMultimodal12 = Fields<typeof MULTIMODAL_12> & { prompt: string };
export type NativeImageInput = Fields<typeof IMAGE_13>;
export type NativeVideoInput = Fields<typeof VIDEO_13>;

/** 1.3's `RKLLMMultiModalInput`. */
export interface NativeMultimodal13 {
  prompt: string;
  image: NativeImageInput;
  video: NativeVideoInput;
}

/** The union of `RKLLMInput`: exactly one member, matching `input_type`. */
export type NativeInputData =
  | { prompt_input: string }
  | { token_input: { input_ids: Int32Array; n_tokens: number } }
  | { embed_input: { embed: Float32Array; n_tokens: number } }
  | { multimodal_input: NativeMultimodal12 | NativeMultimodal13 };

/** `RKLLMInput`. */
export interface NativeInput {
  role: string;
  enable_thinking: boolean;
  input_type: number;
  data: NativeInputData;
}

/** 1.3's `RKLLMSamplingParam`: every sampling field of RKLLMParam. */
export type NativeSamplingParam = Required<Omit<SamplingParams, 'seed'>>;

/** `RKLLMInferParam`. `sampling_params` and `max_new_tokens` exist in 1.3 only. */
export interface NativeInferParam {
  mode: number;
  lora_params: { lora_adapter_name: string } | null;
  prompt_cache_params: { save_prompt_cache: number; prompt_cache_path: string } | null;
  sampling_params?: NativeSamplingParam | null;
  keep_history: number;
  max_new_tokens?: number;
}

/** `RKLLMCrossAttnParam`. */
const CROSS_ATTN = {
  encoder_k_cache: 'float *',
  encoder_v_cache: 'float *',
  encoder_mask: 'float *',
  encoder_pos: 'int32_t *',
  num_tokens: 'int',
} as const;

export type NativeCrossAttnParam = Fields<typeof CROSS_ATTN>;

/** A native pointer as koffi gives it: an address, or null for NULL. */
export type NativePointer = bigint | null;

/** `RKLLMResult` as decoded in the callback: pointers still point into the runtime's memory. */
export interface NativeResult {
  text: NativePointer;
  token_id: number;
  last_hidden_layer: { hidden_states: NativePointer; embd_size: number; num_tokens: number };
  logits: { logits: NativePointer; vocab_size: number; num_tokens: number };
  perf: RKLLMPerfStat;
}

/** The handle `rkllm_init` returns (`LLMHandle`, an opaque pointer). */
export type NativeHandle = bigint;

/** The koffi types of one layout. */
export type RkllmTypes = ReturnType<typeof defineTypes>;

function commonStructs(): Record<string, TypeObject> {
  const extendParam = koffi.struct({
    base_domain_id: 'int32_t',
    embed_flash: 'int8_t',
    enabled_cpus_num: 'int8_t',
    enabled_cpus_mask: 'uint32_t',
    n_batch: 'uint8_t',
    use_cross_attn: 'int8_t',
    reserved: koffi.array('uint8_t', 104),
  });
  const perfStat = koffi.struct({
    prefill_time_ms: 'float',
    prefill_tokens: 'int',
    generate_time_ms: 'float',
    generate_tokens: 'int',
    memory_usage_mb: 'float',
  });
  const lastHidden = koffi.struct({ hidden_states: 'void *', embd_size: 'int', num_tokens: 'int' });
  const logits = koffi.struct({ logits: 'void *', vocab_size: 'int', num_tokens: 'int' });
  return {
    RKLLMExtendParam: extendParam,
    RKLLMLoraAdapter: koffi.struct({ lora_adapter_path: 'const char *', lora_adapter_name: 'const char *', scale: 'float' }),
    RKLLMEmbedInput: koffi.struct({ embed: 'float *', n_tokens: 'size_t' }),
    RKLLMTokenInput: koffi.struct({ input_ids: 'int32_t *', n_tokens: 'size_t' }),
    RKLLMLoraParam: koffi.struct({ lora_adapter_name: 'const char *' }),
    RKLLMPromptCacheParam: koffi.struct({ save_prompt_cache: 'int', prompt_cache_path: 'const char *' }),
    RKLLMCrossAttnParam: koffi.struct(CROSS_ATTN),
    RKLLMResultLastHiddenLayer: lastHidden,
    RKLLMResultLogits: logits,
    RKLLMPerfStat: perfStat,
    RKLLMResult: koffi.struct({ text: 'void *', token_id: 'int32_t', last_hidden_layer: lastHidden, logits, perf: perfStat }),
  };
}

/** The sampling fields after `top_k`, in the order both RKLLMParam and 1.3's RKLLMSamplingParam hold them. */
const SAMPLING_AFTER_TOP_K = {
  top_p: 'float',
  temperature: 'float',
  repeat_penalty: 'float',
  frequency_penalty: 'float',
  presence_penalty: 'float',
  mirostat: 'int32_t',
  mirostat_tau: 'float',
  mirostat_eta: 'float',
} as const;

/** The fields of RKLLMParam up to `skip_special_token`, identical in both layouts (spreads keep the order). */
const PARAM_HEAD = {
  model_path: 'const char *',
  max_context_len: 'int32_t',
  max_new_tokens: 'int32_t',
  top_k: 'int32_t',
  n_keep: 'int32_t',
  ...SAMPLING_AFTER_TOP_K,
  skip_special_token: 'bool',
} as const;

function structs12(common: Record<string, TypeObject>): Record<string, TypeObject> {
  const param = koffi.struct({
    ...PARAM_HEAD,
    is_async: 'bool',
    img_start: 'const char *',
    img_end: 'const char *',
    img_content: 'const char *',
    extend_param: common.RKLLMExtendParam!,
  });
  const multimodal = koffi.struct(MULTIMODAL_12);
  const infer = koffi.struct({
    mode: 'int',
    lora_params: koffi.pointer(common.RKLLMLoraParam!),
    prompt_cache_params: koffi.pointer(common.RKLLMPromptCacheParam!),
    keep_history: 'int',
  });
  return { RKLLMParam: param, RKLLMMultiModalInput: multimodal, RKLLMInferParam: infer };
}

function structs13(common: Record<string, TypeObject>): Record<string, TypeObject> {
  const param = koffi.struct({ ...PARAM_HEAD, ignore_eos_token: 'bool', is_async: 'bool', extend_param: common.RKLLMExtendParam! });
  const image = koffi.struct(IMAGE_13);
  const video = koffi.struct(VIDEO_13);
  const sampling = koffi.struct({ top_k: 'int32_t', ...SAMPLING_AFTER_TOP_K });
  const infer = koffi.struct({
    mode: 'int',
    lora_params: koffi.pointer(common.RKLLMLoraParam!),
    prompt_cache_params: koffi.pointer(common.RKLLMPromptCacheParam!),
    sampling_params: koffi.pointer(sampling),
    keep_history: 'int',
    max_new_tokens: 'int32_t',
  });
  return {
    RKLLMParam: param,
    RKLLMImageInput: image,
    RKLLMVideoInput: video,
    RKLLMMultiModalInput: koffi.struct({ prompt: 'const char *', image, video }),
    RKLLMSamplingParam: sampling,
    RKLLMInferParam: infer,
  };
}

/** Declares the koffi types of `version`. Each call makes new (anonymous) types. */
export function defineTypes(version: LayoutVersion) {
  const common = commonStructs();
  const specific = version === '1.2' ? structs12(common) : structs13(common);
  const structs: Record<string, TypeObject> = { ...common, ...specific };
  const input = koffi.struct({
    role: 'const char *',
    enable_thinking: 'bool',
    input_type: 'int',
    data: koffi.union({
      prompt_input: 'const char *',
      embed_input: common.RKLLMEmbedInput!,
      token_input: common.RKLLMTokenInput!,
      multimodal_input: specific.RKLLMMultiModalInput!,
    }),
  });
  structs.RKLLMInput = input;
  const resultCallback = koffi.proto('int', [koffi.pointer(common.RKLLMResult!), 'intptr_t', 'int']);
  const callbackStruct =
    version === '1.3'
      ? koffi.struct({
          result_callback: koffi.pointer(resultCallback),
          result_userdata: 'intptr_t',
          tokenizer_callback: 'void *',
          tokenizer_userdata: 'intptr_t',
          embed_callback: 'void *',
          embed_userdata: 'intptr_t',
        })
      : undefined;
  if (callbackStruct) structs.RKLLMCallback = callbackStruct;
  return {
    version,
    extendParam: common.RKLLMExtendParam!,
    param: specific.RKLLMParam!,
    loraAdapter: common.RKLLMLoraAdapter!,
    input,
    inferParam: specific.RKLLMInferParam!,
    crossAttnParam: common.RKLLMCrossAttnParam!,
    result: common.RKLLMResult!,
    /** `LLMResultCallback`: int (RKLLMResult *result, void *userdata, LLMCallState state). */
    resultCallback,
    /** 1.3's `RKLLMCallback`. */
    callbackStruct,
    /** Every struct by its header name, for layout checks. */
    structs,
  };
}

/**
 * The layouts under which `bytes` (what `rkllm_createDefaultParam` returned) read as plausible
 * defaults: `extend_param.n_batch` at least 1 (the header's default) and every reserved byte zero.
 * The two layouts place `extend_param` 28 bytes apart, so a library of the other layout fails
 * one of the checks: its reserved bytes hold this layout's fields, or its `n_batch` falls in the
 * other layout's reserved bytes or pointers. Returns one layout when the library tells, none or
 * both when it does not (e.g. defaults that are not zero-filled).
 */
export function plausibleLayouts(bytes: Uint8Array): LayoutVersion[] {
  return LAYOUT_VERSIONS.filter((version) => {
    const types = defineTypes(version);
    const at = koffi.offsetof(types.param, 'extend_param');
    const nBatch = bytes[at + koffi.offsetof(types.extendParam, 'n_batch')] ?? 0;
    const reserved = at + koffi.offsetof(types.extendParam, 'reserved');
    return nBatch >= 1 && bytes.subarray(reserved, reserved + 104).every((b) => b === 0);
  });
}
