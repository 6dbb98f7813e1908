/** `GET /api/version`, `GET /api/tags`, `POST /api/show`, `GET /api/ps`: the models, described as Ollama describes them. */
import { createHash } from 'node:crypto';
import type { ModelEntry } from '../../models/catalog.js';
import { sendJson, type HttpExchange } from '../../transports/http-route.js';
import { modelNotFound, type HubDeps } from '../http-kit.js';
import { OLLAMA_API_VERSION, now } from './wire.js';
import { readModel } from './request.js';

const UNITS = [
  ['B', 1e9],
  ['M', 1e6],
  ['K', 1e3],
] as const;

/** "2.6M", "7.2B": Ollama's parameter_size. */
function parameterSize(count: number | undefined): string {
  if (count === undefined) return '';
  for (const [unit, scale] of UNITS) {
    if (count >= scale) return `${(count / scale).toFixed(1)}${unit}`;
  }
  return String(count);
}

function details(entry: ModelEntry): Record<string, unknown> {
  return {
    parent_model: '',
    format: entry.format,
    family: entry.family,
    families: [entry.family],
    parameter_size: parameterSize(entry.parameterCount),
    quantization_level: entry.quantization ?? '',
  };
}

/** A model as `/api/tags` lists it. The digest names the file by its path, size and time (not its content: that would read gigabytes). */
function describe(entry: ModelEntry): Record<string, unknown> {
  const name = `${entry.name}:latest`;
  const digest = createHash('sha256').update(`${entry.path}:${entry.size}:${entry.modifiedAt.getTime()}`).digest('hex');
  return { name, model: name, modified_at: entry.modifiedAt.toISOString(), size: entry.size, digest, details: details(entry) };
}

export async function version(_deps: HubDeps, exchange: HttpExchange): Promise<void> {
  sendJson(exchange.res, 200, { version: OLLAMA_API_VERSION });
}

export async function tags(deps: HubDeps, exchange: HttpExchange): Promise<void> {
  sendJson(exchange.res, 200, { models: (await deps.models.list()).map(describe) });
}

export async function ps(deps: HubDeps, exchange: HttpExchange): Promise<void> {
  const models = deps.models
    .loaded()
    .filter((view) => view.entry !== undefined && view.state === 'ready')
    .map((view) => ({
      ...describe(view.entry!),
      expires_at: view.expires_at ?? now(),
      size_vram: 0,
      size: view.memory || view.entry!.size,
    }));
  sendJson(exchange.res, 200, { models });
}

export async function show(deps: HubDeps, exchange: HttpExchange, body: Record<string, unknown>): Promise<void> {
  const name = readModel(body) ?? deps.models.defaultName;
  const entry = await deps.models.find(name);
  if (!entry) throw modelNotFound(name);
  const loaded = deps.models.loaded().find((view) => view.entry?.path === entry.path);
  const engine = deps.engine;
  const side = entry.sidecar;
  const { temperature, top_k, top_p, repeat_penalty } = { temperature: 0.8, top_k: 40, top_p: 0.9, repeat_penalty: 1.1, ...side.sampling };
  const num_ctx = side.max_context_len ?? deps.models.contextOf(loaded ? entry.name : undefined);
  const parameters = Object.entries({ temperature, top_k, top_p, repeat_penalty, num_ctx })
    .map(([name, value]) => `${name} ${value}`)
    .join('\n');
  const template = side.chat_template ? `${side.chat_template.prompt_prefix}{{ .Prompt }}${side.chat_template.prompt_postfix}` : '';
  sendJson(exchange.res, 200, {
    modelfile: `FROM ${entry.builtin ? entry.name : entry.path.split(/[\\/]/).pop()}\n`,
    parameters,
    template,
    ...(side.chat_template?.system_prompt ? { system: side.chat_template.system_prompt } : {}),
    details: details(entry),
    model_info: {
      'general.architecture': entry.family,
      'general.basename': entry.name,
      'general.parameter_count': entry.parameterCount ?? 0,
      ...(entry.trainContext === undefined ? {} : { [`${entry.family}.context_length`]: entry.trainContext }),
    },
    capabilities: ['completion', 'embedding', ...(engine.supports('run_tools') ? ['tools'] : [])],
    modified_at: entry.modifiedAt.toISOString() || now(),
  });
}
