import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import { ensureBuiltinModel } from '../gguf/builtin.js';
import { LlamaEngine } from './llama/engine.js';
import type { LayoutSetting } from './rkllm/protocol.js';
import { RkllmEngine } from './rkllm/rkllm-engine.js';
import type { Engine, InitParam, RKLLMExtendParam } from './types.js';

/** What `startEngine` builds and loads. */
export interface EngineOptions {
  /** "llama.cpp" (any CPU, GGUF models) or "rkllm" (Rockchip's NPU runtime, .rkllm models). */
  kind: 'llama.cpp' | 'rkllm';
  /** The model file; null with llama.cpp uses the built-in model (required with rkllm). */
  modelPath: string | null;
  /** CPU threads; 0 picks all cores but one. */
  threads: number;
  /** Generations run at once (llama.cpp context sequences). */
  parallel: number;
  maxContextLen: number;
  /** Bytes the model and its context may take at most (llama.cpp); 0: a safe share of the machine's memory. */
  maxMemory: number;
  rkllm: RkllmOptions;
  /** More RKLLMParam fields to load the model with (a model's default sampling, from its sidecar). */
  initParam?: Partial<InitParam>;
}

/** The RKLLM engine's own options. */
export interface RkllmOptions {
  /** librkllmrt.so: a path, or a file name the dynamic loader finds. */
  library: string;
  /** The struct layout of the library ("auto": told by the library). */
  runtimeVersion: LayoutSetting;
  /** Merged onto the default RKLLMExtendParam at `rkllm_init`. */
  extendParam: Partial<RKLLMExtendParam>;
  restartDelayMs: number;
  restartMaxDelayMs: number;
  maxRestarts: number;
  initTimeoutMs: number;
}

/**
 * Threads when the option is 0: one core is left to the server's own thread (HTTP, JSON, the
 * event loop). llama.cpp's threads spin at barriers, so sharing a core with anything runs many
 * times slower: measured on a 2-core machine, 2 threads ran 15-50x slower than 1.
 */
function chooseThreads(threads: number): number {
  return threads > 0 ? threads : Math.max(1, availableParallelism() - 1);
}

async function startLlama(options: EngineOptions, log: Logger): Promise<Engine> {
  const modelPath = options.modelPath ?? (await ensureBuiltinModel('tiny'));
  const threads = chooseThreads(options.threads);
  const engine = new LlamaEngine({ threads, slots: options.parallel, maxMemory: options.maxMemory });
  await engine.init({ ...options.initParam, model_path: modelPath, max_context_len: options.maxContextLen });
  log.info({ model: modelPath, threads, parallel: options.parallel, context: engine.param.max_context_len }, 'model loaded');
  return engine;
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

async function startRkllm(options: EngineOptions, log: Logger): Promise<Engine> {
  const { library, runtimeVersion, extendParam, restartDelayMs, restartMaxDelayMs, maxRestarts, initTimeoutMs } = options.rkllm;
  const engine = new RkllmEngine({
    library,
    layout: runtimeVersion,
    restart: { initialDelayMs: restartDelayMs, maxDelayMs: restartMaxDelayMs, maxAttempts: maxRestarts },
    timeouts: { initMs: initTimeoutMs },
    log,
  });
  await engine.init({
    ...options.initParam,
    model_path: options.modelPath!,
    max_context_len: options.maxContextLen,
    extend_param: givenExtendParam(extendParam),
  });
  log.info({ model: options.modelPath, context: options.maxContextLen, runtime: engine.status().runtime }, 'model loaded');
  return engine;
}

/** Builds the engine that `options.kind` names and loads its model (`rkllm_init`). */
export function startEngine(options: EngineOptions, log: Logger): Promise<Engine> {
  return options.kind === 'rkllm' ? startRkllm(options, log) : startLlama(options, log);
}
