import { ResourceNotFoundError, type McpServer } from '@modelcontextprotocol/server';
import type { ClientEnd } from '../../auth.js';
import type { Client } from '../../clients.js';
import { admitCaller, type McpDeps } from './backend.js';

const STREAM = /^rkllm:\/\/streams\/([^/?#]+)$/;

/** Watches a resource for a subscriber (see `watchResource`); resolves with the stop. */
export type Watch = (peer: ClientEnd, uri: string, signal: AbortSignal, changed: () => void) => Promise<() => void>;

/**
 * Watches `uri` for a subscriber: `changed` is called when `rkllm://model` changes (a model
 * loading, loaded or unloaded) or `rkllm://streams/{id}` (a stream of `client`'s) has new text.
 * Resolves with the stop, which frees what the watch holds. Other URIs: resource not found.
 */
export async function watchResource(
  deps: McpDeps,
  client: Client,
  uri: string,
  signal: AbortSignal,
  changed: () => void,
): Promise<() => void> {
  const backend = await deps.backend(signal);
  if (uri === 'rkllm://model') return backend.models.watch(changed);
  const id = STREAM.exec(uri)?.[1];
  if (id === undefined || !client.owns(id)) throw new ResourceNotFoundError(uri);
  const [stream] = backend.hub.select({ stream_id: id });
  if (stream) return stream.subscribe(() => changed());
  // An ended stream does not change any more; one without a buffer is not found.
  await backend.store.peek(id).catch(() => Promise.reject(new ResourceNotFoundError(uri)));
  return () => {};
}

/** `resources/subscribe` and `resources/unsubscribe` (2025 era) on one session's server; closing the session stops its watches. */
export function registerSubscriptions(server: McpServer, deps: McpDeps, peer: ClientEnd): void {
  const watches = new Map<string, () => void>();
  server.server.setRequestHandler('resources/subscribe', async (request, ctx) => {
    const { uri } = request.params;
    const client = admitCaller(deps.gate, peer, 'resources/subscribe', ctx.mcpReq.id);
    const updated = (): void => void server.server.sendResourceUpdated({ uri }).catch(() => {});
    if (!watches.has(uri)) watches.set(uri, await watchResource(deps, client, uri, ctx.mcpReq.signal, updated));
    return {};
  });
  server.server.setRequestHandler('resources/unsubscribe', (request) => {
    watches.get(request.params.uri)?.();
    watches.delete(request.params.uri);
    return {};
  });
  const closed = server.server.onclose;
  server.server.onclose = () => {
    for (const stop of watches.values()) stop();
    watches.clear();
    closed?.();
  };
}
