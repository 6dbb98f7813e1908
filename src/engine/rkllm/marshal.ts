/**
 * From the engine's types (types.ts) to the runtime's structs (abi.ts), for one layout. Everything
 * the runtime would read past the end of an array, or silently ignore, is refused here with a
 * -32602 or -32005 that names the field, before anything reaches the native side.
 */
import { fault, type ServerError } from '../../errors.js';
import { notSupported } from '../capabilities.js';
import { flattenChat } from '../chat.js';
import { tokenBudget } from '../token-budget.js';
import {
  RKLLMInputType,
  type RKLLMCrossAttnParam,
  type RKLLMInput,
  type RKLLMParam,
  type RunRequest,
  type SamplingParams,
} from '../types.js';
import type {
  LayoutVersion,
  NativeCrossAttnParam,
  NativeImageInput,
  NativeInferParam,
  NativeInput,
  NativeMultimodal12,
  NativeMultimodal13,
  NativeParam,
  NativeSamplingParam,
  NativeVideoInput,
} from './abi.js';

const ENGINE = 'rkllm';
const INT32_MAX = 2 ** 31 - 1;

/** The sampling fields of RKLLMParam that 1.3's RKLLMSamplingParam overrides per run. */
const SAMPLING_FIELDS = [
  'top_k',
  'top_p',
  'temperature',
  'repeat_penalty',
  'frequency_penalty',
  'presence_penalty',
  'mirostat',
  'mirostat_tau',
  'mirostat_eta',
] as const satisfies ReadonlyArray<keyof NativeSamplingParam & keyof RKLLMParam>;

function unsupported(feature: string, reason: string): ServerError {
  return fault('NOT_SUPPORTED', 'feature_because', { feature, engine: ENGINE, reason }, { engine: ENGINE, feature, reason });
}

/** `RKLLMParam` for `layout`. The image tags moved out of RKLLMParam in 1.3; `ignore_eos_token` came in. */
export function toNativeParam(param: RKLLMParam, layout: LayoutVersion): NativeParam {
  const { img_start, img_end, img_content, ignore_eos_token, extend_param, ...common } = param;
  const native: NativeParam = { ...common, extend_param: { ...extend_param, reserved: new Uint8Array(104) } };
  if (layout === '1.2') {
    if (ignore_eos_token) throw unsupported('ignore_eos_token', 'RKLLMParam has no ignore_eos_token before runtime 1.3');
    return { ...native, img_start: img_start || null, img_end: img_end || null, img_content: img_content || null };
  }
  const tags = Object.entries({ img_start, img_end, img_content }).filter(([, value]) => value);
  if (tags.length > 0) {
    throw fault('INVALID_PARAMS', 'detail', {
      detail: `"${tags[0]![0]}" is not a field of RKLLMParam in runtime 1.3; give the image tags with each run in multimodal_input.image (image_start, image_end, image_content)`,
    });
  }
  return { ...native, ignore_eos_token: ignore_eos_token ?? false };
}

/** The engine's RKLLMParam from what the runtime returned (its `rkllm_createDefaultParam`): strings are left empty. */
export function fromNativeParam(native: NativeParam): RKLLMParam {
  const { img_start, img_end, img_content, extend_param, ...common } = native;
  const { base_domain_id, embed_flash, enabled_cpus_num, enabled_cpus_mask, n_batch, use_cross_attn } = extend_param;
  const extend = { base_domain_id, embed_flash, enabled_cpus_num, enabled_cpus_mask, n_batch, use_cross_attn };
  return {
    ...common,
    model_path: '',
    img_start: img_start ?? '',
    img_end: img_end ?? '',
    img_content: img_content ?? '',
    extend_param: extend,
  };
}

/** What a run sends to the worker, and what the engine needs to judge how it ended. */
export interface NativeRunPlan {
  input: NativeInput;
  infer: NativeInferParam;
  /** Tokens after which the worker pauses the runtime (1.2 has no per-run max_new_tokens). */
  limit: number | null;
  /** The most tokens the run may generate, when bounded: reaching it ends the run with "length". */
  maxNewTokens: number | null;
}

