/** From a run request to the tokens it evaluates, checked before the run takes a slot. */
import type { LlamaGrammar, Token } from 'node-llama-cpp';
import { fault, type ServerError } from '../../errors.js';
import { notSupported } from '../capabilities.js';
import { RKLLMInputType, type RKLLMInput, type RunRequest, type SamplingParams } from '../types.js';
import { chatTokens, startTokens, tokenize } from './chat-prompt.js';
import { poolFor } from './lora.js';
import { LLAMA, type LoadedModel } from './model.js';
import { outputGrammar } from './output-grammar.js';
import { checkCacheTarget } from './prompt-cache.js';
import type { PromptFormat } from './prompt-format.js';
import type { SlotPool } from './slot-pool.js';
import { indexTokenEmbeddings } from './token-embeddings.js';

/** What a run evaluates, worked out before it takes a slot. */
export interface RunPlan {
  /** History (when kept) and the wrapped input, from BOS on. */
  tokens: Token[];
  pool: SlotPool;
  /** Constrains sampling (`json_schema`). */
  grammar?: LlamaGrammar;
}

export function checkSampling(sampling: Partial<SamplingParams>): void {
  if (sampling.mirostat) throw notSupported(LLAMA, 'mirostat', "node-llama-cpp's sampler has no mirostat stage");
}

/** Returns `format` if a conversation can start with it and still hold a prompt; throws -32602 otherwise. */
export function fitting(loaded: LoadedModel, format: PromptFormat): PromptFormat {
  const fixed =
    startTokens(loaded, format.system()).length +
    tokenize(loaded, format.turn({ role: 'user', enable_thinking: true }, '', loaded.thinking)).length;
  if (fixed >= loaded.param.max_context_len - 1) {
    throw contextOverflow(
      `the system prompt, prefix and postfix take ${fixed} tokens, which leaves no room for a prompt in the context (max_context_len ${loaded.param.max_context_len})`,
    );
  }
  return format;
}

function contextOverflow(detail: string): ServerError {
  return fault('INVALID_PARAMS', 'detail', { detail }, { reason: 'context_overflow' });
}

/** Checks a run and works out its tokens. Throws -32602 or NOT_SUPPORTED. */
export async function planRun(loaded: LoadedModel, request: RunRequest): Promise<RunPlan> {
  const { input, infer } = request;
  if (input.images?.length) {
    throw notSupported(LLAMA, 'images', 'node-llama-cpp 3.21.1 has no vision binding: images need --engine rkllm with a vision encoder');
  }
  checkSampling(infer.sampling_params ?? {});
  const pool = poolFor(loaded, request);
  if (infer.prompt_cache_params?.save_prompt_cache) checkCacheTarget(request);
  // The run's own template and tools, laid over the ones set for everyone; a conversation (`input.messages`) lays the tools itself.
  const { chat_template: template, function_tools: tools } = infer;
  const templated = template ? loaded.format.withTemplate(template) : loaded.format;
  const format = template || tools ? fitting(loaded, tools ? templated.withTools(tools) : templated) : loaded.format;
  // A conversation carries its own history, and starts with its own system prompt.
  const chat = input.messages !== undefined && input.input_type === RKLLMInputType.RKLLM_INPUT_PROMPT;
  const history = infer.keep_history && !chat ? loaded.conversations.of(request.owner ?? '') : [];
  const start = history.length === 0 && !chat ? startTokens(loaded, format.system()) : [];
  const fresh = chat ? chatTokens(loaded, input.messages!, templated, tools) : await inputTokens(loaded, format, input);
  if (fresh.length === 0) throw fault('INVALID_PARAMS', 'detail', { detail: 'the input is empty: there is nothing to evaluate' });
  const limit = loaded.param.max_context_len - 1;
  if (start.length + fresh.length > limit) {
    throw contextOverflow(
      `the input is ${start.length + fresh.length} tokens, longer than the context allows (${limit} tokens, max_context_len ${loaded.param.max_context_len})`,
    );
  }
  const grammar = infer.json_schema ? { grammar: await outputGrammar(loaded, infer.json_schema) } : {};
  const all = [...start, ...history, ...fresh];
  if (all.length <= limit) return { tokens: all, pool, ...grammar };
  // Too long with the history: keep its first n_keep tokens (at least BOS) and the most recent turns.
  const keep = Math.min(Math.max(loaded.param.n_keep, 1), history.length);
  return { tokens: [...all.slice(0, keep), ...all.slice(all.length - limit + keep)], pool, ...grammar };
}

async function inputTokens(loaded: LoadedModel, format: PromptFormat, input: RKLLMInput): Promise<Token[]> {
  switch (input.input_type) {
    case RKLLMInputType.RKLLM_INPUT_PROMPT:
      return tokenize(loaded, format.turn(input, input.prompt_input ?? '', loaded.thinking));
    case RKLLMInputType.RKLLM_INPUT_TOKEN: {
      const ids = input.token_input?.input_ids ?? [];
      const bad = ids.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= loaded.vocabSize);
      if (bad >= 0) {
        throw fault('INVALID_PARAMS', 'detail', {
          detail: `"token_input.input_ids[${bad}]" must be a token id of this model (0 to ${loaded.vocabSize - 1}); got ${ids[bad]}`,
        });
      }
      return ids as Token[];
    }
    case RKLLMInputType.RKLLM_INPUT_EMBED:
      return embedTokens(loaded, input.embed_input ?? { embed: [] });
    default:
      throw notSupported(LLAMA, 'input_multimodal', 'node-llama-cpp 3.21.1 has no vision encoder binding');
  }
}

async function embedTokens(loaded: LoadedModel, input: { embed: number[]; n_tokens?: number }): Promise<Token[]> {
  const size = loaded.model.embeddingVectorSize;
  const count = input.n_tokens ?? Math.ceil(input.embed.length / size);
  if (count < 1 || input.embed.length !== count * size) {
    throw fault('INVALID_PARAMS', 'detail', {
      detail: `"embed_input.embed" must hold n_tokens x n_embd = ${count} x ${size} = ${count * size} values; got ${input.embed.length}`,
    });
  }
  const index = await (loaded.embeddingIndex ??= indexTokenEmbeddings(loaded.param.model_path, loaded.model.fileInfo));
  if (typeof index === 'string') throw notSupported(LLAMA, 'input_embed', index);
  const found = index(input.embed);
  if ('unmatched' in found) {
    throw notSupported(
      LLAMA,
      'input_embed',
      `vector ${found.unmatched} is no row of the model's token embedding table; node-llama-cpp can only evaluate vectors that are`,
    );
  }
  return found.tokens;
}
