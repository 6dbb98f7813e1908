import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { getLlama, type Llama, type LlamaContextSequence, type LlamaEmbeddingContext, type LlamaModel, type Token } from 'node-llama-cpp';
import { RpcError, invalidParams } from '../jsonrpc/errors.js';
import { notSupported, type EngineFeature } from './capabilities.js';
import { PromptFormat, type PromptSegment } from './prompt-format.js';
import { ResultEmitter } from './result-emitter.js';
import { serializeSampling } from './serial-sampling.js';
import { SlotPool } from './slot-pool.js';
import { TokenEmbeddingIndex } from './token-embeddings.js';
import {
  LLMCallState,
  RKLLMInputType,
  RKLLMInferMode,
  type ChatTemplate,
  type Engine,
  type FunctionTools,
  type KvCacheClear,
  type KvCacheSize,
  type LLMResultCallback,
  type RKLLMInput,
  type RKLLMLoraAdapter,
  type RKLLMParam,
  type RunHandle,
  type RunOutcome,
  type RunRequest,
  type SamplingParams,
} from './types.js';

export interface LlamaEngineOptions {
  /** CPU threads used for evaluation. Always explicit: llama.cpp's default oversubscribes small machines. */
  threads: number;
  /** Generations that run at once, each on its own context sequence. */
  slots: number;
  /** An already loaded llama.cpp binding to share; one is created (and owned) otherwise. */
  llama?: Llama;
}

/** Prompts are evaluated in slices this long, so an abort during a long prefill takes effect quickly. */
const PREFILL_SLICE = 128;

/** Recent tokens the repeat penalties look at. */
const REPEAT_WINDOW = 64;

/**
 * The last `n` tokens of `before` followed by `after`, without copying the whole history: this runs
 * once per generated token.
 */
function lastTokens(before: Token[], after: Token[], n: number): Token[] {
  if (after.length >= n) return after.slice(after.length - n);
  return [...before.slice(Math.max(0, before.length - (n - after.length))), ...after];
}

/** The longest byte sequence of one UTF-8 character: a partial character never spans more tokens. */
const MAX_UTF8_TOKENS = 4;

/** ln of the smallest positive float32: log-probabilities that underflow to 0 are reported as this. */
const LOG_PROB_FLOOR = Math.log(1.4e-45);

/** What llama.cpp's sequence state files (our prompt caches) start with: LLAMA_STATE_SEQ_MAGIC, little-endian. */
const STATE_FILE_MAGIC = 'qsgg';

const UNSUPPORTED: ReadonlySet<EngineFeature> = new Set(['input_multimodal', 'cross_attn', 'mirostat']);

