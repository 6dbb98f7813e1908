/** `POST /api/generate` and `POST /api/chat`. */
import type { Client } from '../../clients.js';
import { fault } from '../../errors.js';
import type { ChatMessage } from '../../engine/types.js';
import type { HttpExchange } from '../../transports/http-route.js';
import { readMessages } from '../chat-messages.js';
import { runForFace, type FaceRunResult } from '../face-run.js';
import { toRunParams, useModel, type GenerationRequest } from '../generation-request.js';
import { badField, field, sendJson, type HubDeps } from '../http-kit.js';
import type { ToolDefinition } from '../tool-calls.js';
import { readFormat, readModel, readOptions, readStream } from './request.js';
import { NdjsonStream, now, timings } from './wire.js';

/** What differs between generate and chat: the request's text, and how a piece of reply is framed. */
interface Flavour {
  request: Pick<GenerationRequest, 'messages' | 'prompt' | 'tools'>;
  piece: (text: string) => Record<string, unknown>;
  last: (result: FaceRunResult) => Record<string, unknown>;
}

async function generation(
  deps: HubDeps,
  exchange: HttpExchange,
  client: Client,
  body: Record<string, unknown>,
  flavour: Flavour,
): Promise<void> {
  const started = process.hrtime.bigint();
  const modelName = readModel(body);
  const options = readOptions(body);
  const stream = readStream(body);
  const jsonSchema = readFormat(body);
  const lease = await useModel(deps, client, modelName, body.keep_alive, exchange.signal);
  try {
    const model = modelName ?? `${lease.name}:latest`;
    const params = toRunParams(
      lease.engine,
      { ...flavour.request, maxTokens: options.maxTokens, sampling: options.sampling, ...(jsonSchema ? { jsonSchema } : {}) },
      lease.name,
    );
    const lines = stream ? new NdjsonStream(exchange.res) : undefined;
    const tools = flavour.request.tools?.length ? { tools: 'catch' as const } : {};
    const result = await runForFace(deps.hub, {
      params,
      client,
      signal: exchange.signal,
      stop: options.stop,
      ...tools,
      sendLimit: deps.sendLimit,
      ...(lines
        ? {
            pending: () => lines.pending,
            onStarted: () => lines.open(),
            onText: (text: string) => lines.send({ model, created_at: now(), ...flavour.piece(text), done: false }),
          }
        : {}),
    });
    if (exchange.signal.aborted) return;
    if (result.error) {
      if (lines) return lines.end({ error: result.error.message });
      throw fault('ENGINE_ERROR', 'detail', { detail: result.error.message });
    }
    const doneReason = result.finish_reason === 'length' ? 'length' : 'stop';
    const final = {
      model,
      created_at: now(),
      ...flavour.last(result),
      done: true,
      done_reason: doneReason,
      ...timings(result.perf, started),
    };
    if (lines) lines.end(final);
    else sendJson(exchange.res, 200, final);
  } finally {
    lease.release();
  }
}

export async function generate(deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>): Promise<void> {
  const prompt = field(body, 'prompt', 'string') ?? '';
  const system = field(body, 'system', 'string');
  if (prompt === '') {
    // Ollama loads the model for an empty prompt (and unloads it with keep_alive 0), and answers once done.
    const lease = await useModel(deps, client, readModel(body), body.keep_alive, exchange.signal);
    lease.release();
    const unload = body.keep_alive === 0 || body.keep_alive === '0' || body.keep_alive === '0s';
    sendJson(exchange.res, 200, {
      model: readModel(body) ?? `${lease.name}:latest`,
      created_at: now(),
      response: '',
      done: true,
      done_reason: unload ? 'unload' : 'load',
    });
    return;
  }
  // With a system prompt the two become a conversation (the chat template applies); without, the prompt goes as rkllm_run's does.
  const raw = field(body, 'raw', 'boolean') ?? false;
  const messages: ChatMessage[] | undefined =
    system !== undefined && !raw
      ? [
          { role: 'system', content: system },
          { role: 'user', content: prompt },
        ]
      : undefined;
  const streamed = readStream(body);
  await generation(deps, exchange, client, body, {
    request: messages ? { messages } : { prompt },
    piece: (text) => ({ response: text }),
    last: (result) => ({ response: streamed ? '' : result.text }),
  });
}

function ollamaCalls(m: Record<string, unknown>): Array<{ name: string; args: unknown }> {
  if (!Array.isArray(m.tool_calls)) return [];
  return m.tool_calls.map((c: { function?: { name?: unknown; arguments?: unknown } }) => ({
    name: String(c.function?.name),
    args: c.function?.arguments,
  }));
}

export async function chat(deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>): Promise<void> {
  const messages: ChatMessage[] = readMessages(body.messages, ollamaCalls);
  const tools = (field(body, 'tools', 'array') ?? []) as ToolDefinition[];
  tools.forEach((t, i) => {
    if (typeof t?.function?.name !== 'string')
      throw badField(`tools[${i}]`, 'must be {"type": "function", "function": {"name", "parameters"}}');
  });
  const streamed = readStream(body);
  await generation(deps, exchange, client, body, {
    request: { messages, tools },
    piece: (text) => ({ message: { role: 'assistant', content: text } }),
    last: (result) => {
      const calls = result.calls.map((c) => ({ function: { name: c.name, arguments: JSON.parse(c.arguments) as unknown } }));
      return { message: { role: 'assistant', content: streamed ? '' : result.text, ...(calls.length > 0 ? { tool_calls: calls } : {}) } };
    },
  });
}
