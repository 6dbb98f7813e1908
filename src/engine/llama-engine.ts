import { getLlama, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token } from 'node-llama-cpp';
import { RpcError, invalidParams } from '../jsonrpc/errors.js';
import { ResultEmitter } from './result-emitter.js';
import {
  LLMCallState,
  RKLLMInputType,
  RKLLMInferMode,
  type Engine,
  type LLMResultCallback,
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

/** RKLLM's chat template: how a prompt is wrapped before tokenization. */
export interface ChatTemplate {
  system_prompt: string;
  prompt_prefix: string;
  prompt_postfix: string;
}

/** Prompts are evaluated in slices this long, so an abort during a long prefill takes effect quickly. */
const PREFILL_SLICE = 128;

/** The longest byte sequence of one UTF-8 character: a partial character never spans more tokens. */
const MAX_UTF8_TOKENS = 4;

/**
 * The engine on llama.cpp (node-llama-cpp). Each slot is a sequence of one shared context, so
 * parallel runs are batched in the same forward passes.
 */
export class LlamaEngine implements Engine {
  readonly name = 'llama.cpp';
  readonly slots: number;
  #param: RKLLMParam | undefined;
  #llama: Llama | undefined;
  #ownsLlama: boolean;
  #model: LlamaModel | undefined;
  #context: LlamaContext | undefined;
  #free: LlamaContextSequence[] = [];
  #running = new Set<AbortController>();
  #runs = new Set<Promise<RunOutcome>>();
  #history: Token[] = [];
  #template: ChatTemplate = { system_prompt: '', prompt_prefix: '', prompt_postfix: '' };
  #threads: number;
  #vocabSize = 0;

  constructor(options: LlamaEngineOptions) {
    this.slots = options.slots;
    this.#threads = options.threads;
    this.#llama = options.llama;
    this.#ownsLlama = options.llama === undefined;
  }

  get param(): RKLLMParam {
    if (!this.#param) throw new RpcError('ENGINE_UNAVAILABLE', 'The engine is not initialised');
    return this.#param;
  }

  get contextSize(): number {
    return this.#context?.contextSize ?? 0;
  }

  async init(param: RKLLMParam): Promise<void> {
    if (this.#model) throw new RpcError('ENGINE_UNAVAILABLE', 'A model is already loaded; destroy it first');
    this.#llama ??= await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
    this.#model = await this.#llama.loadModel({ modelPath: param.model_path });
    this.#context = await this.#model.createContext({
      contextSize: param.max_context_len,
      sequences: this.slots,
      threads: this.#threads,
      batchSize: Math.min(512, param.max_context_len),
    });
    this.#free = Array.from({ length: this.slots }, () => this.#context!.getSequence());
    this.#vocabSize = this.#model.fileInfo.metadata.tokenizer?.ggml.tokens.length ?? 0;
    this.#param = { ...param, max_context_len: this.#context.contextSize };
  }

  setChatTemplate(template: ChatTemplate): void {
    this.#template = { ...template };
  }

  validate(request: RunRequest): void {
    this.#tokens(request);
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

  async destroy(): Promise<void> {
    this.abort();
    await Promise.all(this.#runs);
    await this.#context?.dispose();
    await this.#model?.dispose();
    if (this.#ownsLlama) await this.#llama?.dispose();
    this.#context = undefined;
    this.#model = undefined;
    this.#history = [];
  }

  /** The full token list a run evaluates: history (when kept), then the wrapped input. */
  #tokens(request: RunRequest): Token[] {
    const model = this.#requireModel();
    const { input, infer } = request;
    if (infer.mode !== RKLLMInferMode.RKLLM_INFER_GENERATE) {
      throw new RpcError('NOT_SUPPORTED', `Inference mode ${infer.mode} is not supported by the ${this.name} engine yet`);
    }
    const history = infer.keep_history ? this.#history : [];
    let fresh: Token[];
    switch (input.input_type) {
      case RKLLMInputType.RKLLM_INPUT_PROMPT: {
        const t = this.#template;
        const system = history.length === 0 ? t.system_prompt : '';
        fresh = model.tokenize(`${system}${t.prompt_prefix}${input.prompt_input ?? ''}${t.prompt_postfix}`);
        break;
      }
      case RKLLMInputType.RKLLM_INPUT_TOKEN: {
        const ids = input.token_input?.input_ids ?? [];
        const bad = ids.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= this.#vocabSize);
        if (bad >= 0) throw invalidParams(`token_input.input_ids[${bad}] is not a token id of this model (0..${this.#vocabSize - 1})`);
        fresh = ids as Token[];
        break;
      }
      default:
        throw new RpcError('NOT_SUPPORTED', `Input type ${input.input_type} is not supported by the ${this.name} engine yet`);
    }
    if (fresh.length === 0) throw invalidParams('The input is empty: there is nothing to evaluate');
    const bos = model.tokens.bos;
    const prefix = history.length === 0 && bos !== null && model.tokens.shouldPrependBosToken ? [bos] : [];
    const all = [...prefix, ...history, ...fresh];
    const limit = this.contextSize - 1;
    if (prefix.length + fresh.length > limit) {
      throw invalidParams(
        `The input is ${fresh.length} tokens, longer than the context allows (${limit} tokens, max_context_len ${this.contextSize})`,
      );
    }
    // Keep as much recent history as fits; the oldest turns go first.
    return all.length > limit ? [...prefix, ...all.slice(all.length - limit + prefix.length)] : all;
  }

  #requireModel(): LlamaModel {
    if (!this.#model) throw new RpcError('ENGINE_UNAVAILABLE', 'No model is loaded');
    return this.#model;
  }

  #sampling(request: RunRequest): SamplingParams {
    const p = this.param;
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
    const sequence = this.#free.pop();
    try {
      if (!sequence) throw new RpcError('INTERNAL_ERROR', 'No free engine slot');
      const tokens = this.#tokens(request);
      const reason = await this.#evaluate(sequence, tokens, request, emitter, controller.signal);
      return emitter.finish(reason);
    } catch (err) {
      return emitter.fail(err instanceof Error ? err.message : String(err));
    } finally {
      request.signal?.removeEventListener('abort', onAbort);
      this.#running.delete(controller);
      if (sequence) this.#free.push(sequence);
    }
  }

  async #evaluate(
    sequence: LlamaContextSequence,
    tokens: Token[],
    request: RunRequest,
    emitter: ResultEmitter,
    signal: AbortSignal,
  ): Promise<RunOutcome['finish_reason']> {
    const model = this.#requireModel();
    const keep = request.infer.keep_history !== 0;
    const toEvaluate = await this.#alignSequence(sequence, tokens);
    if (signal.aborted) return 'abort';
    const requested = request.infer.max_new_tokens ?? this.param.max_new_tokens;
    const room = this.contextSize - tokens.length;
    const maxNew = requested > 0 ? Math.min(requested, room) : room;
    const s = this.#sampling(request);
    const generated: Token[] = [];
    const pending: Token[] = [];
    let context: Token[] = tokens.slice(-8);
    let reason: RunOutcome['finish_reason'] = 'stop';
    emitter.startPrefill(toEvaluate.length);
    const greedy = s.temperature <= 0 || s.top_k === 1;
    const options = {
      temperature: greedy ? 0 : s.temperature,
      topK: s.top_k,
      topP: s.top_p,
      ...(s.seed === undefined ? {} : { seed: s.seed }),
      repeatPenalty: {
        punishTokens: () => [...tokens, ...generated].slice(-64),
        penalty: s.repeat_penalty,
        frequencyPenalty: s.frequency_penalty,
        presencePenalty: s.presence_penalty,
      },
    };
    let rest = toEvaluate;
    while (rest.length > PREFILL_SLICE) {
      await sequence.evaluateWithoutGeneratingNewTokens(rest.slice(0, PREFILL_SLICE));
      rest = rest.slice(PREFILL_SLICE);
      if (signal.aborted) return 'abort';
    }
    for await (const token of sequence.evaluate(rest, options)) {
      generated.push(token);
      pending.push(token);
      const text = model.detokenize(pending, !this.param.skip_special_token, context);
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
    if (keep) this.#history = [...tokens, ...generated];
    else this.#history = [];
    return reason;
  }

  /**
   * Reuses whatever prefix of `tokens` the sequence already holds (history, shared system
   * prompt) and erases the rest. Returns the tokens still to evaluate (never empty: the last
   * token is re-evaluated to get fresh logits).
   */
  async #alignSequence(sequence: LlamaContextSequence, tokens: Token[]): Promise<Token[]> {
    const held = sequence.contextTokens;
    let common = 0;
    while (common < held.length && common < tokens.length - 1 && held[common] === tokens[common]) common++;
    if (common < held.length) await sequence.eraseContextTokenRanges([{ start: common, end: sequence.nextTokenIndex }]);
    return tokens.slice(common);
  }
}
