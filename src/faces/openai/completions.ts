/** `POST /v1/completions`: a raw prompt in, text out. */
import type { Client } from '../../clients.js';
import { sendJson, type HttpExchange } from '../../transports/http-route.js';
import { ResponseStream, serveGeneration } from '../generation.js';
import { badField, type HubDeps } from '../http-kit.js';
import { finishReason, readCommon, usage } from './request.js';
import { SSE, openaiId, unixSeconds } from './wire.js';

/** `prompt`: a string, or an array holding one string. */
function readPrompt(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && value.length === 1 && typeof value[0] === 'string') return value[0];
  throw badField('prompt', 'must be a string (or an array of one string: this server generates one choice per request)');
}

export async function completions(deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>): Promise<void> {
  const common = readCommon(body);
  const prompt = readPrompt(body.prompt);
  await serveGeneration(deps, exchange, client, { name: common.model }, (model) => {
    const base = { id: openaiId('cmpl'), object: 'text_completion', created: unixSeconds(), model, system_fingerprint: null };
    const choice = (text: string, finish: string | null = null): unknown => ({
      ...base,
      choices: [{ text, index: 0, logprobs: null, finish_reason: finish }],
    });
    const events = common.stream ? new ResponseStream(exchange.res, SSE, { piece: (text) => choice(text) }) : undefined;
    return {
      request: { prompt, maxTokens: common.maxTokens, sampling: common.sampling },
      stop: common.stop,
      live: events,
      finish: (result) => {
        const finish = finishReason(result.finish_reason, 0);
        if (!events) return sendJson(exchange.res, 200, { ...(choice(result.text, finish) as object), usage: usage(result) });
        events.end(choice('', finish), ...(common.includeUsage ? [{ ...base, choices: [], usage: usage(result) }] : []));
      },
    };
  });
}
