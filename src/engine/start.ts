import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import { ensureBuiltinModel } from '../gguf/builtin.js';
import type { EngineFeature } from './capabilities.js';
import { LlamaEngine, llamaSupports } from './llama/engine.js';
import { LLAMA } from './llama/model.js';
import { RkllmEngine, rkllmSupports, type RkllmEngineOptions } from './rkllm/rkllm-engine.js';
import { RKLLM } from './rkllm/runtime-process.js';
import { createDefaultParam, type Engine, type EngineStatus, type InitParam, type RKLLMExtendParam, type RKLLMParam } from './types.js';

/** The engine of the settings, and the model it loads at start. */
export interface EngineOptions {
  /** "llama.cpp" (any CPU, GGUF models) or "rkllm" (Rockchip's NPU runtime, .rkllm models). */
  kind: 'llama.cpp' | 'rkllm';
  /** The model file; null with llama.cpp uses the built-in model (required with rkllm). */
  modelPath: string | null;
  /** CPU threads; 0 picks all cores but one. */
  threads: number;
  /** Generations run at once: llama.cpp context sequences, or RKLLM runtime instances of the model. */
  parallel: number;
  maxContextLen: number;
  /** Bytes the model and its context may take at most (llama.cpp); 0: a safe share of the machine's memory. */
  maxMemory: number;
  rkllm: RkllmOptions;
  /** More RKLLMParam fields to load the model with (a model's default sampling, from its sidecar). */
  initParam?: Partial<InitParam>;
}

/** The RKLLM engine's own options, and the extend_param fields the models of the settings load with. */
export type RkllmOptions = Omit<RkllmEngineOptions, 'log'> & { extendParam: Partial<RKLLMExtendParam> };

/**
 * Threads when the option is 0: one core is left to the server's own thread (HTTP, JSON, the
 * event loop). llama.cpp's threads spin at barriers, so sharing a core with anything runs many
 * times slower: measured on a 2-core machine, 2 threads ran 15-50x slower than 1.
 */
function chooseThreads(threads: number): number {
  return threads > 0 ? threads : Math.max(1, availableParallelism() - 1);
}

/**
 * The extend_param settings to lay over the library's defaults: `enabled_cpus_num` and
 * `enabled_cpus_mask` at 0 (their setting's default) mean "the runtime's own choice", so they are
 * left out and the library's defaults stand.
 */
function givenExtendParam(settings: Partial<RKLLMExtendParam>): Partial<RKLLMExtendParam> {
  const { enabled_cpus_num, enabled_cpus_mask, ...rest } = settings;
  return {
    ...rest,
    ...(enabled_cpus_num ? { enabled_cpus_num } : {}),
    ...(enabled_cpus_mask ? { enabled_cpus_mask } : {}),
  };
}

/**
 * The parameters a model of the settings loads with: at start (`modelPath`), and for each model of
 * the folder (its sidecar's context and sampling laid in `options`).
 */
export async function startParam(options: EngineOptions): Promise<InitParam> {
  const param = { ...options.initParam, max_context_len: options.maxContextLen };
  if (options.kind === 'llama.cpp') return { ...param, model_path: options.modelPath ?? (await ensureBuiltinModel('tiny')) };
  return { ...param, model_path: options.modelPath!, extend_param: givenExtendParam(options.rkllm.extendParam) };
}

/**
 * The engine of the settings, before any model: what it is and can do, and `load`, its factory.
 * Each `load` makes a new engine that holds one model until it is disposed.
 */
export interface EngineKind {
  readonly name: string;
  /** How many runs an engine of this kind executes at once. */
  readonly slots: number;
  supports(feature: EngineFeature): boolean;
  /** `rkllm_createDefaultParam()` without a loaded model (RKLLM: asks the library). */
  defaultParam(): Promise<RKLLMParam>;
  /** What `engine_status` shows with no model loaded, or while one loads. */
  status(state: 'unloaded' | 'loading'): EngineStatus;
  load(param: InitParam): Promise<Engine>;
}

/** The engine kind `options.kind` names, whose `load` logs each model it loads. */
export function engineKind(options: EngineOptions, log: Logger): EngineKind {
  if (options.kind === 'rkllm') {
    const rkllm: RkllmEngineOptions = { ...options.rkllm, log, instances: options.parallel };
    return {
      name: RKLLM,
      slots: options.parallel,
      supports: (feature) => rkllmSupports(feature, Boolean(options.rkllm.vision?.encoder)),
      defaultParam: () => RkllmEngine.defaultParam(rkllm),
      status: (state) => RkllmEngine.idleStatus(rkllm, state),
      load: async (param) => {
        const engine = await RkllmEngine.load(rkllm, param);
        const { runtime } = engine.status();
        log.info({ model: param.model_path, parallel: engine.slots, context: engine.param.max_context_len, runtime }, 'model loaded');
        return engine;
      },
    };
  }
  const threads = chooseThreads(options.threads);
  const slots = options.parallel;
  return {
    name: LLAMA,
    slots,
    supports: llamaSupports,
    defaultParam: async () => createDefaultParam(),
    status: (state) => ({ engine: LLAMA, state, model_path: null, restarts: 0, last_error: null }),
    load: async (param) => {
      const engine = await LlamaEngine.load({ threads, slots, maxMemory: options.maxMemory }, param);
      log.info({ model: param.model_path, threads, parallel: slots, context: engine.param.max_context_len }, 'model loaded');
      return engine;
    },
  };
}
