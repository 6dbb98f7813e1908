/** `POST /api/embed` (and the older `POST /api/embeddings`): the same vectors as OpenAI's `/v1/embeddings`. */
import type { Client } from '../../clients.js';
import { sendJson, type HttpExchange } from '../../transports/http-route.js';
import { useModel } from '../generation-request.js';
import { field, type HubDeps } from '../http-kit.js';
import { embedAll, readInputs } from '../openai/embeddings.js';
import { readModel } from './request.js';

export async function embed(deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>): Promise<void> {
  const started = process.hrtime.bigint();
  const name = readModel(body);
  const inputs = readInputs(body.input);
  const lease = await useModel(deps, client, name, body.keep_alive, exchange.signal);
  let out: { vectors: number[][]; tokens: number };
  try {
    out = await embedAll(deps, inputs, client, exchange.signal, lease.name);
  } finally {
    lease.release();
  }
  const { vectors, tokens } = out;
  if (exchange.signal.aborted) return;
  const total = Number(process.hrtime.bigint() - started);
  sendJson(exchange.res, 200, {
    model: name ?? `${lease.name}:latest`,
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
  const lease = await useModel(deps, client, readModel(body), body.keep_alive, exchange.signal);
  let vectors: number[][];
  try {
    ({ vectors } = await embedAll(deps, inputs, client, exchange.signal, lease.name));
  } finally {
    lease.release();
  }
  if (!exchange.signal.aborted) sendJson(exchange.res, 200, { embedding: vectors[0] });
}
