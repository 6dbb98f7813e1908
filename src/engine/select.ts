import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import { ensureBuiltinModel } from '../model/builtin.js';
import type { Settings } from '../settings.js';
import { LlamaEngine } from './llama/engine.js';
import { RkllmEngine } from './rkllm/rkllm-engine.js';
import { createDefaultParam, type Engine } from './types.js';

/**
 * Threads when the setting is 0: one core is left to the server's own thread (HTTP, JSON, the
 * event loop). llama.cpp's threads spin at barriers, so sharing a core with anything runs many
 * times slower: measured on a 2-core machine, 2 threads ran 15-50x slower than 1.
 */
function chooseThreads(settings: Settings['engine']): number {
  return settings.threads > 0 ? settings.threads : Math.max(1, availableParallelism() - 1);
}

async function startLlama(settings: Settings['engine'], log: Logger): Promise<Engine> {
  const modelPath = settings.model_path ?? (await ensureBuiltinModel('tiny'));
  const threads = chooseThreads(settings);
  const engine = new LlamaEngine({ threads, slots: settings.parallel });
  await engine.init({ ...createDefaultParam(), model_path: modelPath, max_context_len: settings.max_context_len });
  log.info({ model: modelPath, threads, parallel: settings.parallel, context: engine.param.max_context_len }, 'model loaded');
  return engine;
}

async function startRkllm(settings: Settings['engine'], log: Logger): Promise<Engine> {
  const { library, runtime_version, extend_param, restart_delay_ms, restart_max_delay_ms, max_restarts, init_timeout_ms } = settings.rkllm;
  const engine = new RkllmEngine({
    library,
    layout: runtime_version,
    restart: { initialDelayMs: restart_delay_ms, maxDelayMs: restart_max_delay_ms, maxAttempts: max_restarts },
    timeouts: { initMs: init_timeout_ms },
    log,
  });
  const defaults = createDefaultParam();
  await engine.init({
    ...defaults,
    model_path: settings.model_path!,
    max_context_len: settings.max_context_len,
    extend_param: { ...defaults.extend_param, ...extend_param },
  });
  log.info({ model: settings.model_path, context: settings.max_context_len, runtime: engine.status().runtime }, 'model loaded');
  return engine;
}

/** Builds the engine that `settings.kind` names and loads its model (`rkllm_init`). */
export function startEngine(settings: Settings['engine'], log: Logger): Promise<Engine> {
  return settings.kind === 'rkllm' ? startRkllm(settings, log) : startLlama(settings, log);
}
