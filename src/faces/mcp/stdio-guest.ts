import { parseJSONRPCMessage, type JSONRPCMessage, type McpServer } from '@modelcontextprotocol/server';
import { serveStdio, type StdioServerHandle } from '@modelcontextprotocol/server/stdio';
import type { Logger } from 'pino';
import type { ClientEnd } from '../../auth.js';
import type { StdioGuest, StdioLink } from '../../transports/stdio.js';
import { LinkTransport } from './link-transport.js';
import type { Watch } from './subscriptions.js';

/** MCP's own methods, and the notifications of either side: everything else on stdio is RKLLM JSON-RPC. */
const MCP_METHOD = /^(initialize|ping|(server|subscriptions|tools|resources|prompts|completion|logging|tasks|notifications)\/.+)$/;

function isMcp(message: unknown): boolean {
  if (typeof message !== 'object' || message === null || Array.isArray(message)) return false;
  const m = message as Record<string, unknown>;
  // No method: a response to a request the MCP server sent (the RKLLM side sends none).
  if (typeof m.method !== 'string') return 'id' in m && ('result' in m || 'error' in m);
  return MCP_METHOD.test(m.method);
}

export interface McpStdioGuestOptions {
  newServer: (peer: ClientEnd) => McpServer;
  /** Watches a resource for a `subscriptions/listen`. */
  watch: Watch;
  log: Logger;
}

/**
 * MCP on the stdio connection, beside the RKLLM JSON-RPC methods: it takes MCP's messages (by
 * method name, and responses to its own requests) and hands them through a {@link LinkTransport}
 * to the SDK's `serveStdio`, which picks the era from the opening (`server/discover`: 2026-07-28;
 * `initialize`: 2025) and pins one server to it. Everything else goes on to the dispatcher. The
 * session ends with stdin.
 */
export class McpStdioGuest implements StdioGuest {
  readonly #options: McpStdioGuestOptions;
  #transport: LinkTransport | undefined;
  #handle: StdioServerHandle | undefined;
  /** The server the connection is pinned to (the last one made). */
  #server: McpServer | undefined;
  #peer: ClientEnd | undefined;
  /** Open `subscriptions/listen` requests (2026-07-28), by id: aborting one stops its watches. */
  readonly #listens = new Map<string, AbortController>();

  constructor(options: McpStdioGuestOptions) {
    this.#options = options;
  }

  open(link: StdioLink): void {
    const transport = new LinkTransport(link);
    const onerror = (err: Error): void => this.#options.log.warn({ err }, 'mcp over stdio: transport error');
    this.#transport = transport;
    this.#peer = link.peer;
    const newServer = (): McpServer => (this.#server = this.#options.newServer(link.peer));
    this.#handle = serveStdio(newServer, { transport, onerror });
    link.closed.addEventListener('abort', () => void this.close(), { once: true });
  }

  offer(message: unknown): boolean {
    if (!this.#transport || !isMcp(message)) return false;
    let parsed: JSONRPCMessage;
    try {
      parsed = parseJSONRPCMessage(message);
    } catch {
      return false;
    }
    this.#watchListened(parsed);
    this.#transport.deliver(parsed);
    return true;
  }

  /**
   * A `subscriptions/listen` (2026-07-28): the resources it names are watched until it is
   * cancelled or the connection ends; the SDK routes each `resources/updated` to it.
   */
  #watchListened(message: JSONRPCMessage): void {
    if (!('method' in message)) return;
    const params = message.params as { requestId?: unknown; notifications?: { resourceSubscriptions?: unknown } } | undefined;
    if (message.method === 'notifications/cancelled') {
      const id = JSON.stringify(params?.requestId);
      this.#listens.get(id)?.abort();
      this.#listens.delete(id);
    }
    const uris = params?.notifications?.resourceSubscriptions;
    if (message.method !== 'subscriptions/listen' || !('id' in message) || !Array.isArray(uris) || !this.#peer) return;
    const stop = new AbortController();
    this.#listens.set(JSON.stringify(message.id), stop);
    for (const uri of uris.filter((u): u is string => typeof u === 'string')) {
      const changed = (): void => void this.#server?.server.sendResourceUpdated({ uri }).catch(() => {});
      this.#options
        .watch(this.#peer, uri, stop.signal, changed)
        .then((unwatch) => (stop.signal.aborted ? unwatch() : stop.signal.addEventListener('abort', unwatch, { once: true })))
        .catch(() => {});
    }
  }

  /** Ends the session: its tool calls are aborted, its watches stopped. Idempotent. */
  async close(): Promise<void> {
    for (const stop of this.#listens.values()) stop.abort();
    this.#listens.clear();
    await this.#handle?.close();
  }
}
