import { readFile, stat } from 'node:fs/promises';
import { placeImages } from '../engine/chat.js';
import { fault } from '../errors.js';
import { naming, readImage } from '../faces/chat-messages.js';
import type { ConfinedFolder } from '../paths.js';
import { RKLLMInputType, type RKLLMInferParam, type RKLLMInput } from '../engine/types.js';
import type { RunParams } from '../streams/hub.js';
import {
  badField,
  bool,
  checkMaxNewTokens,
  int,
  object,
  REQUEST_FIELDS,
  SAMPLING,
  seedOf,
  str,
  type JsonSchema,
} from '../request-schema.js';

const SAMPLING_FIELDS = Object.keys(SAMPLING);

/** The field each input type needs, by `input_type` (MULTIMODAL's is checked by the engine). */
const INPUT_FIELDS: Array<string | undefined> = ['prompt_input', 'token_input', 'embed_input'];

const inputProperties: Record<string, JsonSchema> = {
  role: { type: 'string', enum: ['user', 'tool'], description: '"user", or "tool" for a function result' },
  enable_thinking: bool('Thinking mode (Qwen3)'),
  input_type: int(0, 3, 'RKLLMInputType: 0 PROMPT, 1 TOKEN, 2 EMBED, 3 MULTIMODAL'),
  prompt_input: str('The prompt text (input_type 0)'),
  token_input: object({ input_ids: { type: 'array', items: { type: 'integer' }, minItems: 1 }, n_tokens: int(1, 1_000_000) }, [
    'input_ids',
  ]),
  embed_input: object(
    {
      embed: { type: 'array', items: { type: 'number' }, minItems: 1, description: 'n_tokens x n_embd values, row-major' },
      n_tokens: int(1, 1_000_000),
    },
    ['embed'],
  ),
  multimodal_input: {
    type: 'object',
    description:
      'input_type 3: {prompt, image}, image an encoded image (base64, a data URL, or a file name in folders.images) or an array of them, ' +
      'encoded by the vision encoder; or the raw RKLLMMultiModalInput (image_embed...) as the runtime takes it',
  },
};

const inferProperties: Record<string, JsonSchema> = {
  mode: int(0, 2, 'RKLLMInferMode: 0 GENERATE, 1 GET_LAST_HIDDEN_LAYER, 2 GET_LOGITS'),
  lora_params: { anyOf: [object({ lora_adapter_name: str() }, ['lora_adapter_name']), { type: 'null' }] },
  prompt_cache_params: {
    anyOf: [
      object(
        {
          save_prompt_cache: int(0, 1),
          prompt_cache_path: str('A file name inside the prompt cache folder (setting folders.prompt_caches)'),
        },
        ['prompt_cache_path'],
      ),
      { type: 'null' },
    ],
  },
  keep_history: int(0, 1, '1 continues the conversation on the next run, 0 starts fresh (each API key has its own)'),
  chat_template: REQUEST_FIELDS.chat_template,
  function_tools: REQUEST_FIELDS.function_tools,
  max_new_tokens: REQUEST_FIELDS.max_new_tokens,
};

/**
 * Parameters of `rkllm_run`/`rkllm_run_async`: flat, the way the original clients send them, or
 * nested as `input` and `infer_params` (with `infer_params.sampling_params`, as RKLLM 1.3 does).
 */
export const runParamsSchema: JsonSchema = object({
  ...inputProperties,
  ...inferProperties,
  ...SAMPLING,
  input: object(inputProperties),
  infer_params: object({ ...inferProperties, sampling_params: object(SAMPLING) }),
  stream: bool('Accepted for compatibility; rkllm_run_async always streams'),
  model: str('The model that runs it, by name (models_list); absent: the default model. Loaded when needed'),
});

type Fields = Record<string, unknown>;