/** Converts and checks one run for `layout`, against the model's `param`. */
export function toNativeRun(request: RunRequest, param: RKLLMParam, layout: LayoutVersion): NativeRunPlan {
  const { infer } = request;
  const sampling = infer.sampling_params ?? {};
  if (sampling.seed !== undefined) throw unsupported('seed', 'RKLLM samples with its own generator, which takes no seed');
  if (infer.json_schema) throw notSupported(ENGINE, 'json_schema', 'the RKLLM runtime has no grammar-constrained sampling');
  if (infer.chat_template) {
    throw notSupported(
      ENGINE,
      'run_template',
      'the RKLLM runtime holds one template for every run: an admin key sets it with rkllm_set_chat_template',
    );
  }
  if (infer.function_tools) {
    throw notSupported(
      ENGINE,
      'run_tools',
      'the RKLLM runtime offers tools to every run only: an admin key sets them with rkllm_set_function_tools',
    );
  }
  const { requested, max: asked } = tokenBudget(infer.max_new_tokens, param.max_new_tokens);
  // The runtime keeps rkllm_init's cap even when a run asks for more (see tokenBudget).
  const max = asked ?? tokenBudget(undefined, param.max_new_tokens).max;
  const native: NativeInferParam = {
    mode: infer.mode,
    lora_params: infer.lora_params ? { lora_adapter_name: infer.lora_params.lora_adapter_name } : null,
    prompt_cache_params: infer.prompt_cache_params
      ? {
          save_prompt_cache: infer.prompt_cache_params.save_prompt_cache ?? 0,
          prompt_cache_path: infer.prompt_cache_params.prompt_cache_path,
        }
      : null,
    keep_history: infer.keep_history,
  };
  const input = toNativeInput(request.input, layout);
  if (layout === '1.2') {
    checkSamplingMatches(sampling, param);
    return { input, infer: native, limit: requested, maxNewTokens: max };
  }
  const overrides = SAMPLING_FIELDS.some((field) => sampling[field] !== undefined);
  return {
    input,
    infer: { ...native, sampling_params: overrides ? samplingParams(param, sampling) : null, max_new_tokens: requested ?? 0 },
    limit: null,
    maxNewTokens: max,
  };
}

function samplingParams(param: RKLLMParam, sampling: Partial<SamplingParams>): NativeSamplingParam {
  const out = {} as NativeSamplingParam;
  for (const field of SAMPLING_FIELDS) out[field] = sampling[field] ?? param[field];
  return out;
}

/** Runtime 1.2 samples with the values of rkllm_init only: a run may repeat them, not change them. */
function checkSamplingMatches(sampling: Partial<SamplingParams>, param: RKLLMParam): void {
  for (const field of SAMPLING_FIELDS) {
    const value = sampling[field];
    if (value === undefined || Math.fround(value) === Math.fround(param[field])) continue;
    throw unsupported(
      'sampling_params',
      `runtime 1.2 has no per-run sampling parameters; "${field}" is ${value} here but ${param[field]} at rkllm_init (set it there, or use a 1.3 runtime)`,
    );
  }
}

function toNativeInput(input: RKLLMInput, layout: LayoutVersion): NativeInput {
  const base = { role: input.role, enable_thinking: input.enable_thinking, input_type: input.input_type };
  switch (input.input_type) {
    case RKLLMInputType.RKLLM_INPUT_PROMPT:
      if (input.messages) {
        const { role, prompt } = flattenChat(input.messages);
        return { ...base, role, data: { prompt_input: prompt } };
      }
      if (typeof input.prompt_input !== 'string')
        throw fault('INVALID_PARAMS', 'detail', { detail: 'missing required field "prompt_input" (input_type 0, PROMPT)' });
      return { ...base, data: { prompt_input: input.prompt_input } };
    case RKLLMInputType.RKLLM_INPUT_TOKEN: {
      const ids = input.token_input?.input_ids ?? [];
      const bad = ids.findIndex((id) => !Number.isInteger(id) || id < 0 || id > INT32_MAX);
      if (ids.length === 0 || bad >= 0) {
        throw fault('INVALID_PARAMS', 'detail', {
          detail: `"token_input.input_ids" must be non-negative 32-bit token ids; got ${JSON.stringify(ids[bad] ?? [])}`,
        });
      }
      return { ...base, data: { token_input: { input_ids: Int32Array.from(ids), n_tokens: ids.length } } };
    }
    case RKLLMInputType.RKLLM_INPUT_EMBED:
      return { ...base, data: { embed_input: embedInput(input.embed_input) } };
    case RKLLMInputType.RKLLM_INPUT_MULTIMODAL: {
      const fields = new Fields(input.multimodal_input ?? {}, 'multimodal_input');
      return { ...base, data: { multimodal_input: layout === '1.2' ? multimodal12(fields) : multimodal13(fields) } };
    }
  }
}

