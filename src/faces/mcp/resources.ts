import { ResourceNotFoundError, ResourceTemplate, type McpServer, type ReadResourceResult } from '@modelcontextprotocol/server';
import type { ClientEnd } from '../../auth.js';
import { ServerError } from '../../errors.js';
import { admitCaller, type McpDeps } from './backend.js';
import { modelInfo } from './tools.js';

/** The template of a stream's resource. */
export const STREAM_TEMPLATE = 'rkllm://streams/{stream_id}';

function json(uri: URL, value: unknown): ReadResourceResult {
  return { contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(value) }] };
}

/**
 * Registers the resources on one session's server: `rkllm://model`, the model's metadata, and
 * `rkllm://streams/{stream_id}`, the buffered text of a stream the caller owns (one started with
 * rkllm_run_async over HTTP, or detached): an agent can start a long job and read it later.
 */
export function registerResources(server: McpServer, deps: McpDeps, peer: ClientEnd): void {
  server.registerResource(
    'model',
    'rkllm://model',
    { title: 'The loaded model', description: 'The model, the engine, its limits and features', mimeType: 'application/json' },
    async (uri, ctx) => {
      admitCaller(deps.gate, peer, 'resources/read', ctx.mcpReq.id);
      return json(uri, modelInfo(await deps.backend(ctx.mcpReq.signal)));
    },
  );
  server.registerResource(
    'stream',
    new ResourceTemplate(STREAM_TEMPLATE, { list: undefined }),
    {
      title: 'A stream',
      description: 'The text a stream has buffered and nobody has acknowledged with poll yet, and whether it has ended',
      mimeType: 'application/json',
    },
    async (uri, variables, ctx) => {
      const client = admitCaller(deps.gate, peer, 'resources/read', ctx.mcpReq.id);
      const streamId = String(variables.stream_id);
      const notFound = new ResourceNotFoundError(uri.href);
      if (!client.owns(streamId)) throw notFound;
      const { store } = await deps.backend(ctx.mcpReq.signal);
      const chunks = await store.peek(streamId).catch((err: unknown) => {
        throw err instanceof ServerError && err.name === 'STREAM_NOT_FOUND' ? notFound : err;
      });
      const last = chunks.at(-1);
      return json(uri, {
        stream_id: streamId,
        text: chunks.map((c) => c.delta).join(''),
        first_seq: chunks[0]?.seq ?? null,
        last_seq: last?.seq ?? null,
        ended: last?.end === true,
        ...(last?.end ? { finish_reason: last.finish_reason, perf: last.perf, ...(last.error ? { error: last.error } : {}) } : {}),
      });
    },
  );
}
