import type { Engine } from './types.js';

/**
 * Where an engine is in its life: no model; loading one; serving; restarting its runtime after a
 * crash; or failed (the runtime could not be restarted, or is not usable until rkllm_destroy).
 */
export type EngineState = 'unloaded' | 'loading' | 'ready' | 'restarting' | 'failed';

/** What the status method reports about the engine. */
export interface EngineStatus {
  engine: string;
  state: EngineState;
  /** The loaded model, also while restarting or failed. */
  model_path: string | null;
  /** How many times the runtime was restarted after a crash. */
  restarts: number;
  /** The last runtime failure (a crash, a failed restart), with when it happened (ISO 8601). */
  last_error: { message: string; at: string } | null;
  /** Engine-specific details, e.g. the runtime library and its version. */
  runtime?: Record<string, unknown>;
}

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
