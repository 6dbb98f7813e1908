/**
 * Images into RKLLM: the vision encoder of a VL model (an `.rknn`, rknn/encoder.ts) opened beside
 * the `.rkllm`, a run's images encoded one at a time and their embeddings put, concatenated, into
 * RKLLM_INPUT_MULTIMODAL with the family's image tags (docs/vision.md).
 */
import { existsSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { fault } from '../../errors.js';
import { notSupported } from '../capabilities.js';
import { placeImages } from '../chat.js';
import { RKLLMInferMode, RKLLMInputType, type Engine, type RKLLMInput, type RKLLMParam, type RunRequest } from '../types.js';
import { CORE_MASKS } from '../rknn/abi.js';
import { VisionEncoder, checkWidth } from '../rknn/encoder.js';
import { checkImage, type ImageLimits } from '../rknn/image.js';
import { noVideo, toNativeRun, type NativeRunPlan } from './marshal.js';
import type { LayoutVersion, NativeInput, NativeMultimodal12, NativeMultimodal13 } from './abi.js';

/** The image tags of each model family: what the runtime puts around the image's `img_content` tokens. */
export const IMAGE_TAGS = {
  'qwen2-vl': { img_start: '<|vision_start|>', img_end: '<|vision_end|>', img_content: '<|image_pad|>' },
  'minicpm-v': { img_start: '<image>', img_end: '</image>', img_content: '<unk>' },
} as const;

export type ImageFamily = keyof typeof IMAGE_TAGS;
export type ImageTags = Pick<RKLLMParam, 'img_start' | 'img_end' | 'img_content'>;

/** The vision settings of the RKLLM engine (engine.rkllm.vision). */
export interface VisionOptions {
  /** The encoder (.rknn) of `model` (the model given at start); other models pair with `<stem>.vision.rknn` beside them. */
  encoder: string | null;
  /** The model `encoder` belongs to (engine.model_path). */
  model: string | null;
  /** librknnrt.so (a path, or a name the dynamic loader finds). */
  lib: string;
  coreMask: keyof typeof CORE_MASKS;
  /** The image tags' family; `auto` tells it from the model file name. */
  family: ImageFamily | 'auto';
  limits: ImageLimits;
}

/** The encoder that goes with `modelPath`: the configured one for the model given at start, else `<stem>.vision.rknn` beside it, if there is one. */
export function encoderFor(modelPath: string, options: VisionOptions): string | null {
  if (options.encoder && options.model && resolve(options.model) === resolve(modelPath)) return options.encoder;
  const paired = join(dirname(modelPath), `${basename(modelPath, extname(modelPath))}.vision.rknn`);
  return existsSync(paired) ? paired : null;
}

/** The image tags for `modelPath`: the family set, or told by its file name. */
export function imageTags(family: VisionOptions['family'], modelPath: string): ImageTags {
  if (family !== 'auto') return IMAGE_TAGS[family];
  const name = basename(modelPath).toLowerCase();
  if (name.includes('minicpm')) return IMAGE_TAGS['minicpm-v'];
  if (name.includes('qwen')) return IMAGE_TAGS['qwen2-vl'];
  const detail = `The image tags of ${modelPath} cannot be told from its file name: set engine.rkllm.vision.image_tags to qwen2-vl or minicpm-v`;
  throw fault('ENGINE_ERROR', 'detail', { detail }, { engine: 'rkllm', reason: 'image_tags' });
}

/** A model's vision encoder, before it is opened. */
export interface VisionPlan {
  encoder: string;
  tags: ImageTags;
  options: VisionOptions;
}

/** A run's images, encoded: their embeddings one after the other, and the encode time summed over them (decode, resize, NPU). */
export interface EncodedImages {
  embed: Float32Array;
  ms: number;
}

/** The vision encoder of a loaded model, with its tags and limits. */
export class Vision {
  private constructor(
    readonly encoder: VisionEncoder,
    readonly tags: ImageTags,
    readonly limits: ImageLimits,
  ) {}

  /** Opens the vision encoder of `plan` beside the loaded `engine` and checks that its width is the model's embedding size (a start error otherwise). */
  static async open(engine: Pick<Engine, 'run'>, { encoder, tags, options }: VisionPlan, model: string, log?: Logger): Promise<Vision> {
    // Core mask 0 (auto): rknn_set_core_mask is not called.
    const coreMask = CORE_MASKS[options.coreMask] || undefined;
    const opened = await VisionEncoder.open({ model: encoder, lib: options.lib, coreMask, limits: options.limits, log });
    try {
      checkWidth({ width: opened.shape.width, model: encoder }, { embeddingSize: await embeddingSize(engine, model), model });
      const { input, tokens, width } = opened.shape;
      log?.info({ encoder, input: `${input.width}x${input.height} ${input.format} ${input.type}`, tokens, width }, 'vision encoder loaded');
      return new Vision(opened, tags, options.limits);
    } catch (err) {
      await opened.close();
      throw err;
    }
  }

  /** Encodes the images one at a time. */
  async encode(images: Uint8Array[]): Promise<EncodedImages> {
    const size = this.encoder.shape.tokens * this.encoder.shape.width;
    const out = { embed: new Float32Array(images.length * size), ms: 0 };
    for (const [i, image] of images.entries()) {
      const { embed, ms } = await this.encoder.encode(image);
      out.embed.set(embed, i * size);
      out.ms += ms;
    }
    return out;
  }

  /**
   * The run's input as RKLLM_INPUT_MULTIMODAL: the prompt of `native` (a PROMPT input's text or
   * flattened messages, or a MULTIMODAL input's prompt) with one `<image>` per image, and the
   * embeddings; on 1.3 the tags go with them. Without `encoded` (validation), no embeddings.
   */
  input(native: NativeInput, count: number, layout: LayoutVersion, encoded?: EncodedImages): NativeInput {
    const data = native.data;
    let prompt: string;
    let video: NativeMultimodal13['video'] | undefined;
    if ('prompt_input' in data) prompt = data.prompt_input;
    else if ('multimodal_input' in data) {
      const given = data.multimodal_input;
      const embed = 'image' in given ? given.image.image_embed : given.image_embed;
      if (embed !== null) throw fault('INVALID_PARAMS', 'detail', { detail: 'give images or multimodal_input.image_embed, not both' });
      prompt = given.prompt;
      if ('video' in given) video = given.video;
    } else throw fault('INVALID_PARAMS', 'detail', { detail: 'images go with input_type 0 (PROMPT) or 3 (MULTIMODAL)' });
    const { tokens, input } = this.encoder.shape;
    const image = {
      image_embed: encoded?.embed ?? null,
      n_image_tokens: tokens,
      n_image: count,
      image_width: input.width,
      image_height: input.height,
    };
    prompt = placeImages(prompt, count);
    const { img_start, img_end, img_content } = this.tags;
    const multimodal: NativeMultimodal12 | NativeMultimodal13 =
      layout === '1.2'
        ? { prompt, ...image }
        : {
            prompt,
            image: { ...image, image_start: img_start, image_end: img_end, image_content: img_content },
            video: video ?? noVideo(),
          };
    return { ...native, input_type: RKLLMInputType.RKLLM_INPUT_MULTIMODAL, data: { multimodal_input: multimodal } };
  }

  close(): Promise<void> {
    return this.encoder.close();
  }
}

/**
 * The language model's embedding size, which rkllm.h has no query for: one run of one token (id 0)
 * in RKLLM_INFER_GET_LAST_HIDDEN_LAYER, whose result's `embd_size` is the width of its hidden
 * states, the width `image_embed` rows must have.
 */
export async function embeddingSize(engine: Pick<Engine, 'run'>, model: string): Promise<number> {
  let size = 0;
  const input: RKLLMInput = {
    role: 'user',
    enable_thinking: false,
    input_type: RKLLMInputType.RKLLM_INPUT_TOKEN,
    token_input: { input_ids: [0] },
  };
  const infer = { mode: RKLLMInferMode.RKLLM_INFER_GET_LAST_HIDDEN_LAYER, keep_history: 0 };
  const outcome = await engine.run({ input, infer }, (result) => {
    size ||= result.last_hidden_layer?.embd_size ?? 0;
    return 0;
  });
  if (size > 0) return size;
  const detail = `The embedding size of ${model} could not be read (${outcome.error ?? 'the runtime gave no hidden layer'})`;
  throw fault('ENGINE_ERROR', 'detail', { detail }, { engine: 'rkllm', reason: 'width_probe' });
}

/** The encoder of `modelPath` and its tags, when it has one. */
export function planVision(modelPath: string, options?: VisionOptions): VisionPlan | undefined {
  const encoder = options && encoderFor(modelPath, options);
  return encoder ? { encoder, tags: imageTags(options.family, modelPath), options } : undefined;
}

/**
 * A run converted for the runtime, with its images when it has some: refused without an encoder
 * (NOT_SUPPORTED, feature `images`), checked (where they go, bytes, header), then, with `encode`,
 * encoded and put into RKLLM_INPUT_MULTIMODAL. Without `encode` (validate), nothing is encoded.
 */
export async function visionRun(
  vision: Vision | undefined,
  request: RunRequest,
  model: { param: RKLLMParam; layout: LayoutVersion },
  encode = false,
): Promise<{ native: NativeRunPlan; imageMs?: number }> {
  const images = request.input.images ?? [];
  const native = toNativeRun(request, model.param, model.layout); // which reads no images
  if (images.length === 0) return { native };
  if (!vision) {
    const reason = `the model ${model.param.model_path} has no vision encoder: start with --vision-encoder FILE.rknn, or put <stem>.vision.rknn beside it`;
    throw notSupported('rkllm', 'images', reason);
  }
  vision.input(native.input, images.length, model.layout);
  for (const image of images) await checkImage(image, vision.limits);
  if (!encode) return { native };
  const encoded = await vision.encode(images);
  return { native: { ...native, input: vision.input(native.input, images.length, model.layout, encoded) }, imageMs: encoded.ms };
}
