import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { basename } from 'node:path';
import type { EngineFeature } from '../../engine/capabilities.js';
import { RKLLMInferMode, RKLLMInputType, type Engine, type RunRequest } from '../../engine/types.js';

/**
 * What an instance needs to execute a run: the model (by content hash), the LoRA adapter it
 * names, the engine features it uses, and, for a run that continues or saves state kept on one
 * instance (a `keep_history` conversation, a saved prompt cache), that instance.
 */
export interface RunNeeds {
  model: string;
  lora: string | null;
  features: EngineFeature[];
  /** The instance it must run on; absent: any instance that can serve the rest. */
  pin?: string;
}

const INPUT_FEATURES: Record<number, EngineFeature> = {
  [RKLLMInputType.RKLLM_INPUT_PROMPT]: 'input_prompt',
  [RKLLMInputType.RKLLM_INPUT_TOKEN]: 'input_token',
  [RKLLMInputType.RKLLM_INPUT_EMBED]: 'input_embed',
  [RKLLMInputType.RKLLM_INPUT_MULTIMODAL]: 'input_multimodal',
};

const MODE_FEATURES: Record<number, EngineFeature> = {
  [RKLLMInferMode.RKLLM_INFER_GENERATE]: 'infer_generate',
  [RKLLMInferMode.RKLLM_INFER_GET_LAST_HIDDEN_LAYER]: 'infer_last_hidden_layer',
  [RKLLMInferMode.RKLLM_INFER_GET_LOGITS]: 'infer_logits',
};

/** The needs of `params` received by `instance`, whose model has content hash `model`. */
export function needsOf(params: Omit<RunRequest, 'signal'>, model: string, instance: string): RunNeeds {
  const { input, infer } = params;
  const features = new Set<EngineFeature>();
  const add = (feature: EngineFeature | undefined): void => void (feature && features.add(feature));
  add(INPUT_FEATURES[input.input_type]);
  add(MODE_FEATURES[infer.mode]);
  if ((input.images?.length ?? 0) > 0) add('images');
  if (infer.json_schema !== undefined) add('json_schema');
  if (infer.chat_template !== undefined) add('run_template');
  if (infer.function_tools !== undefined) add('run_tools');
  if (infer.sampling_params?.seed !== undefined) add('seed');
  if ((infer.sampling_params?.mirostat ?? 0) > 0) add('mirostat');
  const needs: RunNeeds = { model, lora: infer.lora_params?.lora_adapter_name ?? null, features: [...features].sort() };
  if (pinned(params)) needs.pin = instance;
  return needs;
}

/** A run as its job holds it in Redis: JSON, with its images (bytes, which JSON would make objects of numbers) in base64. */
export function runToJob(params: Omit<RunRequest, 'signal'>): string {
  const images = params.input.images?.map((image) => Buffer.from(image).toString('base64'));
  return JSON.stringify(images ? { ...params, input: { ...params.input, images } } : params);
}

/** The run a job holds (`runToJob`). */
export function runFromJob(json: string): Omit<RunRequest, 'signal'> {
  const params = JSON.parse(json) as Omit<RunRequest, 'signal'>;
  const images = params.input.images as unknown as string[] | undefined;
  if (images) params.input.images = images.map((image) => new Uint8Array(Buffer.from(image, 'base64')));
  return params;
}

/** Whether a run continues or saves state kept by the instance that received it, so it must run there. */
export function pinned(params: Omit<RunRequest, 'signal'>): boolean {
  return params.infer.keep_history === 1 || (params.infer.prompt_cache_params?.save_prompt_cache ?? 0) !== 0;
}

/** The queue a run waits in: one per distinct set of needs, so an instance claims only from the queues it can serve. */
export function classOf(needs: RunNeeds): string {
  const canonical = JSON.stringify([needs.model, needs.lora, needs.features, needs.pin ?? null]);
  return createHash('sha1').update(canonical).digest('hex').slice(0, 16);
}

/**
 * What one instance can serve. The fleet asks it before claiming from a queue. An instance with
 * one engine answers from that engine; one with several models (chosen by name) can answer for
 * each of them.
 */
export interface Capability {
  /** The content hash of the model a run received here is meant for (the loaded model's). */
  model(): Promise<string>;
  /** Whether this instance can execute a run with these needs now. */
  canServe(needs: RunNeeds): Promise<boolean>;
  /**
   * The models it serves (those whose hash is known yet), with the LoRA adapters loaded into each:
   * published in its fleet registration, for status views and for admitting runs that name an
   * adapter their receiver lacks.
   */
  models(): ServedModel[];
}

/** A model an instance serves, as its fleet registration shows it. */
export interface ServedModel {
  name: string;
  hash: string;
  /** The names of the LoRA adapters loaded into it. */
  lora: string[];
}

/**
 * The capability of one engine, whatever model it has loaded now (`rkllm_init` may load another):
 * the model's content hash is computed by `hashOf` once per model file, when first needed.
 */
export function engineCapability(engine: Engine, instance: string, hashOf: (path: string) => Promise<string>): Capability {
  let known: { path: string; hash: Promise<string>; done?: string } | undefined;
  const loaded = (): string | undefined => {
    try {
      return engine.param.model_path;
    } catch {
      return undefined;
    }
  };
  const current = (): Promise<string> | undefined => {
    const path = loaded();
    if (path === undefined) return undefined;
    if (known?.path !== path) {
      const entry: NonNullable<typeof known> = { path, hash: hashOf(path) };
      entry.hash.then((hash) => (entry.done = hash)).catch(() => {});
      known = entry;
    }
    return known.hash;
  };
  return {
    model: async () => (await current()) ?? 'none',
    models: () => {
      void current();
      return known?.done === undefined ? [] : [{ name: basename(known.path), hash: known.done, lora: engine.loraAdapters() }];
    },
    async canServe(needs) {
      if (needs.pin !== undefined) return needs.pin === instance;
      const hash = await current();
      if (needs.model !== hash || !needs.features.every((f) => engine.supports(f))) return false;
      return needs.lora === null || engine.loraAdapters().includes(needs.lora);
    },
  };
}

/**
 * The content hash of a model file (SHA-256, hex, first 16 digits): instances of a fleet serve the
 * same model when their files hash alike, whatever their names. Reads the whole file once, at
 * start (about a second per 500 MB here).
 */
export async function modelHash(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex').slice(0, 16);
}
