/**
 * Prompt caches on llama.cpp: a cache is a sequence state file. Loading one keeps its tokens, and
 * a run whose input starts with them restores the state instead of evaluating them again.
 */
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { LlamaContextSequence, Token } from 'node-llama-cpp';
import { fault } from '../../errors.js';
import { notSupported } from '../capabilities.js';
import { errorText } from '../messages.js';
import { RKLLMInferMode, type RunRequest } from '../types.js';
import { LLAMA, invalidFile, type LoadedModel } from './model.js';
import type { SlotPool } from './slot-pool.js';

/** What llama.cpp's sequence state files (our prompt caches) start with: LLAMA_STATE_SEQ_MAGIC, little-endian. */
const STATE_FILE_MAGIC = 'qsgg';

/** How many tokens `a` and `b` share from the start. */
export function commonPrefix(a: readonly Token[], b: readonly Token[]): number {
  let common = 0;
  while (common < a.length && common < b.length && a[common] === b[common]) common++;
  return common;
}

/** `rkllm_load_prompt_cache`: reads the state into a free slot to learn its tokens. Throws BUSY when no slot is free. */
export async function loadPromptCache(loaded: LoadedModel, path: string): Promise<void> {
  await checkStateFile(path);
  const sequence = loaded.base.tryTake();
  if (!sequence) throw fault('BUSY', 'no_free_slot', {}, { retry_after: 1 });
  try {
    await sequence.loadStateFromFile(path, { acceptRisk: true });
    loaded.promptCache = { path, tokens: [...sequence.contextTokens] };
  } catch (err) {
    await sequence.clearHistory();
    throw invalidFile(
      `"${path}" is not a prompt cache for this model and slot count (a cache loads where the same model runs with the same parallel setting): ${errorText(err)}`,
    );
  } finally {
    loaded.base.give(sequence);
  }
}

/** Refuses a file that is not a llama.cpp sequence state file, before llama.cpp reads it. */
async function checkStateFile(path: string): Promise<void> {
  const head = Buffer.alloc(4);
  const file = await open(path, 'r');
  try {
    await file.read(head, 0, 4, 0);
  } finally {
    await file.close();
  }
  if (head.toString('latin1') !== STATE_FILE_MAGIC) {
    throw invalidFile(`"${path}" is not a prompt cache: it does not start like a llama.cpp sequence state file`);
  }
}

/** Checks that a run asking for `save_prompt_cache` can save one where it says. */
export function checkCacheTarget(request: RunRequest): void {
  if (request.infer.lora_params)
    throw notSupported(LLAMA, 'prompt_cache', 'a prompt cache is saved from the base model, not through a LoRA adapter');
  if (request.infer.mode === RKLLMInferMode.RKLLM_INFER_GET_LAST_HIDDEN_LAYER) {
    throw notSupported(LLAMA, 'prompt_cache', 'GET_LAST_HIDDEN_LAYER runs on an embedding context, whose state is not kept');
  }
  const path = request.infer.prompt_cache_params!.prompt_cache_path;
  if (!existsSync(dirname(path))) {
    throw fault(
      'INVALID_PARAMS',
      'detail',
      { detail: `"prompt_cache_params.prompt_cache_path" is in a folder that does not exist: ${dirname(path)}` },
      { reason: 'file_not_found' },
    );
  }
}

/**
 * Reuses whatever prefix of `tokens` the sequence already holds (history, shared system
 * prompt), or the loaded prompt cache when it covers more, and erases the rest. Returns the
 * tokens still to evaluate (never empty: the last token is re-evaluated to get fresh logits).
 */
export async function align(loaded: LoadedModel, pool: SlotPool, sequence: LlamaContextSequence, tokens: Token[]): Promise<Token[]> {
  const cache = loaded.promptCache;
  const reusable = tokens.slice(0, -1);
  if (cache && pool === loaded.base && commonPrefix(cache.tokens, reusable) > commonPrefix(sequence.contextTokens, reusable)) {
    await sequence.loadStateFromFile(cache.path, { acceptRisk: true });
  }
  const common = commonPrefix(sequence.contextTokens, reusable);
  if (common < sequence.nextTokenIndex) await sequence.eraseContextTokenRanges([{ start: common, end: sequence.nextTokenIndex }]);
  return tokens.slice(common);
}
