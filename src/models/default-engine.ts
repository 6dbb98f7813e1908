import type { EngineKind } from '../engine/start.js';
import type { Engine, EngineStatus } from '../engine/types.js';
import { fault } from '../errors.js';
import type { LoadedModels } from './loaded.js';

/**
 * The default model seen as one engine, whichever engine holds it now: the RKLLM methods, the
 * faces and the fleet speak to it without knowing that `rkllm_init` makes a new engine and
 * `rkllm_destroy` disposes it. A call that needs a model throws ENGINE_UNAVAILABLE while none is
 * loaded (or while it loads); what the engine kind knows without a model is answered from it.
 */
export function defaultEngine(models: LoadedModels, kind: EngineKind): Engine {
  const current = (): Engine => {
    const engine = models.defaultEngine;
    if (typeof engine !== 'string') return engine;
    throw fault('ENGINE_UNAVAILABLE', engine, {}, { engine: kind.name, state: engine });
  };
  const loaded = (): Engine | undefined => (typeof models.defaultEngine === 'string' ? undefined : current());
  return {
    name: kind.name,
    slots: kind.slots,
    get param() {
      return current().param;
    },
    // Images depend on the model (its vision encoder), the rest on the engine kind.
    supports: (feature) => (feature === 'images' ? (loaded()?.supports(feature) ?? kind.supports(feature)) : kind.supports(feature)),
    defaultParam: () => loaded()?.defaultParam() ?? kind.defaultParam(),
    validate: async (request) => current().validate(request),
    run: async (request, callback) => current().run(request, callback),
    runAsync: (request, callback) => current().runAsync(request, callback),
    abort: () => loaded()?.abort(),
    isRunning: () => loaded()?.isRunning() ?? false,
    loadLora: async (adapter) => current().loadLora(adapter),
    loraAdapters: () => loaded()?.loraAdapters() ?? [],
    loadPromptCache: async (path) => current().loadPromptCache(path),
    releasePromptCache: async () => current().releasePromptCache(),
    clearKvCache: async (request) => current().clearKvCache(request),
    getKvCacheSize: async (owner) => current().getKvCacheSize(owner),
    setChatTemplate: async (template) => current().setChatTemplate(template),
    setFunctionTools: async (tools) => current().setFunctionTools(tools),
    setCrossAttnParams: async (params) => current().setCrossAttnParams(params),
    status: (): EngineStatus => {
      const engine = models.defaultEngine;
      return typeof engine === 'string' ? kind.status(engine) : engine.status();
    },
    // The loaded set owns the engines, and disposes them.
    dispose: async () => {},
    [Symbol.asyncDispose]: async () => {},
  };
}
