/** `POST /api/embed` (and the older `POST /api/embeddings`): the same vectors as OpenAI's `/v1/embeddings`. */
import type { Client } from '../../clients.js';
import { sendJson, type HttpExchange } from '../../transports/http-route.js';
import { field, type HubDeps } from '../http-kit.js';
import { embedAll, readInputs } from '../openai/embeddings.js';
import { readModel } from './request.js';

export async function embed(deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>): Promise<void> {
  const started = process.hrtime.bigint();
  const name = readModel(body);
  const inputs = readInputs(body.input);
  const { vectors, tokens, model } = await embedAll(deps, inputs, client, exchange.signal, name, body.keep_alive);
  if (exchange.signal.aborted) return;
  const total = Number(process.hrtime.bigint() - started);
  sendJson(exchange.res, 200, {
    model: name ?? `${model}:latest`,
    embeddings: vectors,
    total_duration: total,
    load_duration: 0,
    prompt_eval_count: tokens,
  });
}

/** The older endpoint: one `prompt`, one `embedding`. */
export async function embeddingsLegacy(
  deps: HubDeps,
  exchange: HttpExchange,
  client: Client,
  body: Record<string, unknown>,
): Promise<void> {
  const inputs = readInputs(field(body, 'prompt', 'string') ?? body.prompt);
  const { vectors } = await embedAll(deps, inputs, client, exchange.signal, readModel(body), body.keep_alive);
  if (!exchange.signal.aborted) sendJson(exchange.res, 200, { embedding: vectors[0] });
}