/** Picks each of `names` from the flat params or from the nested object, refusing one given in both. */
function pickAll(flat: Fields, nested: Fields | undefined, names: string[], where: string): Fields {
  const out: Fields = {};
  for (const name of names) {
    const inNested = nested !== undefined && name in nested;
    if (name in flat && inNested) throw fault('INVALID_PARAMS', 'detail', { detail: `"${name}" is given both flat and in "${where}"` });
    const value = inNested ? nested[name] : flat[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/**
 * Normalises validated run parameters into the engine's RKLLMInput and RKLLMInferParam.
 * `maxContext` bounds `max_new_tokens`, so an absurd value is refused rather than clamped.
 */
export function toRunParams(params: Fields, maxContext: number): RunParams {
  const nestedInput = params.input as Fields | undefined;
  const nestedInfer = params.infer_params as Fields | undefined;
  const nestedSampling = nestedInfer?.sampling_params as Fields | undefined;
  const i = pickAll(params, nestedInput, Object.keys(inputProperties), 'input');
  const f = pickAll(params, nestedInfer, Object.keys(inferProperties), 'infer_params');
  const sampling = pickAll(params, nestedSampling, SAMPLING_FIELDS, 'infer_params.sampling_params');

  const inputType = (i.input_type as number | undefined) ?? RKLLMInputType.RKLLM_INPUT_PROMPT;
  const needed = INPUT_FIELDS[inputType];
  if (needed && i[needed] === undefined) {
    const type = Object.keys(RKLLMInputType)[inputType]!.replace('RKLLM_INPUT_', '');
    throw fault('INVALID_PARAMS', 'detail', { detail: `missing required field "${needed}" (input_type ${inputType}, ${type})` });
  }
  const tokens = i.token_input as { input_ids: number[]; n_tokens?: number } | undefined;
  if (tokens?.n_tokens !== undefined && tokens.n_tokens !== tokens.input_ids.length) {
    throw fault('INVALID_PARAMS', 'detail', {
      detail: `"token_input.n_tokens" must equal the length of "input_ids" (${tokens.input_ids.length}); got ${tokens.n_tokens}`,
    });
  }
  checkMaxNewTokens(f.max_new_tokens as number | undefined, maxContext);
  const input: RKLLMInput = {
    ...i,
    role: (i.role as string | undefined) ?? 'user',
    enable_thinking: (i.enable_thinking as boolean | undefined) ?? false,
    input_type: inputType as RKLLMInput['input_type'],
  };
  const infer: RKLLMInferParam = {
    ...f,
    mode: ((f.mode as number | undefined) ?? 0) as RKLLMInferParam['mode'],
    keep_history: (f.keep_history as number | undefined) ?? 0,
    sampling_params: typeof sampling.seed === 'number' ? { ...sampling, seed: seedOf(sampling.seed) } : sampling,
  };
  return { input, infer, ...(typeof params.model === 'string' ? { model: params.model } : {}) };
}

/** `params` with its prompt cache name resolved inside `folder` (the folder is made when the run saves a cache); refuses a name leading out. */
export async function confineRunPaths(params: RunParams, folder: ConfinedFolder): Promise<RunParams> {
  const cache = params.infer.prompt_cache_params;
  if (!cache) return params;
  const path = await folder.target(cache.prompt_cache_path, 'prompt_cache_path', Boolean(cache.save_prompt_cache));
  return { ...params, infer: { ...params.infer, prompt_cache_params: { ...cache, prompt_cache_path: path } } };
}

/** Where `multimodal_input.image` file names are read: the folder (`folders.images`), and the largest file read (vision.max_image_bytes). */
export interface ImageFiles {
  folder: ConfinedFolder;
  maxBytes: number;
}

/**
 * `params` with `multimodal_input.image` given as encoded images read: a string (or an array of
 * them) is base64 or a data URL, or, when it holds a "." (which base64 never does), a file name in
 * `files.folder`. They become `input.images`, and `multimodal_input` its prompt alone, with one
 * `<image>` per image placed (`placeImages`). Raw `image_embed`, and 1.3's `image` object, go on unchanged.
 */
export async function readRunImages(params: RunParams, files: ImageFiles): Promise<RunParams> {
  const multimodal = params.input.multimodal_input;
  const image = multimodal?.image;
  if (params.input.input_type !== RKLLMInputType.RKLLM_INPUT_MULTIMODAL || (typeof image !== 'string' && !Array.isArray(image)))
    return params;
  const other = Object.keys(multimodal!).find((key) => key !== 'prompt' && key !== 'image');
  if (other !== undefined)
    throw badField(`multimodal_input.${other}`, 'is not taken with "image" as encoded images: give "prompt" and "image" only');
  const prompt = multimodal!.prompt;
  if (typeof prompt !== 'string') throw badField('multimodal_input.prompt', 'must be a string (the text, "<image>" where an image goes)');
  const sources: unknown[] = Array.isArray(image) ? image : [image];
  if (sources.length === 0) throw badField('multimodal_input.image', 'must hold at least one image');
  const images = await Promise.all(
    sources.map(async (source, i) => {
      const where = Array.isArray(image) ? `multimodal_input.image[${i}]` : 'multimodal_input.image';
      if (typeof source !== 'string' || /^(data|https?):/i.test(source) || !source.includes('.')) return readImage(source, where);
      const path = await files.folder.file(source, where);
      const { size } = await stat(path);
      if (size > files.maxBytes)
        throw fault(
          'INVALID_PARAMS',
          'detail',
          { detail: `"${where}" is ${size} bytes, over the limit of ${files.maxBytes}` },
          { reason: 'image_too_large', path: where },
        );
      return new Uint8Array(await readFile(path));
    }),
  );
  const placed = naming('multimodal_input.prompt', () => placeImages(prompt, images.length));
  return { ...params, input: { ...params.input, multimodal_input: { prompt: placed }, images } };
}
