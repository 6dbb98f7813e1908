import { basename } from 'node:path';
import type { CallToolResult, McpServer, ServerContext } from '@modelcontextprotocol/server';
import { z } from 'zod';
import type { ClientEnd } from '../../auth.js';
import type { Client } from '../../clients.js';
import { ENGINE_FEATURE_NAMES } from '../../engine/capabilities.js';
import type { Engine } from '../../engine/types.js';
import { ERRORS, ServerError } from '../../errors.js';
import { checkMaxNewTokens, zodShape } from '../../request-schema.js';
import { collect } from '../../streams/stream.js';
import { errorAnswer } from '../../transports/http-route.js';
import { readMessages, type FaceMessage } from '../chat-messages.js';
import { runText, type TextRun } from '../generation.js';
import { embeddingParams, toRunParams } from '../generation-request.js';
import { admitCaller, type McpBackend, type McpDeps } from './backend.js';
import type { ChatSessions } from './chat-sessions.js';

/** Sends a log notification to the caller of one request (the SDK applies its `logging/setLevel`). */
function logTo(ctx: ServerContext, level: 'info' | 'warning', data: string): void {
  ctx.mcpReq.log(level, data, 'rkllm-mcp').catch(() => {});
}

/** A wait for the model at least this long is reported to the caller as a model load. */
const LOAD_LOG_MS = 50;

/** The tools' fields that are declared request fields (src/request-schema.ts), under the same names. */
const SAMPLING_FIELDS = ['temperature', 'top_k', 'top_p', 'repeat_penalty'] as const;

const sampling = {
  ...zodShape(['max_new_tokens', ...SAMPLING_FIELDS, 'stop']),
  model: z.string().min(1).max(256).optional().describe('The model, by name (models_list); absent: the default model'),
};

const perf = z.object({
  prefill_time_ms: z.number(),
  prefill_tokens: z.number(),
  generate_time_ms: z.number(),
  generate_tokens: z.number(),
  memory_usage_mb: z.number(),
  image_encode_ms: z.number().optional(),
});

const generated = {
  text: z.string().describe('The generated text'),
  finish_reason: z.enum(['stop', 'length', 'abort', 'error', 'shutdown']),
  perf,
};

/** MCP's text and image content blocks, as a message's content. */
const block = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text'), text: z.string() }),
  z.object({ type: z.literal('image'), data: z.string().describe('The image, base64 (PNG, JPEG or WebP)'), mimeType: z.string() }),
]);

const message = z.object({
  role: z.enum(['system', 'user', 'assistant']),
  content: z
    .union([z.string(), z.array(block).max(256)])
    .describe('Text, or text and image content blocks; an image goes where "<image>" is in the text, else before it'),
});

type Sampling = { [K in keyof typeof sampling]?: z.infer<(typeof sampling)[K]> };

/** The tools, as the metrics name them (`rkllm_request_duration_seconds{method, transport="mcp"}`). */
export const MCP_TOOLS: readonly string[] = ['generate', 'chat', 'embed', 'model_info'];
export const MCP_TOOL_METHODS: readonly string[] = MCP_TOOLS.map((tool) => `mcp/${tool}`);

function result(structured: Record<string, unknown>, text: string): CallToolResult {
  return { content: [{ type: 'text', text }], structuredContent: structured };
}

/**
 * Runs `fn` with the engine of the model a tool call names (absent: the default model), loading it
 * when needed (the default model too, when it was unloaded to make room; a `client` that may not
 * load gets FORBIDDEN instead) and holding it until `fn` ends, so a tool reads and runs the model it names.
 */
async function withModel<T>(
  backend: McpBackend,
  client: Client,
  model: string | undefined,
  ctx: ServerContext,
  fn: (engine: Engine) => Promise<T>,
): Promise<T> {
  const lease = await waited(ctx, model, () => backend.models.use(model, undefined, ctx.mcpReq.signal, client.admin));
  try {
    return await fn(lease.engine);
  } finally {
    lease.release();
  }
}

/** Waits for `load`; a wait long enough to be a model load is logged to the caller. */
async function waited<T>(ctx: ServerContext, model: string | undefined, load: () => Promise<T>): Promise<T> {
  const started = performance.now();
  const value = await load();
  const ms = Math.round(performance.now() - started);
  if (ms >= LOAD_LOG_MS) logTo(ctx, 'info', `waited ${ms} ms for the model ${model ?? '(the default)'} to load`);
  return value;
}