/** Everything that belongs to one loaded model; `destroy` drops it whole. */
interface LoadedModel {
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

/** What a run evaluates, worked out before it takes a slot. */
interface RunPlan {
  /** History (when kept) and the wrapped input, from BOS on. */
  tokens: Token[];
  pool: SlotPool;
}

/** Length of the common prefix of `held` and `wanted`, leaving at least the last wanted token. */
function reusable(held: readonly Token[], wanted: readonly Token[]): number {
  let common = 0;
  while (common < held.length && common < wanted.length - 1 && held[common] === wanted[common]) common++;
  return common;
}

function commonPrefix(a: readonly Token[], b: readonly Token[]): number {
  let common = 0;
  while (common < a.length && common < b.length && a[common] === b[common]) common++;
  return common;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The engine on llama.cpp (node-llama-cpp). Each slot is a sequence of one shared context, so
 * parallel runs are batched in the same forward passes. Each LoRA adapter gets a context of its
 * own (llama.cpp applies adapters per context); GET_LAST_HIDDEN_LAYER runs on an embedding
 * context made on first use.
 */
export class LlamaEngine implements Engine {
  readonly name = 'llama.cpp';
  readonly slots: number;
  readonly #threads: number;
  readonly #ownsLlama: boolean;
  #llama: Llama | undefined;
  #loaded: LoadedModel | undefined;
  #loading: Promise<LoadedModel> | undefined;
  #running = new Set<AbortController>();
  #runs = new Set<Promise<RunOutcome>>();

  constructor(options: LlamaEngineOptions) {
    this.slots = options.slots;
    this.#threads = options.threads;
    this.#llama = options.llama;
    this.#ownsLlama = options.llama === undefined;
  }

  get param(): RKLLMParam {
    return this.#require().param;
  }

  supports(feature: EngineFeature): boolean {
    return !UNSUPPORTED.has(feature);
  }

  async init(param: RKLLMParam): Promise<void> {
    if (this.#loaded || this.#loading) {
      const state = this.#loading ? 'loading' : `loaded (${this.#loaded!.param.model_path})`;
      throw new RpcError('MODEL_LOADED', `A model is already ${state}; the server holds one model at a time: call rkllm_destroy first`, {
        engine: this.name,
      });
    }
    if (param.extend_param.use_cross_attn) throw notSupported(this.name, 'cross_attn', 'node-llama-cpp exposes no encoder cache');
    this.#checkSampling(param);
    this.#loading = this.#load(param);
    try {
      this.#loaded = await this.#loading;
    } finally {
      this.#loading = undefined;
    }
  }

  async validate(request: RunRequest): Promise<void> {
    await this.#plan(this.#require(), request);
  }

  run(request: RunRequest, callback: LLMResultCallback): Promise<RunOutcome> {
    const done = this.#generate(request, callback);
    this.#runs.add(done);
    void done.finally(() => this.#runs.delete(done));
    return done;
  }

  runAsync(request: RunRequest, callback: LLMResultCallback): RunHandle {
    return { done: this.run(request, callback) };
  }

  abort(): void {
    for (const controller of this.#running) controller.abort();
  }

  isRunning(): boolean {
    return this.#running.size > 0;
  }

  async loadLora(adapter: RKLLMLoraAdapter): Promise<void> {
    const loaded = this.#require();
    if (loaded.adapters.has(adapter.lora_adapter_name)) {
      throw invalidParams(`Invalid params: a LoRA adapter named "${adapter.lora_adapter_name}" is already loaded; names must be unique`);
    }
    let pool: SlotPool;
    try {
      pool = await this.#createPool(loaded.model, loaded.param.max_context_len, loaded.threads, adapter);
    } catch (err) {
      throw invalidParams(`Invalid params: llama.cpp cannot apply "${adapter.lora_adapter_path}" to this model: ${message(err)}`, {
        engine: this.name,
        reason: 'invalid_file',
      });
    }
    if (this.#loaded !== loaded) {
      await pool.context.dispose();
      throw this.#unavailable();
    }
    loaded.adapters.set(adapter.lora_adapter_name, pool);
  }

  async loadPromptCache(path: string): Promise<void> {
    const loaded = this.#require();
    await this.#checkStateFile(path);
    const sequence = loaded.base.tryTake();
    if (!sequence) throw new RpcError('BUSY', 'Every slot is running; load the prompt cache when one is free', { retry_after: 1 });
    try {
      await sequence.loadStateFromFile(path, { acceptRisk: true });
      loaded.promptCache = { path, tokens: [...sequence.contextTokens] };
    } catch (err) {
      await sequence.clearHistory();
      throw invalidParams(
        `Invalid params: "${path}" is not a prompt cache for this model and slot count (a cache loads where the same model runs with the same parallel setting): ${message(err)}`,
        { engine: this.name, reason: 'invalid_file' },
      );
    } finally {
      loaded.base.give(sequence);
    }
  }

  async releasePromptCache(): Promise<void> {
    this.#require().promptCache = undefined;
  }

  async clearKvCache(request: KvCacheClear): Promise<void> {
    const loaded = this.#require();
    if (this.isRunning()) {
      throw new RpcError('BUSY', 'The KV cache cannot be cleared while a generation runs; abort it or retry when it ends', {
        retry_after: 1,
      });
    }
    const pools = [loaded.base, ...loaded.adapters.values()];
    const { start_pos: starts, end_pos: ends } = request;
    if (starts === undefined && ends === undefined) {
      const system = request.keep_system_prompt ? this.#conversationStart(loaded) : [];
      for (const sequence of pools.flatMap((pool) => pool.sequences)) {
        await sequence.eraseContextTokenRanges([{ start: commonPrefix(sequence.contextTokens, system), end: sequence.nextTokenIndex }]);
      }
      loaded.history = loaded.history.slice(0, commonPrefix(loaded.history, system));
      return;
    }
    if (starts === undefined || ends === undefined || starts.length !== ends.length || starts.length > this.slots) {
      throw invalidParams(`Invalid params: "start_pos" and "end_pos" go together, with one position per slot (at most ${this.slots})`);
    }
    for (const [slot, start] of starts.entries()) {
      const end = ends[slot]!;
      for (const sequence of pools.map((pool) => pool.sequences[slot]!)) {
        const stop = Math.min(end, sequence.nextTokenIndex);
        if (start < stop) await sequence.eraseContextTokenRanges([{ start, end: stop }]);
      }
      // The kept conversation follows slot 0, as with a single RKLLM batch.
      if (slot === 0 && start < end) loaded.history = [...loaded.history.slice(0, start), ...loaded.history.slice(end)];
    }
  }

  async getKvCacheSize(): Promise<KvCacheSize> {
    return { cache_sizes: this.#require().base.sequences.map((sequence) => sequence.nextTokenIndex) };
  }

  async setChatTemplate(template: ChatTemplate): Promise<void> {
    const loaded = this.#require();
    loaded.format = this.#fitting(loaded, loaded.format.withTemplate(template));
  }

  async setFunctionTools(tools: FunctionTools): Promise<void> {
    const loaded = this.#require();
    loaded.format = this.#fitting(loaded, loaded.format.withTools(tools));
  }

  async setCrossAttnParams(): Promise<void> {
    this.#require();
    throw notSupported(this.name, 'cross_attn', 'node-llama-cpp exposes no encoder cache');
  }

  async destroy(): Promise<void> {
    const loaded = this.#loaded ?? (await this.#loading?.catch(() => undefined));
    this.#loaded = undefined;
    this.abort();
    await Promise.all(this.#runs);
    if (!loaded) return;
    const embedding = await loaded.embedding?.catch(() => undefined);
    await embedding?.dispose();
    for (const pool of [loaded.base, ...loaded.adapters.values()]) await pool.context.dispose();
    await loaded.model.dispose();
  }

  async dispose(): Promise<void> {
    await this.destroy();
    if (this.#ownsLlama) await this.#llama?.dispose();
  }

  #require(): LoadedModel {
    if (!this.#loaded) throw this.#unavailable();
    return this.#loaded;
  }

  #unavailable(): RpcError {
    return new RpcError(
      'ENGINE_UNAVAILABLE',
      this.#loading ? 'The model is still loading; retry when rkllm_init has answered' : 'No model is loaded; call rkllm_init first',
      { engine: this.name },
    );
  }

  async #load(param: RKLLMParam): Promise<LoadedModel> {
    this.#llama ??= await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
    let model: LlamaModel;
    try {
      model = await this.#llama.loadModel({ modelPath: param.model_path });
    } catch (err) {
      throw new RpcError('ENGINE_ERROR', `llama.cpp cannot load "${param.model_path}": ${message(err)}`, {
        engine: this.name,
        reason: message(err),
      });
    }
    const threads = param.extend_param.enabled_cpus_num > 0 ? param.extend_param.enabled_cpus_num : this.#threads;
    try {
      const base = await this.#createPool(model, param.max_context_len, threads);
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

  async #createPool(model: LlamaModel, contextSize: number, threads: number, adapter?: RKLLMLoraAdapter): Promise<SlotPool> {
    const context = await model.createContext({
      contextSize,
      sequences: this.slots,
      threads,
      batchSize: Math.min(512, contextSize),
      ...(adapter ? { lora: { adapters: [{ filePath: adapter.lora_adapter_path, scale: adapter.scale }] } } : {}),
    });
    serializeSampling(context);
    return new SlotPool(context, this.slots);
  }

  #checkSampling(sampling: Partial<SamplingParams>): void {
    if (sampling.mirostat) throw notSupported(this.name, 'mirostat', "node-llama-cpp's sampler has no mirostat stage");
  }

  #tokenize(loaded: LoadedModel, segments: PromptSegment[]): Token[] {
    return segments.flatMap((segment) => loaded.model.tokenize(segment.text, segment.special));
  }

  /** BOS (when the model wants it) and the system prompt: how every conversation starts. */
  #conversationStart(loaded: LoadedModel, format: PromptFormat = loaded.format): Token[] {
    const bos = loaded.model.tokens.bos;
    const prefix = bos !== null && loaded.model.tokens.shouldPrependBosToken ? [bos] : [];
    return [...prefix, ...this.#tokenize(loaded, format.system())];
  }

  /** Returns `format` if a conversation can start with it and still hold a prompt; throws -32602 otherwise. */
  #fitting(loaded: LoadedModel, format: PromptFormat): PromptFormat {
    const fixed =
      this.#conversationStart(loaded, format).length +
      this.#tokenize(loaded, format.turn({ role: 'user', enable_thinking: true }, '', loaded.thinking)).length;
    if (fixed >= loaded.param.max_context_len - 1) {
      throw invalidParams(
        `Invalid params: the system prompt, prefix and postfix take ${fixed} tokens, which leaves no room for a prompt in the context (max_context_len ${loaded.param.max_context_len})`,
        { reason: 'context_overflow' },
      );
    }
    return format;
  }

  /** Checks a run and works out its tokens. Throws -32602 or NOT_SUPPORTED. */
  async #plan(loaded: LoadedModel, request: RunRequest): Promise<RunPlan> {
    const { input, infer } = request;
    this.#checkSampling(infer.sampling_params ?? {});
    const pool = this.#pool(loaded, request);
    if (infer.prompt_cache_params?.save_prompt_cache) this.#checkCacheTarget(request);
    const history = infer.keep_history ? loaded.history : [];
    const start = history.length === 0 ? this.#conversationStart(loaded) : [];
    const fresh = await this.#inputTokens(loaded, input);
    if (fresh.length === 0) throw invalidParams('Invalid params: the input is empty: there is nothing to evaluate');
    const limit = loaded.param.max_context_len - 1;
    if (start.length + fresh.length > limit) {
      throw invalidParams(
        `Invalid params: the input is ${start.length + fresh.length} tokens, longer than the context allows (${limit} tokens, max_context_len ${loaded.param.max_context_len})`,
        { reason: 'context_overflow' },
      );
    }
    const all = [...start, ...history, ...fresh];
    if (all.length <= limit) return { tokens: all, pool };
    // Too long with the history: keep its first n_keep tokens (at least BOS) and the most recent turns.
    const keep = Math.min(Math.max(loaded.param.n_keep, 1), history.length);
    return { tokens: [...all.slice(0, keep), ...all.slice(all.length - limit + keep)], pool };
  }

  #pool(loaded: LoadedModel, request: RunRequest): SlotPool {
    const name = request.infer.lora_params?.lora_adapter_name;
    if (name === undefined) return loaded.base;
    if (request.infer.mode === RKLLMInferMode.RKLLM_INFER_GET_LAST_HIDDEN_LAYER) {
      throw notSupported(this.name, 'lora', 'GET_LAST_HIDDEN_LAYER runs on an embedding context, which takes no adapters');
    }
    const pool = loaded.adapters.get(name);
    if (!pool) {
      const names = [...loaded.adapters.keys()].map((n) => JSON.stringify(n)).join(', ') || 'none';
      throw invalidParams(`Invalid params: "lora_params.lora_adapter_name" is "${name}", which names no loaded adapter (loaded: ${names})`);
    }
    return pool;
  }

  #checkCacheTarget(request: RunRequest): void {
    if (request.infer.lora_params)
      throw notSupported(this.name, 'prompt_cache', 'a prompt cache is saved from the base model, not through a LoRA adapter');
    if (request.infer.mode === RKLLMInferMode.RKLLM_INFER_GET_LAST_HIDDEN_LAYER) {
      throw notSupported(this.name, 'prompt_cache', 'GET_LAST_HIDDEN_LAYER runs on an embedding context, whose state is not kept');
    }
    const path = request.infer.prompt_cache_params!.prompt_cache_path;
    if (!existsSync(dirname(path))) {
      throw invalidParams(`Invalid params: "prompt_cache_params.prompt_cache_path" is in a folder that does not exist: ${dirname(path)}`, {
        reason: 'file_not_found',
      });
    }
  }

