import { getLlama, type Llama } from 'node-llama-cpp';
import { fault, type ServerError } from '../../errors.js';
import { notSupported, type EngineFeature } from '../capabilities.js';
import { errorText } from '../messages.js';
import { RunReporter } from '../run-reporter.js';
import {
  RKLLMInferMode,
  createDefaultParam,
  overParam,
  type InitParam,
  type ChatTemplate,
  type Engine,
  type EngineStatus,
  type FunctionTools,
  type KvCacheClear,
  type KvCacheSize,
  type LLMResultCallback,
  type RKLLMLoraAdapter,
  type RKLLMParam,
  type RunHandle,
  type RunOutcome,
  type RunRequest,
} from '../types.js';
import { generate, hiddenLayer, logits } from './generation.js';
import { clearKvCache, kvCacheSize } from './kv-cache.js';
import { createAdapterPool } from './lora.js';
import { LLAMA, freeModel, loadModel, type LoadedModel } from './model.js';
import { PerfMeter } from './perf-meter.js';
import { checkSampling, fitting, planRun } from './planning.js';
import { loadPromptCache } from './prompt-cache.js';

export interface LlamaEngineOptions {
  /** CPU threads used for evaluation. Always explicit: llama.cpp's default oversubscribes small machines. */
  threads: number;
  /** Generations that run at once, each on its own context sequence. */
  slots: number;
  /** Bytes the model and its context may take at most; 0 (the default): a safe share of the machine's memory. */
  maxMemory?: number;
}

const UNSUPPORTED: ReadonlySet<EngineFeature> = new Set(['input_multimodal', 'images', 'cross_attn', 'mirostat']);

/** Whether the llama.cpp engine can do `feature`, with any model. */
export function llamaSupports(feature: EngineFeature): boolean {
  return !UNSUPPORTED.has(feature);
}

/**
 * The engine on llama.cpp (node-llama-cpp). Each slot is a sequence of one shared context, so
 * parallel runs are batched in the same forward passes. Each LoRA adapter gets a context of its
 * own (llama.cpp applies adapters per context); GET_LAST_HIDDEN_LAYER runs on an embedding
 * context made on first use.
 */
export class LlamaEngine implements Engine {
  readonly name = LLAMA;
  readonly supports = llamaSupports;
  readonly slots: number;
  /** The engine's own llama.cpp binding, disposed with it. */
  readonly #llama: Llama;
  /** Undefined once disposed. */
  #loaded: LoadedModel | undefined;
  #disposed: Promise<void> | undefined;
  /** The runs under way, by the controller that aborts each. */
  readonly #runs = new Map<AbortController, Promise<RunOutcome>>();

  private constructor(slots: number, loaded: LoadedModel, llama: Llama) {
    this.slots = slots;
    this.#loaded = loaded;
    this.#llama = llama;
  }

  /** Loads the model `given` names (its fields laid over the defaults): an engine that holds it until disposed. */
  static async load(options: LlamaEngineOptions, given: InitParam): Promise<LlamaEngine> {
    const param = overParam(createDefaultParam(), given);
    if (param.extend_param.use_cross_attn) throw notSupported(LLAMA, 'cross_attn', 'node-llama-cpp exposes no encoder cache');
    checkSampling(param);
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
    try {
      const loaded = await loadModel(llama, param, options.threads, options.slots, options.maxMemory);
      return new LlamaEngine(options.slots, loaded, llama);
    } catch (err) {
      await llama.dispose();
      throw err;
    }
  }

  get param(): RKLLMParam {
    return this.#require().param;
  }

  async defaultParam(): Promise<RKLLMParam> {
    return createDefaultParam();
  }

