import type { Llama, LlamaEmbeddingContext, LlamaModel, Token } from 'node-llama-cpp';
import { RpcError } from '../../jsonrpc/errors.js';
import { checkModelFile } from '../../model/model-file.js';
import { errorText } from '../messages.js';
import type { RKLLMParam } from '../types.js';
import { checkMemory } from './memory-budget.js';
import { PromptFormat } from './prompt-format.js';
import { SlotPool } from './slot-pool.js';
import type { TokenEmbeddingIndex } from './token-embeddings.js';

/** The engine's name in messages and in `data.engine`. */
export const LLAMA = 'llama.cpp';

/** Everything that belongs to one loaded model; {@link freeModel} drops it whole. */
export interface LoadedModel {
  param: RKLLMParam;
  model: LlamaModel;
  threads: number;
  base: SlotPool;
  adapters: Map<string, SlotPool>;
  format: PromptFormat;
  /** The conversation kept by `keep_history`: every token of the last run, from BOS on. */
  history: Token[];
  promptCache?: { path: string; tokens: Token[] };
  /** Whether the vocabulary has `<think>`/`</think>` tokens (a Qwen3-style thinking model). */
  thinking: boolean;
  vocabSize: number;
  embedding?: Promise<LlamaEmbeddingContext>;
  embeddingIndex?: Promise<TokenEmbeddingIndex | string>;
}

/**
 * Loads `param.model_path` with one context of `slots` sequences. `max_context_len` becomes what
 * the context really holds. A model that cannot load is ENGINE_ERROR.
 */
export async function loadModel(
  llama: Llama,
  param: RKLLMParam,
  defaultThreads: number,
  slots: number,
  maxMemory = 0,
): Promise<LoadedModel> {
  checkModelFile(param.model_path, LLAMA);
  let model: LlamaModel;
  try {
    model = await llama.loadModel({ modelPath: param.model_path });
  } catch (err) {
    throw new RpcError('ENGINE_ERROR', `llama.cpp cannot load "${param.model_path}": ${errorText(err)}`, {
      engine: LLAMA,
      reason: errorText(err),
    });
  }
  const threads = param.extend_param.enabled_cpus_num > 0 ? param.extend_param.enabled_cpus_num : defaultThreads;
  try {
    checkMemory(model, param.max_context_len, slots, maxMemory, LLAMA);
    const base = await SlotPool.create(model, param.max_context_len, threads, slots);
    const isSpecial = (text: string): boolean => model.tokenize(text, true).length === 1;
    return {
      param: { ...param, max_context_len: base.context.contextSize },
      model,
      threads,
      base,
      adapters: new Map(),
      format: new PromptFormat(),
      history: [],
      thinking: isSpecial('<think>') && isSpecial('</think>'),
      vocabSize: model.fileInfo.metadata.tokenizer?.ggml.tokens.length ?? 0,
    };
  } catch (err) {
    await model.dispose();
    throw err;
  }
}

/** Frees the embedding context, every slot pool and the model. */
export async function freeModel(loaded: LoadedModel): Promise<void> {
  const embedding = await loaded.embedding?.catch(() => undefined);
  await embedding?.dispose();
  for (const pool of [loaded.base, ...loaded.adapters.values()]) await pool.context.dispose();
  await loaded.model.dispose();
}
