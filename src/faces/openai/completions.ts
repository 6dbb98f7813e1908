/** `POST /v1/completions`: a raw prompt in, text out. */
import type { Client } from '../../clients.js';
import { fault } from '../../errors.js';
import type { HttpExchange } from '../../transports/http-route.js';
import { runForFace } from '../face-run.js';
import { toRunParams, useModel } from '../generation-request.js';
import { badField, sendJson, type HubDeps } from '../http-kit.js';
import { finishReason, readCommon, usage } from './request.js';
import { EventStream, openaiId, unixSeconds } from './wire.js';

/** `prompt`: a string, or an array holding one string. */
function readPrompt(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && value.length === 1 && typeof value[0] === 'string') return value[0];
  throw badField('prompt', 'must be a string (or an array of one string: this server generates one choice per request)');
}

export async function completions(deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>): Promise<void> {
  const common = readCommon(body);
  const prompt = readPrompt(body.prompt);
  const lease = await useModel(deps, client, common.model, undefined, exchange.signal);
  try {
    const params = toRunParams(lease.engine, { prompt, maxTokens: common.maxTokens, sampling: common.sampling }, lease.name);
    const base = {
      id: openaiId('cmpl'),
      object: 'text_completion',
      created: unixSeconds(),
      model: lease.name,
      system_fingerprint: null,
    };
    const events = common.stream ? new EventStream(exchange.res) : undefined;
    const choice = (text: string, finish: string | null = null): unknown => ({
      ...base,
      choices: [{ text, index: 0, logprobs: null, finish_reason: finish }],
    });
    const result = await runForFace(deps.hub, {
      params,
      client,
      signal: exchange.signal,
      stop: common.stop,
      sendLimit: deps.sendLimit,
      ...(events
        ? { pending: () => events.pending, onStarted: () => events.open(), onText: (text: string) => events.send(choice(text)) }
        : {}),
    });
    if (exchange.signal.aborted) return;
    const finish = finishReason(result.finish_reason, 0);
    if (events) {
      if (result.error) return events.fail(result.error.message);
      events.send(choice('', finish));
      if (common.includeUsage) events.send({ ...base, choices: [], usage: usage(result) });
      return events.end();
    }
    if (result.error) throw fault('ENGINE_ERROR', 'detail', { detail: result.error.message });
    sendJson(exchange.res, 200, { ...(choice(result.text, finish) as object), usage: usage(result) });
  } finally {
    lease.release();
  }
}
