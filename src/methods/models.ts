/** `models_list`, `models_loaded`, `models_load`, `models_unload`: the models folder and what is loaded (see docs/models.md). */
import type { Method } from '../jsonrpc/dispatcher.js';
import type { ModelEntry } from '../models/catalog.js';
import { readKeepAlive } from '../faces/generation-request.js';
import type { LoadedModels } from '../models/loaded.js';
import { method } from './core.js';
import { object, str, type JsonSchema } from '../request-schema.js';

/** A model as the JSON-RPC methods show it: its file's name (not where it lives), size, time and header facts. */
export function modelView(entry: ModelEntry): Record<string, unknown> {
  return {
    name: entry.name,
    file: entry.builtin ? null : entry.path.split(/[\\/]/).pop(),
    format: entry.format,
    size: entry.size,
    modified_at: entry.modifiedAt.toISOString(),
    family: entry.family,
    parameter_count: entry.parameterCount ?? null,
    quantization: entry.quantization ?? null,
    builtin: entry.builtin,
  };
}

const keepAlive: JsonSchema = {
  anyOf: [{ type: 'number' }, { type: 'string', maxLength: 32 }],
  description: 'How long the model stays loaded once idle: "5m", "30s", seconds, 0 (at once), -1 (for good)',
};

export function modelsMethods(models: LoadedModels): Array<[string, Method]> {
  return [
    method(
      'models_list',
      'Lists the models that requests may name: the built-in model and every model file of the folder (setting models.dir), read again on each call.',
      object({}),
      async () => ({ default: models.defaultName, models: (await models.list()).map(modelView) }),
    ),
    method(
      'models_loaded',
      'Lists the loaded models, most recently used first: memory, runs holding them, when they unload.',
      object({}),
      () => ({
        models: models.loaded().map(({ entry, ...view }) => ({ ...view, path: undefined, size: entry?.size ?? null })),
      }),
    ),
    method<{ model: string; keep_alive?: number | string }>(
      'models_load',
      'Loads a model by name (unloading the least recently used idle one when there is no room) and keeps it for keep_alive.',
      object({ model: str('The model, by name'), keep_alive: keepAlive }, ['model']),
      async (params, ctx) => {
        const lease = await models.use(params.model, readKeepAlive(params.keep_alive), ctx.signal);
        lease.release();
        return { model: lease.name, loaded: true };
      },
      { admin: true },
    ),
    method<{ model: string }>(
      'models_unload',
      'Unloads a model by name now, or once its runs have ended; false when it is not loaded.',
      object({ model: str('The model, by name') }, ['model']),
      (params) => ({ model: params.model, unloading: models.unload(params.model) }),
      { admin: true },
    ),
  ];
}
