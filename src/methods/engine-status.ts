import { engineStatus } from '../engine/status.js';
import type { Engine } from '../engine/types.js';
import type { Method } from '../jsonrpc/dispatcher.js';
import { method } from './core.js';
import { object } from './schema.js';

/** `engine_status`: the engine's state (ready, restarting after a runtime crash, failed...), its model, restarts and last error. */
export function engineStatusMethod(engine: Engine): [string, Method] {
  return [
    'engine_status',
    method<Record<string, never>>(
      'Reports the engine: its state (unloaded, loading, ready, restarting after a runtime crash, failed), model, restarts and last error.',
      object({}),
      () => engineStatus(engine),
    ),
  ];
}