  async #inputTokens(loaded: LoadedModel, input: RKLLMInput): Promise<Token[]> {
    switch (input.input_type) {
      case RKLLMInputType.RKLLM_INPUT_PROMPT:
        return this.#tokenize(loaded, loaded.format.turn(input, input.prompt_input ?? '', loaded.thinking));
      case RKLLMInputType.RKLLM_INPUT_TOKEN: {
        const ids = input.token_input?.input_ids ?? [];
        const bad = ids.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= loaded.vocabSize);
        if (bad >= 0) {
          throw invalidParams(
            `Invalid params: "token_input.input_ids[${bad}]" must be a token id of this model (0 to ${loaded.vocabSize - 1}); got ${ids[bad]}`,
          );
        }
        return ids as Token[];
      }
      case RKLLMInputType.RKLLM_INPUT_EMBED:
        return this.#embedTokens(loaded, input.embed_input ?? { embed: [] });
      default:
        throw notSupported(this.name, 'input_multimodal', 'node-llama-cpp 3.21.1 has no vision encoder binding');
    }
  }

  async #embedTokens(loaded: LoadedModel, input: { embed: number[]; n_tokens?: number }): Promise<Token[]> {
    const size = loaded.model.embeddingVectorSize;
    const count = input.n_tokens ?? Math.ceil(input.embed.length / size);
    if (count < 1 || input.embed.length !== count * size) {
      throw invalidParams(
        `Invalid params: "embed_input.embed" must hold n_tokens x n_embd = ${count} x ${size} = ${count * size} values; got ${input.embed.length}`,
      );
    }
    const index = await (loaded.embeddingIndex ??= TokenEmbeddingIndex.fromModelFile(loaded.param.model_path, loaded.model.fileInfo));
    if (typeof index === 'string') throw notSupported(this.name, 'input_embed', index);
    const found = index.tokensFor(input.embed);
    if ('unmatched' in found) {
      throw notSupported(
        this.name,
        'input_embed',
        `vector ${found.unmatched} is no row of the model's token embedding table; node-llama-cpp can only evaluate vectors that are`,
      );
    }
    return found.tokens;
  }

  #sampling(loaded: LoadedModel, request: RunRequest): SamplingParams {
    const p = loaded.param;
    return {
      top_k: p.top_k,
      top_p: p.top_p,
      temperature: p.temperature,
      repeat_penalty: p.repeat_penalty,
      frequency_penalty: p.frequency_penalty,
      presence_penalty: p.presence_penalty,
      ...request.infer.sampling_params,
    };
  }

  async #generate(request: RunRequest, callback: LLMResultCallback): Promise<RunOutcome> {
    const controller = new AbortController();
    const onAbort = (): void => controller.abort();
    request.signal?.addEventListener('abort', onAbort, { once: true });
    if (request.signal?.aborted) controller.abort();
    this.#running.add(controller);
    const emitter = new ResultEmitter(callback);
    let release: (() => void) | undefined;
    try {
      const loaded = this.#require();
      const plan = await this.#plan(loaded, request);
      if (request.infer.mode === RKLLMInferMode.RKLLM_INFER_GET_LAST_HIDDEN_LAYER) {
        return emitter.finish(await this.#hiddenLayer(loaded, plan, request, emitter));
      }
      const sequence = await plan.pool.take();
      release = () => plan.pool.give(sequence);
      const run = { loaded, sequence, plan, request, emitter, signal: controller.signal };
      return emitter.finish(
        request.infer.mode === RKLLMInferMode.RKLLM_INFER_GET_LOGITS ? await this.#logits(run) : await this.#evaluate(run),
      );
    } catch (err) {
      return emitter.fail(message(err));
    } finally {
      request.signal?.removeEventListener('abort', onAbort);
      this.#running.delete(controller);
      release?.();
    }
  }

  #keepHistory(loaded: LoadedModel, request: RunRequest, tokens: Token[]): void {
    loaded.history = request.infer.keep_history ? tokens : [];
  }

  /** GENERATE: prefill, then sample token by token, holding back split UTF-8 characters (WAITING). */
  async #evaluate(run: SlotRun): Promise<RunOutcome['finish_reason']> {
    const { loaded, sequence, plan, request, emitter, signal } = run;
    const model = loaded.model;
    const tokens = plan.tokens;
    const rest = await this.#prefill(run);
    if (!rest) return 'abort';
    const requested = request.infer.max_new_tokens ?? loaded.param.max_new_tokens;
    const room = loaded.param.max_context_len - tokens.length;
    const maxNew = requested > 0 ? Math.min(requested, room) : room;
    const s = this.#sampling(loaded, request);
    const generated: Token[] = [];
    const pending: Token[] = [];
    let context: Token[] = tokens.slice(-8);
    let reason: RunOutcome['finish_reason'] = 'stop';
    const greedy = s.temperature <= 0 || s.top_k === 1;
    const options = {
      temperature: greedy ? 0 : s.temperature,
      topK: s.top_k,
      topP: s.top_p,
      ...(s.seed === undefined ? {} : { seed: s.seed }),
      repeatPenalty: {
        punishTokens: () => lastTokens(tokens, generated, REPEAT_WINDOW),
        penalty: s.repeat_penalty,
        frequencyPenalty: s.frequency_penalty,
        presencePenalty: s.presence_penalty,
      },
    };
    for await (const token of sequence.evaluate(rest, options)) {
      generated.push(token);
      pending.push(token);
      const text = model.detokenize(pending, !loaded.param.skip_special_token, context);
      if (text.endsWith('\uFFFD') && pending.length < MAX_UTF8_TOKENS) {
        emitter.token('', token, LLMCallState.RKLLM_RUN_WAITING);
      } else {
        context = [...context, ...pending].slice(-8);
        pending.length = 0;
        emitter.token(text, token, LLMCallState.RKLLM_RUN_NORMAL);
      }
      if (signal.aborted || emitter.stopRequested) {
        reason = 'abort';
        break;
      }
      if (generated.length >= maxNew) {
        reason = 'length';
        break;
      }
    }
    if (pending.length > 0) emitter.token(model.detokenize(pending, false, context), pending.at(-1)!, LLMCallState.RKLLM_RUN_NORMAL);
    this.#keepHistory(loaded, request, [...tokens, ...generated]);
    return reason;
  }

  /**
   * GET_LOGITS: the next-token distribution after the input, as log-probabilities. llama.cpp's
   * raw logits are not reachable through node-llama-cpp; its probabilities (a softmax of them)
   * are, so the result says `normalization: "log_softmax"`.
   */
  async #logits(run: SlotRun): Promise<RunOutcome['finish_reason']> {
    const { loaded, sequence, plan, request, emitter } = run;
    const rest = await this.#prefill(run);
    if (!rest) return 'abort';
    const last = rest.at(-1)!;
    const outputs = await sequence.controlledEvaluate([
      ...rest.slice(0, -1),
      [last, { generateNext: { probabilities: true, options: { temperature: 0 } } }],
    ]);
    const probabilities = outputs.at(-1)?.next.probabilities;
    if (!probabilities)
      throw new RpcError('ENGINE_ERROR', 'llama.cpp returned no probabilities for the last input token', { engine: this.name });
    const logits = new Array<number>(loaded.vocabSize).fill(LOG_PROB_FLOOR);
    for (const [token, probability] of probabilities) logits[token] = Math.max(Math.log(probability), LOG_PROB_FLOOR);
    emitter.output({ logits: { logits, vocab_size: loaded.vocabSize, num_tokens: 1, normalization: 'log_softmax' } });
    this.#keepHistory(loaded, request, plan.tokens);
    return 'stop';
  }

  /**
   * GET_LAST_HIDDEN_LAYER: the final hidden state (after the output norm) of the last input
   * token, from an embedding context. node-llama-cpp gives one vector per evaluation, so
   * `num_tokens` is 1.
   */
  async #hiddenLayer(
    loaded: LoadedModel,
    plan: RunPlan,
    request: RunRequest,
    emitter: ResultEmitter,
  ): Promise<RunOutcome['finish_reason']> {
    const context = await (loaded.embedding ??= loaded.model.createEmbeddingContext({
      contextSize: loaded.param.max_context_len,
      threads: loaded.threads,
      batchSize: Math.min(512, loaded.param.max_context_len),
    }));
    emitter.startPrefill(plan.tokens.length);
    const { vector } = await context.getEmbeddingFor([...plan.tokens]);
    emitter.output({ last_hidden_layer: { hidden_states: [...vector], embd_size: vector.length, num_tokens: 1 } });
    this.#keepHistory(loaded, request, plan.tokens);
    return 'stop';
  }

  /**
   * Evaluates the input up to what `sequence.evaluate` should take with generation: at most one
   * slice, or only the last token when the run saves a prompt cache (the cache then holds
   * everything before it). Returns undefined when aborted.
   */
  async #prefill(run: SlotRun): Promise<Token[] | undefined> {
    const { loaded, sequence, plan, request, emitter, signal } = run;
    let rest = await this.#align(loaded, plan.pool, sequence, plan.tokens);
    emitter.startPrefill(rest.length);
    const cache = request.infer.prompt_cache_params;
    const keep = cache?.save_prompt_cache ? 1 : PREFILL_SLICE;
    while (rest.length > keep && !signal.aborted) {
      const n = Math.min(PREFILL_SLICE, rest.length - 1);
      await sequence.evaluateWithoutGeneratingNewTokens(rest.slice(0, n));
      rest = rest.slice(n);
    }
    if (signal.aborted) return undefined;
    if (cache?.save_prompt_cache) await sequence.saveStateToFile(cache.prompt_cache_path);
    return rest;
  }

  /**
   * Reuses whatever prefix of `tokens` the sequence already holds (history, shared system
   * prompt), or the loaded prompt cache when it covers more, and erases the rest. Returns the
   * tokens still to evaluate (never empty: the last token is re-evaluated to get fresh logits).
   */
  async #align(loaded: LoadedModel, pool: SlotPool, sequence: LlamaContextSequence, tokens: Token[]): Promise<Token[]> {
    const cache = loaded.promptCache;
    if (cache && pool === loaded.base && reusable(cache.tokens, tokens) > reusable(sequence.contextTokens, tokens)) {
      await sequence.loadStateFromFile(cache.path, { acceptRisk: true });
    }
    const common = reusable(sequence.contextTokens, tokens);
    if (common < sequence.nextTokenIndex) await sequence.eraseContextTokenRanges([{ start: common, end: sequence.nextTokenIndex }]);
    return tokens.slice(common);
  }

  /** Refuses a file that is not a llama.cpp sequence state file, before llama.cpp reads it. */
  async #checkStateFile(path: string): Promise<void> {
    const head = Buffer.alloc(4);
    const file = await open(path, 'r');
    try {
      await file.read(head, 0, 4, 0);
    } finally {
      await file.close();
    }
    if (head.toString('latin1') !== STATE_FILE_MAGIC) {
      throw invalidParams(`Invalid params: "${path}" is not a prompt cache: it does not start like a llama.cpp sequence state file`, {
        engine: this.name,
        reason: 'invalid_file',
      });
    }
  }
}

/** One run on a slot: what GENERATE and GET_LOGITS work with. */
interface SlotRun {
  loaded: LoadedModel;
  sequence: LlamaContextSequence;
  plan: RunPlan;
  request: RunRequest;
  emitter: ResultEmitter;
  signal: AbortSignal;
}
