import { basename } from 'node:path';
import type { Engine, EngineStatus } from '../engine/types.js';
import type { Method } from '../jsonrpc/dispatcher.js';
import { method } from './core.js';
import { object } from '../request-schema.js';

/** What a user key sees: the state, the model's file name (not where it lives), when the last failure happened (not its text, which may name files). */
function userView(status: EngineStatus): EngineStatus {
  return {
    engine: status.engine,
    state: status.state,
    restarts: status.restarts,
    model_path: status.model_path === null ? null : basename(status.model_path),
    last_error: status.last_error === null ? null : { message: 'the runtime failed (an admin key sees why)', at: status.last_error.at },
  };
}

/**
 * `engine_status`: the engine's state (ready, restarting after a runtime crash, failed...), its
 * model, restarts and last error; with a fleet, the fleet (`fleet`: its instances, their models
 * and free slots, the queue depth).
 */
export function engineStatusMethod(engine: Engine, fleet?: () => Promise<object>): [string, Method] {
  return method<Record<string, never>>(
    'engine_status',
    'Reports the engine: its state (unloaded, loading, ready, restarting after a runtime crash, failed), model, restarts and last error.',
    object({}),
    async (_params, ctx) => {
      const status = ctx.client.admin ? engine.status() : userView(engine.status());
      return fleet ? { ...status, fleet: await fleet() } : status;
    },
  );
}