function embedInput(embed: RKLLMInput['embed_input']): { embed: Float32Array; n_tokens: number } {
  const values = embed?.embed ?? [];
  const count = embed?.n_tokens;
  if (count === undefined) {
    throw fault('INVALID_PARAMS', 'detail', {
      detail: '"embed_input.n_tokens" is required by the rkllm engine: the runtime reads n_tokens x n_embd values',
    });
  }
  if (values.length === 0 || values.length % count !== 0) {
    throw fault('INVALID_PARAMS', 'detail', {
      detail: `"embed_input.embed" must hold n_tokens x n_embd values, a multiple of n_tokens (${count}); got ${values.length}`,
    });
  }
  return { embed: Float32Array.from(values), n_tokens: count };
}

/** Reads the fields of a JSON object, refusing unknown ones and wrong types by name. */
class Fields {
  readonly #seen = new Set<string>();
  readonly #object: Record<string, unknown>;
  readonly #where: string;

  constructor(object: Record<string, unknown>, where: string) {
    this.#object = object;
    this.#where = where;
  }

  #value(name: string): unknown {
    this.#seen.add(name);
    return this.#object[name];
  }

  #bad(name: string, expected: string): ServerError {
    return fault('INVALID_PARAMS', 'detail', {
      detail: `"${this.#where}.${name}" must be ${expected}; got ${JSON.stringify(this.#object[name])}`,
    });
  }

  string(name: string, required = false): string | null {
    const value = this.#value(name);
    if (value === undefined && !required) return null;
    if (typeof value !== 'string') throw this.#bad(name, 'a string');
    return value;
  }

  count(name: string): number {
    const value = this.#value(name) ?? 0;
    if (!Number.isInteger(value) || (value as number) < 0) throw this.#bad(name, 'a non-negative integer');
    return value as number;
  }

  floats(name: string, rows: number): Float32Array | null {
    const value = this.#value(name);
    if (value === undefined && rows === 0) return null;
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'number') || value.length === 0 || value.length % Math.max(rows, 1) !== 0) {
      throw this.#bad(name, `an array of numbers, a multiple of ${rows} rows long`);
    }
    return Float32Array.from(value as number[]);
  }

  nested(name: string): Fields {
    const value = this.#value(name) ?? {};
    if (typeof value !== 'object' || Array.isArray(value)) throw this.#bad(name, 'an object');
    return new Fields(value as Record<string, unknown>, `${this.#where}.${name}`);
  }

  /** Refuses any field that was not read: a typo never passes silently. */
  done(): void {
    const unknown = Object.keys(this.#object).find((key) => !this.#seen.has(key));
    if (unknown !== undefined) throw fault('INVALID_PARAMS', 'detail', { detail: `unknown field "${this.#where}.${unknown}"` });
  }
}

/** The image fields both layouts have: `image_embed` holds n_image x n_image_tokens rows. */
function imageFields(fields: Fields): Omit<NativeMultimodal12, 'prompt'> {
  const n_image = fields.count('n_image');
  const n_image_tokens = fields.count('n_image_tokens');
  const image_embed = fields.floats('image_embed', n_image * n_image_tokens);
  return { image_embed, n_image_tokens, n_image, image_width: fields.count('image_width'), image_height: fields.count('image_height') };
}

