/** `POST /v1/chat/completions`. */
import type { Client } from '../../clients.js';
import { fault } from '../../errors.js';
import { readMessages } from '../chat-messages.js';
import { runForFace, type FaceRunResult } from '../face-run.js';
import { toRunParams, useModel } from '../generation-request.js';
import { badField, field, sendJson, type HubDeps } from '../http-kit.js';
import { forcedCallSchema, type ToolCall, type ToolDefinition } from '../tool-calls.js';
import type { HttpExchange } from '../../transports/http-route.js';
import { readCommon, finishReason, usage } from './request.js';
import { EventStream, openaiId, unixSeconds } from './wire.js';

/** `response_format` as a JSON Schema: `{}` for json_object, the given schema for json_schema, undefined for text. */
function readResponseFormat(body: Record<string, unknown>): Record<string, unknown> | undefined {
  const format = field(body, 'response_format', 'object');
  if (!format || format.type === 'text') return undefined;
  if (format.type === 'json_object') return {};
  if (format.type === 'json_schema') {
    const spec = format.json_schema as { schema?: unknown } | undefined;
    if (typeof spec?.schema !== 'object' || spec.schema === null)
      throw badField('response_format.json_schema.schema', 'must be a JSON Schema object');
    return spec.schema as Record<string, unknown>;
  }
  throw badField('response_format.type', `must be "text", "json_object" or "json_schema"; got ${JSON.stringify(format.type)}`);
}

/** `tools` and `tool_choice`: what to offer, and whether a call is forced (and to which function). */
function readTools(body: Record<string, unknown>): { tools: ToolDefinition[]; forced?: { name?: string } } {
  const tools = field(body, 'tools', 'array') ?? [];
  tools.forEach((t, i) => {
    const fn = (t as { function?: { name?: unknown } }).function;
    if ((t as { type?: unknown }).type !== 'function' || typeof fn?.name !== 'string') {
      throw badField(`tools[${i}]`, 'must be {"type": "function", "function": {"name", "parameters"}}');
    }
  });
  const choice = body.tool_choice ?? 'auto';
  if (tools.length === 0 || choice === 'none') return { tools: [] };
  const defs = tools as ToolDefinition[];
  if (choice === 'auto') return { tools: defs };
  if (choice === 'required') return { tools: defs, forced: {} };
  const name = (choice as { function?: { name?: unknown } }).function?.name;
  if (typeof name === 'string' && defs.some((t) => t.function.name === name)) return { tools: defs, forced: { name } };
  throw badField('tool_choice', 'must be "none", "auto", "required" or {"type": "function", "function": {"name"}} naming one of "tools"');
}

function toolCalls(calls: ToolCall[]): Array<Record<string, unknown>> {
  return calls.map((c) => ({ id: openaiId('call'), type: 'function', function: { name: c.name, arguments: c.arguments } }));
}

export async function chatCompletions(deps: HubDeps, exchange: HttpExchange, client: Client, body: Record<string, unknown>): Promise<void> {
  const common = readCommon(body);
  const lease = await useModel(deps, client, common.model, undefined, exchange.signal);
  try {
    const messages = readMessages(body.messages, (m) =>
      Array.isArray(m.tool_calls)
        ? m.tool_calls.map((c: { function?: { name?: unknown; arguments?: unknown } }) => ({
            name: String(c.function?.name),
            args: c.function?.arguments,
          }))
        : [],
    );
    const { tools, forced } = readTools(body);
    const jsonSchema = forced ? forcedCallSchema(tools, forced.name) : readResponseFormat(body);
    const params = toRunParams(
      lease.engine,
      { messages, maxTokens: common.maxTokens, sampling: common.sampling, jsonSchema, tools },
      lease.name,
    );
    const id = openaiId('chatcmpl');
    const created = unixSeconds();
    const model = lease.name;
    const base = { id, object: 'chat.completion.chunk', created, model, system_fingerprint: null };
    const events = common.stream ? new EventStream(exchange.res) : undefined;
    const delta = (d: Record<string, unknown>, finish: string | null = null): unknown => ({
      ...base,
      choices: [{ index: 0, delta: d, logprobs: null, finish_reason: finish }],
    });
    const result: FaceRunResult = await runForFace(deps.hub, {
      params,
      client,
      signal: exchange.signal,
      stop: common.stop,
      ...(tools.length > 0 ? { tools: forced ? 'forced' : 'catch' } : {}),
      sendLimit: deps.sendLimit,
      ...(events
        ? {
            pending: () => events.pending,
            onStarted: () => events.send(delta({ role: 'assistant', content: '' })),
            onText: (text: string) => events.send(delta({ content: text })),
          }
        : {}),
    });
    if (exchange.signal.aborted) return;
    const finish = finishReason(result.finish_reason, result.calls.length);
    if (events) {
      if (result.error) return events.fail(result.error.message);
      const calls = toolCalls(result.calls);
      if (calls.length > 0) events.send(delta({ tool_calls: calls.map((c, index) => ({ index, ...c })) }));
      events.send(delta({}, finish));
      if (common.includeUsage) events.send({ ...base, choices: [], usage: usage(result) });
      return events.end();
    }
    if (result.error) throw fault('ENGINE_ERROR', 'detail', { detail: result.error.message });
    const calls = toolCalls(result.calls);
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
  } finally {
    lease.release();
  }
}
