/**
 * The RKLLM functions beyond running and aborting: model lifetime, LoRA, prompt caches, the KV
 * cache, templates, tools, cross-attention and the header's constants. Each maps one to one onto
 * a function of rkllm.h and onto one method of the engine.
 */
import type { EngineFeature } from '../engine/capabilities.js';
import {
  CPU_MASKS,
  LLMCallState,
  RKLLMInferMode,
  RKLLMInputType,
  type ChatTemplate,
  type Engine,
  type FunctionTools,
  type RKLLMCrossAttnParam,
  type RKLLMParam,
} from '../engine/types.js';
import type { Method } from '../jsonrpc/dispatcher.js';
import type { LoadedModels } from '../models/loaded.js';
import { fault } from '../errors.js';
import type { ClientFolders } from '../paths.js';
import type { StreamHub } from '../streams/hub.js';
import { method } from './core.js';
import { initSchema, int, num, object, REQUEST_FIELDS, str, type JsonSchema } from '../request-schema.js';

export interface RkllmDeps {
  /** The default model, whichever engine holds it (see models/default-engine.ts). */
  engine: Engine;
  /** Where `rkllm_init` loads the default model and `rkllm_destroy` unloads it. */
  models: Pick<LoadedModels, 'loadDefault' | 'unloadDefault'>;
  hub: StreamHub;
  /** Where the file names clients give are resolved. */
  folders: ClientFolders;
  /** Told once `rkllm_load_lora` loaded an adapter (a fleet publishes it at once). */
  loraLoaded?: () => Promise<void>;
}

const NO_PARAMS = object({});

const positions = (description: string): JsonSchema => ({
  anyOf: [int(0, 1 << 20), { type: 'array', items: int(0, 1 << 20), minItems: 1, maxItems: 256 }],
  description,
});

const floats: JsonSchema = { type: 'array', items: { type: 'number' } };

/** A handler that hands its params to the engine and answers `{"set": true}`. */
const setter =
  <P>(set: (params: P) => Promise<void>) =>
  async (params: P): Promise<{ set: true }> => {
    await set(params);
    return { set: true };
  };

const asArray = (value: number | number[] | undefined): number[] | undefined => (typeof value === 'number' ? [value] : value);

