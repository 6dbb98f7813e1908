/** `GET /api/version`, `GET /api/tags`, `POST /api/show`, `GET /api/ps`: the one loaded model, described as Ollama describes models. */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { extname } from 'node:path';
import type { HttpExchange } from '../../transports/http-route.js';
import { checkModel, modelId } from '../generation-request.js';
import { sendJson, type HubDeps } from '../http-kit.js';
import { OLLAMA_API_VERSION, now } from './wire.js';
import { readModel } from './request.js';

/** The model as `/api/tags` and `/api/ps` list it. The digest names the file by its path, size and time (not its content: that would read gigabytes). */
async function describe(deps: HubDeps): Promise<Record<string, unknown>> {
  const path = deps.engine.param.model_path;
  const file = await stat(path).catch(() => undefined);
  const name = `${modelId(deps.engine)}:latest`;
  const digest = createHash('sha256')
    .update(`${path}:${file?.size ?? 0}:${file?.mtimeMs ?? 0}`)
    .digest('hex');
  return {
    name,
    model: name,
    modified_at: (file?.mtime ?? new Date()).toISOString(),
    size: file?.size ?? 0,
    digest,
    details: details(deps),
  };
}

function details(deps: HubDeps): Record<string, unknown> {
  const format = extname(deps.engine.param.model_path).slice(1) || 'gguf';
  return { parent_model: '', format, family: deps.engine.name, families: [deps.engine.name], parameter_size: '', quantization_level: '' };
}

export async function version(_deps: HubDeps, exchange: HttpExchange): Promise<void> {
  sendJson(exchange.res, 200, { version: OLLAMA_API_VERSION });
}

export async function tags(deps: HubDeps, exchange: HttpExchange): Promise<void> {
  sendJson(exchange.res, 200, { models: [await describe(deps)] });
}

export async function ps(deps: HubDeps, exchange: HttpExchange): Promise<void> {
  const model = await describe(deps);
  sendJson(exchange.res, 200, { models: [{ ...model, expires_at: '2318-01-01T00:00:00Z', size_vram: 0 }] });
}

export async function show(deps: HubDeps, exchange: HttpExchange, body: Record<string, unknown>): Promise<void> {
  checkModel(deps.engine, readModel(body));
  const p = deps.engine.param;
  const capabilities = ['completion', 'embedding', ...(deps.engine.supports('run_tools') ? ['tools'] : [])];
  const parameters = [
    `temperature ${p.temperature}`,
    `top_k ${p.top_k}`,
    `top_p ${p.top_p}`,
    `repeat_penalty ${p.repeat_penalty}`,
    `num_ctx ${p.max_context_len}`,
  ].join('\n');
  sendJson(exchange.res, 200, {
    modelfile: `FROM ${p.model_path}\n`,
    parameters,
    template: '',
    details: details(deps),
    model_info: {
      'general.architecture': deps.engine.name,
      'general.basename': modelId(deps.engine),
      'general.context_length': p.max_context_len,
    },
    capabilities,
    modified_at: now(),
  });
}
