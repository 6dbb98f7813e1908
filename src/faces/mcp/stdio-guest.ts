import { parseJSONRPCMessage, type JSONRPCMessage, type McpServer } from '@modelcontextprotocol/server';
import { serveStdio, type StdioServerHandle } from '@modelcontextprotocol/server/stdio';
import type { Logger } from 'pino';
import type { ClientEnd } from '../../auth.js';
import type { StdioGuest, StdioLink } from '../../transports/stdio.js';
import { LinkTransport } from './link-transport.js';

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

  constructor(options: McpStdioGuestOptions) {
    this.#options = options;
  }

  open(link: StdioLink): void {
    const transport = new LinkTransport(link);
    const onerror = (err: Error): void => this.#options.log.warn({ err }, 'mcp over stdio: transport error');
    this.#transport = transport;
    this.#handle = serveStdio(() => this.#options.newServer(link.peer), { transport, onerror });
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
    this.#transport.deliver(parsed);
    return true;
  }

  /** Ends the session: its tool calls are aborted. Idempotent. */
  async close(): Promise<void> {
    await this.#handle?.close();
  }
}
