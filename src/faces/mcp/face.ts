import { McpServer } from '@modelcontextprotocol/server';
import type { ClientEnd } from '../../auth.js';
import { admitCaller, type McpDeps } from './backend.js';
import { ChatSessions } from './chat-sessions.js';
import { McpHttpRoute, type McpHttpOptions } from './streamable-http.js';
import { registerCompletions } from './completions.js';
import { registerPrompts } from './prompts.js';
import { registerResources } from './resources.js';
import { McpStdioGuest } from './stdio-guest.js';
import { registerSubscriptions, watchResource, type Watch } from './subscriptions.js';
import { registerTools } from './tools.js';

export interface McpFaceOptions extends McpDeps {
  /** Chat histories kept at most (`mcp.max_chat_sessions`). */
  maxChatSessions: number;
  http: Omit<McpHttpOptions, 'newServer' | 'gate' | 'log' | 'watch'>;
}

/**
 * The MCP face: one SDK `McpServer` per session (an HTTP session, or the stdio connection), each
 * offering the same tools and resources over the same hub. It exists from the start, before the
 * model is loaded, so `initialize` answers at once; the tools wait for the model (`backend`).
 */
export class McpFace implements AsyncDisposable {
  readonly route: McpHttpRoute;
  readonly stdio: McpStdioGuest;
  readonly #options: McpFaceOptions;
  readonly #chats: ChatSessions;

  constructor(options: McpFaceOptions) {
    this.#options = options;
    this.#chats = new ChatSessions(options.maxChatSessions);
    const newServer = (peer: ClientEnd): McpServer => this.#newServer(peer);
    const watch: Watch = (peer, uri, signal, changed) =>
      watchResource(options, admitCaller(options.gate, peer, 'subscriptions/listen', uri), uri, signal, changed);
    this.route = new McpHttpRoute({ ...options.http, newServer, gate: options.gate, log: options.log, watch });
    this.stdio = new McpStdioGuest({ newServer, log: options.log, watch });
  }

  /** Closes every session, aborting their tool calls. Idempotent. */
  async close(): Promise<void> {
    await Promise.all([this.route.close(), this.stdio.close()]);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #newServer(peer: ClientEnd): McpServer {
    const { name, version } = this.#options;
    const server = new McpServer(
      { name, version },
      {
        capabilities: { tools: {}, resources: { subscribe: true }, prompts: {}, completions: {}, logging: {} },
        instructions:
          'An on-device LLM (private, offline). Use generate for completions, chat for conversations (session keeps history), ' +
          'embed for vectors, model_info for the model and its limits. Pass a progressToken to receive the text as it is made.',
      },
    );
    registerTools(server, this.#options, peer, this.#chats);
    registerResources(server, this.#options, peer);
    registerPrompts(server);
    registerCompletions(server, this.#options, peer);
    registerSubscriptions(server, this.#options, peer);
    return server;
  }
}
