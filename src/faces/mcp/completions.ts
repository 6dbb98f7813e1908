import type { CompleteResult, McpServer } from '@modelcontextprotocol/server';
import type { ClientEnd } from '../../auth.js';
import { admitCaller, type McpDeps } from './backend.js';
import { ARGUMENT_VALUES, PROMPTS } from './prompts.js';
import { STREAM_TEMPLATE } from './resources.js';
import { MCP_TOOLS } from './tools.js';

/** Completions answered at most. */
const MAX = 100;

/**
 * `completion/complete`: the prompts' arguments (languages, labels, lengths), the `model` argument
 * of the prompts and the tools (the models by name; MCP references name prompts, so a tool is
 * named as a `ref/prompt`), and `rkllm://streams/{stream_id}` (the caller's own live streams).
 * Anything else gets an empty list.
 */
export function registerCompletions(server: McpServer, deps: McpDeps, peer: ClientEnd): void {
  server.server.setRequestHandler('completion/complete', async (request, ctx): Promise<CompleteResult> => {
    const { ref, argument } = request.params;
    const client = admitCaller(deps.gate, peer, 'completion/complete', ctx.mcpReq.id);
    let values: readonly string[] = [];
    if (ref.type === 'ref/resource' && ref.uri === STREAM_TEMPLATE && argument.name === 'stream_id') {
      values = (await deps.backend(ctx.mcpReq.signal)).hub.live((s) => client.owns(s.id)).map((s) => s.id);
    } else if (ref.type === 'ref/prompt' && argument.name === 'model' && (ref.name in PROMPTS || MCP_TOOLS.includes(ref.name))) {
      values = (await (await deps.backend(ctx.mcpReq.signal)).models.list()).map((e) => e.name);
    } else if (ref.type === 'ref/prompt' && PROMPTS[ref.name]?.args[argument.name]) {
      values = ARGUMENT_VALUES[argument.name] ?? [];
    }
    const prefix = argument.value.toLowerCase();
    const matching = values.filter((v) => v.toLowerCase().startsWith(prefix));
    return { completion: { values: matching.slice(0, MAX), total: matching.length, hasMore: matching.length > MAX } };
  });
}
