/** `POST /v1/embeddings`: the last hidden layer of each input, mean-pooled and scaled to unit length. */
import type { Client } from '../../clients.js';
import { fault } from '../../errors.js';
import { collect } from '../../streams/stream.js';
import { sendJson, type HttpExchange } from '../../transports/http-route.js';
import { embeddingParams, pool, useModel } from '../generation-request.js';
import { badField, field, type HubDeps } from '../http-kit.js';

/** `input`: a string or an array of strings (token arrays are not accepted). Shared with Ollama's `/api/embed`. */
export function readInputs(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value) && value.length > 0 && value.every((s) => typeof s === 'string')) return value;
  throw badField('input', 'must be a string or a non-empty array of strings');
}

/**
 * Embeds each text in turn, through the hub (queue, limits), holding the model `name` names (see
 * `useModel`) until done; also the prompt tokens they took, and the model's name.
 */
export async function embedAll(
  deps: HubDeps,
  texts: string[],
  client: Client,
  signal: AbortSignal,
  name: string | undefined,
  keepAlive?: unknown,
): Promise<{ vectors: number[][]; tokens: number; model: string }> {
  const lease = await useModel(deps, client, name, keepAlive, signal);
  const vectors: number[][] = [];
  let tokens = 0;
  try {
    for (const text of texts) {
      const { last } = await collect(await deps.hub.generate(embeddingParams(text, lease.name), { signal, owner: client }));
      if (last.error || !last.last_hidden_layer)
        throw fault('ENGINE_ERROR', 'detail', { detail: last.error?.message ?? 'the engine returned no hidden layer' });
      vectors.push(pool(last.last_hidden_layer));
      tokens += last.perf!.prefill_tokens;
    }
  } finally {
    lease.release();
  }
  return { vectors, tokens, model: lease.name };
}

export async function embeddings(deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>): Promise<void> {
  const texts = readInputs(body.input);
  const { vectors, tokens, model } = await embedAll(deps, texts, client, exchange.signal, field(body, 'model', 'string'));
  const format = field(body, 'encoding_format', 'string') ?? 'float';
  if (format !== 'float' && format !== 'base64')
    throw badField('encoding_format', `must be "float" or "base64"; got ${JSON.stringify(format)}`);
  if (exchange.signal.aborted) return;
  const data = vectors.map((v, index) => ({
    object: 'embedding',
    index,
    embedding: format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v,
  }));
  sendJson(exchange.res, 200, {
    object: 'list',
    data,
    model,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  });
}