/** The production methods of the RKLLM API that `coreMethods` does not cover. */
export function rkllmMethods({ engine, models, hub, folders, loraLoaded }: RkllmDeps): Array<[string, Method]> {
  const supported = (feature: EngineFeature) => (): boolean => engine.supports(feature);
  return [
    method(
      'rkllm_createDefaultParam',
      'Returns every RKLLMParam field with the runtime defaults (rkllm_createDefaultParam; on RKLLM, what the library returns).',
      NO_PARAMS,
      () => engine.defaultParam(),
    ),
    method<Partial<RKLLMParam>>(
      'rkllm_init',
      'Loads a model (rkllm_init), taking the RKLLMParam fields flat; missing fields take the defaults of rkllm_createDefaultParam. ' +
        'The server holds one model at a time: call rkllm_destroy first.',
      initSchema,
      async (params) => {
        const modelPath = await folders.models.file(params.model_path!, 'model_path');
        const { name, param } = await models.loadDefault({ ...params, model_path: modelPath });
        return { initialized: true, engine: name, model_path: param.model_path, max_context_len: param.max_context_len };
      },
      { admin: true },
    ),
    method(
      'rkllm_destroy',
      'Unloads the model (rkllm_destroy). Every running or queued stream ends with a final chunk carrying error -32009.',
      NO_PARAMS,
      async () => {
        const streams = hub.liveCount;
        const stopped = hub.stopAll(fault('ABORTED', 'destroyed', {}, { engine: engine.name }));
        await Promise.all([stopped, models.unloadDefault()]);
        return { destroyed: true, streams_stopped: streams };
      },
      { admin: true },
    ),
    method<{ lora_adapter_path: string; lora_adapter_name: string; scale?: number }>(
      'rkllm_load_lora',
      'Loads a LoRA adapter (rkllm_load_lora; GGUF for the llama.cpp engine). A run uses it by naming it in lora_params.lora_adapter_name.',
      object(
        {
          lora_adapter_path: { ...str('A file name inside the LoRA adapter folder (setting folders.lora_adapters)'), minLength: 1 },
          lora_adapter_name: { ...str(), minLength: 1 },
          scale: num(-100, 100, 'Strength of the adapter; default 1'),
        },
        ['lora_adapter_path', 'lora_adapter_name'],
      ),
      async (params) => {
        const path = await folders.loraAdapters.file(params.lora_adapter_path, 'lora_adapter_path');
        await engine.loadLora({ ...params, lora_adapter_path: path, scale: params.scale ?? 1 });
        await loraLoaded?.();
        return { loaded: true, lora_adapter_name: params.lora_adapter_name };
      },
      { admin: true, supported: supported('lora') },
    ),
    method<{ prompt_cache_path: string }>(
      'rkllm_load_prompt_cache',
      'Loads a prompt cache saved by a run with prompt_cache_params.save_prompt_cache (rkllm_load_prompt_cache). ' +
        'Runs whose input starts with the cached prefix skip its prefill.',
      object(
        { prompt_cache_path: { ...str('A file name inside the prompt cache folder (setting folders.prompt_caches)'), minLength: 1 } },
        ['prompt_cache_path'],
      ),
      async (params) => {
        await engine.loadPromptCache(await folders.promptCaches.file(params.prompt_cache_path, 'prompt_cache_path'));
        return { loaded: true, prompt_cache_path: params.prompt_cache_path };
      },
      { admin: true, supported: supported('prompt_cache') },
    ),
    method(
      'rkllm_release_prompt_cache',
      'Forgets the loaded prompt cache (rkllm_release_prompt_cache).',
      NO_PARAMS,
      async () => {
        await engine.releasePromptCache();
        return { released: true };
      },
      { admin: true, supported: supported('prompt_cache') },
    ),
    method<{ keep_system_prompt?: number | boolean; start_pos?: number | number[]; end_pos?: number | number[] }>(
      'rkllm_clear_kv_cache',
      'Clears the KV cache (rkllm_clear_kv_cache). Without positions it clears everything, keeping the system prompt if keep_system_prompt is 1; ' +
        'with start_pos/end_pos (one per slot) it clears [start_pos, end_pos) of each slot.',
      object({
        keep_system_prompt: { type: ['integer', 'boolean'], minimum: 0, maximum: 1, description: '1 keeps the system prompt' },
        start_pos: positions('First position to clear (inclusive), per slot'),
        end_pos: positions('Position to stop clearing at (exclusive), per slot'),
      }),
      async (params) => {
        const starts = asArray(params.start_pos);
        const ends = asArray(params.end_pos);
        for (const [slot, start] of (starts ?? []).entries()) {
          const end = ends?.[slot];
          if (end !== undefined && start > end) {
            throw fault('INVALID_PARAMS', 'detail', {
              detail: `start_pos ${start} is after end_pos ${end} (slot ${slot}); a cleared range is [start_pos, end_pos)`,
            });
          }
        }
        await engine.clearKvCache({
          keep_system_prompt: Boolean(params.keep_system_prompt),
          ...(starts ? { start_pos: starts } : {}),
          ...(ends ? { end_pos: ends } : {}),
        });
        return { cleared: true, ...(await engine.getKvCacheSize()) };
      },
      { admin: true, supported: supported('kv_cache') },
    ),
    method(
      'rkllm_get_kv_cache_size',
      'Reports the tokens held in the KV cache, one entry per slot (rkllm_get_kv_cache_size); a user key sees only its own conversation, 0 elsewhere.',
      NO_PARAMS,
      (_params, ctx) => engine.getKvCacheSize(ctx.client.admin ? undefined : ctx.client.id),
      { supported: supported('kv_cache') },
    ),
    method<ChatTemplate>(
      'rkllm_set_chat_template',
      'Sets how prompts are wrapped (rkllm_set_chat_template): the system prompt starts each conversation, prefix and postfix surround each prompt.',
      REQUEST_FIELDS.chat_template,
      setter((params) => engine.setChatTemplate(params)),
      { admin: true, supported: supported('chat_template') },
    ),
    method<FunctionTools>(
      'rkllm_set_function_tools',
      'Offers function tools (rkllm_set_function_tools): tools is a JSON array of tool definitions, placed in the system prompt; ' +
        'a run with role "tool" feeds a result back wrapped in tool_response_str tags. An empty tools string withdraws them.',
      REQUEST_FIELDS.function_tools,
      setter((params) => engine.setFunctionTools(params)),
      { admin: true, supported: supported('function_tools') },
    ),
    method<RKLLMCrossAttnParam>(
      'rkllm_set_cross_attn_params',
      "Sets the encoder's cross-attention inputs (rkllm_set_cross_attn_params).",
      object(
        {
          encoder_k_cache: floats,
          encoder_v_cache: floats,
          encoder_mask: floats,
          encoder_pos: { type: 'array', items: int(0, 1 << 20) },
          num_tokens: int(0, 1 << 20),
        },
        ['encoder_k_cache', 'encoder_v_cache', 'encoder_mask', 'encoder_pos', 'num_tokens'],
      ),
      setter((params) => engine.setCrossAttnParams(params)),
      { admin: true, supported: supported('cross_attn') },
    ),
    method('rkllm_get_constants', 'Returns every enum and constant of rkllm.h.', NO_PARAMS, () => ({
      enums: { LLMCallState, RKLLMInputType, RKLLMInferMode },
      constants: CPU_MASKS,
    })),
  ];
}
