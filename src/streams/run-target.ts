/**
 * Which engine runs a run, and in which slot pool: the hub asks a resolver for it by the run's
 * model name (absent: the default model). The resolver may load the model first; the run holds
 * its target from admission until it has ended, so a model is never unloaded under a queued or
 * running stream.
 */
import type { Engine } from '../engine/types.js';
import type { Scheduler } from './scheduler.js';

/** The engine and the slot pool of one run, held until `release`. */
export interface RunTarget {
  readonly engine: Engine;
  readonly scheduler: Scheduler;
  /** The server's default model: with a fleet, its runs may execute on any instance that serves the same model. */
  readonly isDefault: boolean;
  /** Frees the hold on the model; called exactly once, when the run has ended (or was not admitted). */
  release(): void;
}

/**
 * Finds (and loads when needed) the model a run names; rejects for an unknown name without loading
 * anything, and, when `admin` is false (a user key), where a load would be needed and users may not load.
 */
export type RunResolver = (model: string | undefined, signal?: AbortSignal, admin?: boolean) => Promise<RunTarget>;

/** One engine, one slot pool, whatever the run names: the hub of a server without a models folder. */
export function fixedTarget(engine: Engine, scheduler: Scheduler): RunResolver {
  return async () => ({ engine, scheduler, isDefault: true, release: () => {} });
}
