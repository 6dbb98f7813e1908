/** `POST /api/generate` and `POST /api/chat`. */
import type { Client } from '../../clients.js';
import { placeImages } from '../../engine/chat.js';
import { sendJson, type HttpExchange } from '../../transports/http-route.js';
import { naming, readImage, readMessages, readTools, type FaceMessage } from '../chat-messages.js';
import { ResponseStream, serveGeneration, type TextRun } from '../generation.js';
import { honoursKeepAlive, useModel, type GenerationRequest } from '../generation-request.js';
import { field, type HubDeps } from '../http-kit.js';
import { readFormat, readModel, readOptions, readStream } from './request.js';
import { NDJSON, now, timings } from './wire.js';

/** What differs between generate and chat: the request's text, and how a piece of reply is framed. */
interface Flavour {
  request: Pick<GenerationRequest, 'messages' | 'prompt' | 'images' | 'tools'>;
  piece: (text: string) => Record<string, unknown>;
  /** The last line's own fields; a streamed reply's text went out already, line by line. */
  last: (result: TextRun, streamed: boolean) => Record<string, unknown>;
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
  await serveGeneration(deps, exchange, client, { name: modelName, keepAlive: body.keep_alive }, (name) => {
    const model = modelName ?? `${name}:latest`;
    const piece = (text: string): unknown => ({ model, created_at: now(), ...flavour.piece(text), done: false });
    const lines = stream ? new ResponseStream(exchange.res, NDJSON, { piece }) : undefined;
    return {
      request: { ...flavour.request, maxTokens: options.maxTokens, sampling: options.sampling, ...(jsonSchema ? { jsonSchema } : {}) },
      stop: options.stop,
      tools: flavour.request.tools?.length ? 'catch' : undefined,
      live: lines,
      finish: (result) => {
        const doneReason = result.finish_reason === 'length' ? 'length' : 'stop';
        const final = {
          model,
          created_at: now(),
          ...flavour.last(result, stream),
          done: true,
          done_reason: doneReason,
          ...timings(result.perf, started),
        };
        if (lines) lines.end(final);
        else sendJson(exchange.res, 200, final);
      },
    };
  });
}

export async function generate(deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>): Promise<void> {
  const prompt = field(body, 'prompt', 'string') ?? '';
  const system = field(body, 'system', 'string');
  const images = (field(body, 'images', 'array') ?? []).map((image, i) => readImage(image, `images[${i}]`));
  if (prompt === '' && images.length === 0) {
    // Ollama loads the model for an empty prompt (and unloads it with keep_alive 0), and answers once done.
    const lease = await useModel(deps, client, readModel(body), body.keep_alive, exchange.signal);
    lease.release();
    const unload = honoursKeepAlive(deps, client) && [0, '0', '0s'].includes(body.keep_alive as never);
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
  const placed = images.length === 0 ? prompt : naming('prompt', () => placeImages(prompt, images.length));
  const messages: FaceMessage[] | undefined =
    system !== undefined && !raw
      ? [
          { role: 'system', content: system },
          { role: 'user', content: placed, images },
        ]
      : undefined;
  await generation(deps, exchange, client, body, {
    request: messages ? { messages } : { prompt: placed, images },
    piece: (text) => ({ response: text }),
    last: (result, streamed) => ({ response: streamed ? '' : result.text }),
  });
}

export async function chat(deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>): Promise<void> {
  const messages = readMessages(body.messages);
  const tools = readTools(body, false);
  await generation(deps, exchange, client, body, {
    request: { messages, tools },
    piece: (text) => ({ message: { role: 'assistant', content: text } }),
    last: (result, streamed) => {
      const calls = result.calls.map((c) => ({ function: { name: c.name, arguments: JSON.parse(c.arguments) as unknown } }));
      return { message: { role: 'assistant', content: streamed ? '' : result.text, ...(calls.length > 0 ? { tool_calls: calls } : {}) } };
    },
  });
}
