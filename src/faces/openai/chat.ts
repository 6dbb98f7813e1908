/** `POST /v1/chat/completions`. */
import type { Client } from '../../clients.js';
import { readMessages, readTools } from '../chat-messages.js';
import { ResponseStream, serveGeneration } from '../generation.js';
import { checkOutputSchema } from '../../request-schema.js';
import { badField, field, type HubDeps } from '../http-kit.js';
import { forcedCallSchema, type ToolDefinition } from '../text-filters.js';
import { sendJson, type HttpExchange } from '../../transports/http-route.js';
import { readCommon, finishReason, usage } from './request.js';
import { SSE, openaiId, unixSeconds } from './wire.js';

/** `response_format` as a JSON Schema: `{}` for json_object, the given schema for json_schema, undefined for text. */
function readResponseFormat(body: Record<string, unknown>): Record<string, unknown> | undefined {
  const format = field(body, 'response_format', 'object');
  if (!format || format.type === 'text') return undefined;
  if (format.type === 'json_object') return {};
  if (format.type === 'json_schema') {
    const spec = format.json_schema as { schema?: unknown } | undefined;
    if (typeof spec?.schema !== 'object' || spec.schema === null)
      throw badField('response_format.json_schema.schema', 'must be a JSON Schema object');
    checkOutputSchema(spec.schema, 'response_format.json_schema.schema');
    return spec.schema as Record<string, unknown>;
  }
  throw badField('response_format.type', `must be "text", "json_object" or "json_schema"; got ${JSON.stringify(format.type)}`);
}

/** `tool_choice`: whether a call of `tools` is forced (and to which function). */
function readToolChoice(body: Record<string, unknown>, tools: ToolDefinition[]): { tools: ToolDefinition[]; forced?: { name?: string } } {
  const choice = body.tool_choice ?? 'auto';
  if (tools.length === 0 || choice === 'none') return { tools: [] };
  if (choice === 'auto') return { tools };
  if (choice === 'required') return { tools, forced: {} };
  const name = (choice as { function?: { name?: unknown } }).function?.name;
  if (typeof name === 'string' && tools.some((t) => t.function.name === name)) return { tools, forced: { name } };
  throw badField('tool_choice', 'must be "none", "auto", "required" or {"type": "function", "function": {"name"}} naming one of "tools"');
}

export async function chatCompletions(deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>): Promise<void> {
  const common = readCommon(body);
  await serveGeneration(deps, exchange, client, { name: common.model }, (model) => {
    const messages = readMessages(body.messages);
    const { tools, forced } = readToolChoice(body, readTools(body, true));
    const jsonSchema = forced ? forcedCallSchema(tools, forced.name) : readResponseFormat(body);
    // A forced call's grammar is built from the parameters of the tools it may call.
    if (forced) checkOutputSchema(jsonSchema, 'tools[].function.parameters');
    const id = openaiId('chatcmpl');
    const created = unixSeconds();
    const base = { id, object: 'chat.completion.chunk', created, model, system_fingerprint: null };
    const delta = (d: Record<string, unknown>, finish: string | null = null): unknown => ({
      ...base,
      choices: [{ index: 0, delta: d, logprobs: null, finish_reason: finish }],
    });
    const framing = { opening: delta({ role: 'assistant', content: '' }), piece: (content: string) => delta({ content }) };
    const events = common.stream ? new ResponseStream(exchange.res, SSE, framing) : undefined;
    return {
      request: { messages, maxTokens: common.maxTokens, sampling: common.sampling, jsonSchema, tools },
      stop: common.stop,
      tools: tools.length === 0 ? undefined : forced ? 'forced' : 'catch',
      live: events,
      finish: (result) => {
        const finish = finishReason(result.finish_reason, result.calls.length);
        const calls = result.calls.map((c) => ({
          id: openaiId('call'),
          type: 'function',
          function: { name: c.name, arguments: c.arguments },
        }));
        if (events) {
          if (calls.length > 0) events.send(delta({ tool_calls: calls.map((c, index) => ({ index, ...c })) }));
          return events.end(delta({}, finish), ...(common.includeUsage ? [{ ...base, choices: [], usage: usage(result) }] : []));
        }
        const message = {
          role: 'assistant',
          content: calls.length > 0 && result.text === '' ? null : result.text,
          refusal: null,
          ...(calls.length > 0 ? { tool_calls: calls } : {}),
        };
        sendJson(exchange.res, 200, {
          id,
          object: 'chat.completion',
          created,
          model,
          system_fingerprint: null,
          choices: [{ index: 0, message, logprobs: null, finish_reason: finish }],
          usage: usage(result),
        });
      },
    };
  });
}