  async validate(request: RunRequest): Promise<void> {
    await planRun(this.#require(), request);
  }

  run(request: RunRequest, callback: LLMResultCallback): Promise<RunOutcome> {
    const controller = new AbortController();
    const done = this.#run(request, callback, request.signal ? AbortSignal.any([controller.signal, request.signal]) : controller.signal);
    this.#runs.set(controller, done);
    void done.finally(() => this.#runs.delete(controller));
    return done;
  }

  runAsync(request: RunRequest, callback: LLMResultCallback): RunHandle {
    return { done: this.run(request, callback) };
  }

  abort(): void {
    for (const controller of this.#runs.keys()) controller.abort();
  }

  isRunning(): boolean {
    return this.#runs.size > 0;
  }

  async loadLora(adapter: RKLLMLoraAdapter): Promise<void> {
    const loaded = this.#require();
    const pool = await createAdapterPool(loaded, adapter, this.slots);
    if (this.#loaded !== loaded) {
      await pool.context.dispose();
      throw this.#unavailable();
    }
    loaded.adapters.set(adapter.lora_adapter_name, pool);
  }

  loraAdapters(): string[] {
    return [...(this.#loaded?.adapters.keys() ?? [])];
  }

  async loadPromptCache(path: string): Promise<void> {
    await loadPromptCache(this.#require(), path);
  }

  async releasePromptCache(): Promise<void> {
    this.#require().promptCache = undefined;
  }

  async clearKvCache(request: KvCacheClear): Promise<void> {
    const loaded = this.#require();
    if (this.isRunning()) {
      throw fault('BUSY', 'kv_cache_in_use', {}, { retry_after: 1 });
    }
    await clearKvCache(loaded, request, this.slots);
  }

  async getKvCacheSize(owner?: string): Promise<KvCacheSize> {
    return kvCacheSize(this.#require(), owner);
  }

  async setChatTemplate(template: ChatTemplate): Promise<void> {
    const loaded = this.#require();
    loaded.format = fitting(loaded, loaded.format.withTemplate(template));
  }

  async setFunctionTools(tools: FunctionTools): Promise<void> {
    const loaded = this.#require();
    loaded.format = fitting(loaded, loaded.format.withTools(tools));
  }

  async setCrossAttnParams(): Promise<void> {
    this.#require();
    throw notSupported(this.name, 'cross_attn', 'node-llama-cpp exposes no encoder cache');
  }

  status(): EngineStatus {
    const modelPath = this.#loaded?.param.model_path ?? null;
    return { engine: this.name, state: modelPath === null ? 'unloaded' : 'ready', model_path: modelPath, restarts: 0, last_error: null };
  }

  /** Aborts the runs, waits for them to end, then frees the model and the binding. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      const loaded = this.#loaded;
      this.#loaded = undefined;
      this.abort();
      await Promise.all(this.#runs.values());
      if (loaded) await freeModel(loaded);
      await this.#llama.dispose();
    })();
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  #require(): LoadedModel {
    if (!this.#loaded) throw this.#unavailable();
    return this.#loaded;
  }

  #unavailable(): ServerError {
    return fault('ENGINE_UNAVAILABLE', 'unloaded', {}, { engine: this.name });
  }

  async #run(request: RunRequest, callback: LLMResultCallback, signal: AbortSignal): Promise<RunOutcome> {
    const reporter = new RunReporter(callback);
    const meter = new PerfMeter();
    let release: (() => void) | undefined;
    try {
      const loaded = this.#require();
      const plan = await planRun(loaded, request);
      const run = { loaded, plan, request, reporter, meter };
      if (request.infer.mode === RKLLMInferMode.RKLLM_INFER_GET_LAST_HIDDEN_LAYER) {
        return reporter.end(await hiddenLayer(run), meter.finished());
      }
      const sequence = await plan.pool.take();
      plan.pool.steps.enter();
      release = () => {
        plan.pool.steps.leave();
        plan.pool.give(sequence);
      };
      if (plan.pool === loaded.base) loaded.conversations.ran(sequence, request.owner ?? '');
      const slotRun = { ...run, sequence, signal };
      const reason = request.infer.mode === RKLLMInferMode.RKLLM_INFER_GET_LOGITS ? await logits(slotRun) : await generate(slotRun);
      return { ...reporter.end(reason, meter.finished()), input_tokens: plan.tokens.length };
    } catch (err) {
      return reporter.fail(errorText(err), meter.snapshot());
    } finally {
      release?.();
    }
  }
}
