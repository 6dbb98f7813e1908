import { statSync } from 'node:fs';
import { basename } from 'node:path';
import type { ChatWrapper, Llama, LlamaEmbeddingContext, LlamaGrammar, LlamaModel, Token } from 'node-llama-cpp';
import { fault, type ServerError } from '../../errors.js';
import { checkModelFile } from '../../gguf/model-file.js';
import { startProgress } from '../../progress.js';
import { errorText } from '../messages.js';
import type { RKLLMParam } from '../types.js';
import { Conversations } from './conversations.js';
import { checkMemory } from './memory-budget.js';
import { PromptFormat } from './prompt-format.js';
import { SlotPool } from './slot-pool.js';
import type { GrammarWorker } from './grammar-worker.js';
import type { TokensForEmbeddings } from './token-embeddings.js';

/** The engine's name in messages and in `data.engine`. */
export const LLAMA = 'llama.cpp';

/** Model files at least this large show progress while they load; smaller ones load too fast to need it. */
const LARGE_MODEL_BYTES = 64 * 1024 * 1024;

/** -32602 for a file llama.cpp cannot use for what it was given as (`data.reason` "invalid_file"). */
export function invalidFile(detail: string): ServerError {
  return fault('INVALID_PARAMS', 'detail', { detail }, { engine: LLAMA, reason: 'invalid_file' });
}

/** Everything that belongs to one loaded model; {@link freeModel} drops it whole. */
export interface LoadedModel {
  param: RKLLMParam;
  model: LlamaModel;
  threads: number;
  base: SlotPool;
  adapters: Map<string, SlotPool>;
  format: PromptFormat;
  /** The conversations kept by `keep_history`, one per run owner. */
  conversations: Conversations;
  promptCache?: { path: string; tokens: Token[] };
  /** Whether the vocabulary has `<think>`/`</think>` tokens (a Qwen3-style thinking model). */
  thinking: boolean;
  vocabSize: number;
  embedding?: Promise<LlamaEmbeddingContext>;
  embeddingIndex?: Promise<TokensForEmbeddings | string>;
  /** The chat wrapper of the GGUF's chat template, null when it has none; worked out on first use (chat-prompt.ts). */
  chatWrapper?: ChatWrapper | null;
  /** Builds `json_schema` grammars off the event loop; started on first use (output-grammar.ts). */
  grammars?: GrammarWorker;
  /** The `json_schema` grammars built lately, by schema text, least recently used first (output-grammar.ts). */
  builtGrammars: Map<string, Promise<LlamaGrammar>>;
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
  const size = statSync(param.model_path, { throwIfNoEntry: false })?.size ?? 0;
  const progress = size >= LARGE_MODEL_BYTES ? startProgress(`loading ${basename(param.model_path)}`, { line: 'json' }) : undefined;
  try {
    model = await llama.loadModel({
      modelPath: param.model_path,
      ...(progress && { onLoadProgress: (done: number) => progress.update(done) }),
    });
  } catch (err) {
    const reason = errorText(err);
    throw fault('ENGINE_ERROR', 'llama_load', { path: param.model_path, reason }, { engine: LLAMA, reason });
  } finally {
    progress?.done();
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
      conversations: new Conversations(),
      builtGrammars: new Map(),
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
  await loaded.grammars?.close();
  const embedding = await loaded.embedding?.catch(() => undefined);
  await embedding?.dispose();
  for (const pool of [loaded.base, ...loaded.adapters.values()]) await pool.context.dispose();
  await loaded.model.dispose();
}