/** `model_info`'s answer, also the `rkllm://model` resource: the default model's, or `engine`'s. */
export function modelInfo(backend: McpBackend, engine: Engine = backend.engine): Record<string, unknown> {
  const p = engine.param;
  return {
    engine: engine.name,
    model: basename(p.model_path),
    max_context_len: p.max_context_len,
    max_new_tokens: p.max_new_tokens,
    slots: engine.slots,
    queue_limit: backend.queueLimit,
    sampling: { temperature: p.temperature, top_k: p.top_k, top_p: p.top_p, repeat_penalty: p.repeat_penalty },
    features: Object.fromEntries(ENGINE_FEATURE_NAMES.map((f) => [f, engine.supports(f)])),
  };
}

/** Registers the tools on one session's server. `peer` is the session's client end. */
export function registerTools(server: McpServer, deps: McpDeps, peer: ClientEnd, chats: ChatSessions): void {
  /**
   * Runs a tool call for its caller, admitted by the gate, once the backend is there: a ServerError
   * becomes a tool error result (which the session survives; a refusal says when to retry, by HTTP's
   * Retry-After rule), and a warning to the caller's log; the call is counted either way.
   */
  const guarded = async (
    tool: string,
    ctx: ServerContext,
    body: (backend: McpBackend, client: Client) => Promise<CallToolResult>,
  ): Promise<CallToolResult> => {
    const started = performance.now();
    let code: number | undefined;
    try {
      const client = admitCaller(deps.gate, peer, 'tools/call', ctx.mcpReq.id);
      return await body(await waited(ctx, undefined, () => deps.backend(ctx.mcpReq.signal)), client);
    } catch (err) {
      if (!(err instanceof ServerError)) throw err;
      code = ERRORS[err.name].code;
      const retry = errorAnswer(err, 'mcp').headers['retry-after'];
      const text = `${err.message} (${code})${retry === undefined ? '' : ` Retry after ${retry} s.`}`;
      logTo(ctx, 'warning', `${tool} refused: ${text}`);
      return { isError: true, content: [{ type: 'text', text }] };
    } finally {
      deps.answered?.(tool, (performance.now() - started) / 1000, code);
    }
  };

  /** Runs a prompt or a conversation on the model the call names, holding that model until the run ends. */
  const run = (
    backend: McpBackend,
    client: Client,
    input: { prompt: string } | { messages: FaceMessage[] },
    args: Sampling,
    ctx: ServerContext,
  ): Promise<TextRun> =>
    withModel(backend, client, args.model, ctx, async (engine) => {
      // Made as the OpenAI and Ollama faces make theirs: a prompt (generate) goes to the model as it
      // is, a conversation (chat) through its chat template.
      const { max_new_tokens: maxTokens, model } = args;
      const sampling = Object.fromEntries(SAMPLING_FIELDS.flatMap((name) => (args[name] === undefined ? [] : [[name, args[name]]])));
      checkMaxNewTokens(maxTokens, engine.param.max_context_len);
      const params = toRunParams(engine, { ...input, ...(maxTokens === undefined ? {} : { maxTokens }), sampling }, model);
      const token = ctx.mcpReq._meta?.progressToken;
      const limit = args.max_new_tokens ?? engine.param.max_new_tokens;
      let progress: Promise<void> = Promise.resolve();
      const onText =
        token === undefined
          ? undefined
          : (text: string, tokens: number): void => {
              const params = { progressToken: token, progress: tokens, ...(limit > 0 ? { total: limit } : {}), message: text };
              progress = progress
                .then(() => ctx.mcpReq.notify({ method: 'notifications/progress', params }))
                .catch((err: unknown) => deps.log.warn({ err }, 'mcp: could not send a progress notification'));
            };
      const logger = deps.log.child({ client: client.id, mcp_request_id: ctx.mcpReq.id });
      const onStart = (streamId: string): void => logger.info({ stream_id: streamId }, 'mcp: stream started');
      const out = await runText(backend.hub, {
        params,
        client,
        requestId: ctx.mcpReq.id,
        signal: ctx.mcpReq.signal,
        stop: args.stop ?? [],
        onStarted: onStart,
        ...(onText ? { onText } : {}),
      });
      if (out.error) throw out.error;
      if (out.finish_reason === 'length') logTo(ctx, 'warning', `the text was cut at ${limit} tokens (max_new_tokens)`);
      logger.info(
        { stream_id: out.stream_id, finish_reason: out.finish_reason, generate_tokens: out.perf.generate_tokens },
        'mcp: stream ended',
      );
      await progress;
      return out;
    });

  server.registerTool(
    'generate',
    {
      title: 'Generate text with the on-device model',
      description:
        'Continues a prompt with the on-device LLM (private, offline). With a progressToken, each new piece of text arrives as a progress notification.',
      inputSchema: z.object({ prompt: z.string().describe('The prompt text'), ...sampling }),
      outputSchema: z.object(generated),
    },
    (args, ctx) =>
      guarded('generate', ctx, async (backend, client) => {
        const { prompt, ...rest } = args;
        const out = await run(backend, client, { prompt }, rest, ctx);
        const structured = { text: out.text, finish_reason: out.finish_reason, perf: out.perf };
        return result(structured, out.text);
      }),
  );

  server.registerTool(
    'chat',
    {
      title: 'Chat with the on-device model',
      description:
        'Answers a conversation with the on-device LLM. A message may hold images (image content blocks) for a model with a vision encoder. ' +
        'With "session", the history is kept between calls: send only the new messages.',
      inputSchema: z.object({
        messages: z.array(message).min(1).max(1000).describe('The new messages, oldest first'),
        session: z.string().min(1).max(128).optional().describe('A name of your choosing that keeps the conversation between calls'),
        ...sampling,
      }),
      outputSchema: z.object({
        ...generated,
        session: z.string().optional(),
        turns: z.number().int().describe('Messages in the conversation, the answer included'),
      }),
    },
    (args, ctx) =>
      guarded('chat', ctx, async (backend, client) => {
        const { messages, session, ...rest } = args;
        const conversation = [...(session === undefined ? [] : chats.history(client.id, session)), ...readMessages(messages)];
        const out = await run(backend, client, { messages: conversation }, rest, ctx);
        const answered = [...conversation, { role: 'assistant' as const, content: out.text }];
        if (session !== undefined && out.finish_reason !== 'abort' && out.finish_reason !== 'error')
          chats.save(client.id, session, answered);
        const structured = {
          text: out.text,
          finish_reason: out.finish_reason,
          perf: out.perf,
          ...(session === undefined ? {} : { session }),
          turns: answered.length,
        };
        return result(structured, out.text);
      }),
  );

  server.registerTool(
    'embed',
    {
      title: 'Embed text with the on-device model',
      description:
        "Turns text into vectors: the model's last hidden layer at the last token of each input (RKLLM_INFER_GET_LAST_HIDDEN_LAYER).",
      inputSchema: z.object({
        input: z.union([z.string(), z.array(z.string()).min(1).max(256)]).describe('A string, or an array of strings'),
        model: sampling.model,
      }),
      outputSchema: z.object({ vectors: z.array(z.array(z.number())), dimensions: z.number().int(), model: z.string() }),
    },
    (args, ctx) =>
      guarded('embed', ctx, async (backend, client) => {
        const inputs = typeof args.input === 'string' ? [args.input] : args.input;
        const vectors: number[][] = [];
        const model = await withModel(backend, client, args.model, ctx, async (engine) => {
          for (const text of inputs) {
            const run = await backend.hub.generate(embeddingParams(text, args.model), {
              requestId: ctx.mcpReq.id,
              signal: ctx.mcpReq.signal,
              owner: client,
            });
            const { last } = await collect(run);
            const layer = last.last_hidden_layer;
            if (!layer) throw new ServerError('ENGINE_ERROR', last.error?.message ?? 'The engine returned no hidden layer');
            vectors.push(layer.hidden_states.slice((layer.num_tokens - 1) * layer.embd_size, layer.num_tokens * layer.embd_size));
          }
          return basename(engine.param.model_path);
        });
        const structured = { vectors, dimensions: vectors[0]?.length ?? 0, model };
        return result(structured, `${vectors.length} vector(s) of ${structured.dimensions} dimensions`);
      }),
  );

  server.registerTool(
    'model_info',
    {
      title: 'The on-device model',
      description: 'The model (the default one, or the one `model` names, loaded when needed), the engine, its limits and features.',
      inputSchema: z.object({ model: sampling.model }),
      outputSchema: z.object({
        engine: z.string(),
        model: z.string(),
        max_context_len: z.number().int(),
        max_new_tokens: z.number().int(),
        slots: z.number().int(),
        queue_limit: z.number().int(),
        sampling: z.record(z.string(), z.number()),
        features: z.record(z.string(), z.boolean()),
        fleet: z.record(z.string(), z.unknown()).optional(),
      }),
    },
    (args, ctx) =>
      guarded('model_info', ctx, async (backend, client) => {
        const info = await withModel(backend, client, args.model, ctx, async (engine) => ({
          ...modelInfo(backend, engine),
          ...(backend.fleet ? { fleet: await backend.fleet() } : {}),
        }));
        return result(info, JSON.stringify(info));
      }),
  );
}