function multimodal12(fields: Fields): NativeMultimodal12 {
  const out: NativeMultimodal12 = { ...imageFields(fields), prompt: fields.string('prompt', true)! };
  fields.done();
  return out;
}

function image13(fields: Fields): NativeImageInput {
  const out: NativeImageInput = {
    ...imageFields(fields),
    image_start: fields.string('image_start'),
    image_end: fields.string('image_end'),
    image_content: fields.string('image_content'),
  };
  fields.done();
  return out;
}

function video13(fields: Fields): NativeVideoInput {
  const n_video = fields.count('n_video');
  const n_frame_per_video = fields.count('n_frame_per_video');
  const n_frame_tokens = fields.count('n_frame_tokens');
  const out: NativeVideoInput = {
    video_embed: fields.floats('video_embed', n_video * n_frame_per_video * n_frame_tokens),
    n_frame_tokens,
    n_frame_per_video,
    n_video,
    video_start: fields.string('video_start'),
    video_end: fields.string('video_end'),
    video_content: fields.string('video_content'),
    frame_width: fields.count('frame_width'),
    frame_height: fields.count('frame_height'),
  };
  fields.done();
  return out;
}

/** 1.3's video part with no video, as a multimodal input without `video` gives it. */
export function noVideo(): NativeVideoInput {
  return video13(new Fields({}, 'multimodal_input.video'));
}

function multimodal13(fields: Fields): NativeMultimodal13 {
  const out: NativeMultimodal13 = {
    prompt: fields.string('prompt', true)!,
    image: image13(fields.nested('image')),
    video: video13(fields.nested('video')),
  };
  fields.done();
  return out;
}

/** `RKLLMCrossAttnParam`: the runtime reads num_tokens entries of mask and pos, and equal K and V caches. */
export function toNativeCrossAttn(params: RKLLMCrossAttnParam): NativeCrossAttnParam {
  const n = params.num_tokens;
  const { encoder_k_cache: k, encoder_v_cache: v, encoder_mask: mask, encoder_pos: pos } = params;
  if (n < 1) throw fault('INVALID_PARAMS', 'detail', { detail: `"num_tokens" must be at least 1; got ${n}` });
  if (mask.length !== n || pos.length !== n) {
    throw fault('INVALID_PARAMS', 'detail', {
      detail: `"encoder_mask" and "encoder_pos" must hold num_tokens (${n}) values; got ${mask.length} and ${pos.length}`,
    });
  }
  if (k.length === 0 || k.length !== v.length || k.length % n !== 0) {
    throw fault('INVALID_PARAMS', 'detail', {
      detail: `"encoder_k_cache" and "encoder_v_cache" must be equally long, a multiple of num_tokens (${n}); got ${k.length} and ${v.length}`,
    });
  }
  return {
    encoder_k_cache: Float32Array.from(k),
    encoder_v_cache: Float32Array.from(v),
    encoder_mask: Float32Array.from(mask),
    encoder_pos: Int32Array.from(pos),
    num_tokens: n,
  };
}

/**
 * The position arrays of `rkllm_clear_kv_cache`: the runtime reads one entry per batch slot, so
 * shorter arrays are padded with empty ranges ([0, 0) clears nothing). With several instances,
 * `n_batch` slots per instance, instance after instance.
 */
export function toKvPositions(
  starts: number[] | undefined,
  ends: number[] | undefined,
  nBatch: number,
  instances = 1,
): [Int32Array, Int32Array] | null {
  if (starts === undefined && ends === undefined) return null;
  const slots = nBatch * instances;
  if (starts === undefined || ends === undefined || starts.length !== ends.length || starts.length > slots) {
    const most = instances === 1 ? `n_batch = ${nBatch}` : `${slots}: n_batch ${nBatch} for each of ${instances} instances`;
    throw fault('INVALID_PARAMS', 'detail', {
      detail: `"start_pos" and "end_pos" go together, with one position per batch slot (at most ${most})`,
    });
  }
  const pad = (values: number[]): Int32Array => Int32Array.from({ length: slots }, (_, i) => values[i] ?? 0);
  return [pad(starts), pad(ends)];
}
