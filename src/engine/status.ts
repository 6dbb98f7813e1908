import type { Engine, EngineStatus } from './types.js';

/** The engine's own status, or, for an engine that has no runtime to supervise, whether a model is loaded. */
export function engineStatus(engine: Engine): EngineStatus {
  const own = engine.status?.();
  if (own) return own;
  let modelPath: string | null = null;
  try {
    modelPath = engine.param.model_path;
  } catch {
    // `param` throws while no model is loaded.
  }
  return { engine: engine.name, state: modelPath === null ? 'unloaded' : 'ready', model_path: modelPath, restarts: 0, last_error: null };
}
