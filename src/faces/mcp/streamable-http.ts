import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Logger } from 'pino';
import type { ClientEnd } from '../../auth.js';
import type { ClientGate } from '../../clients.js';
import { ServerError } from '../../errors.js';
import { readJson, refusalHeaders, sendError, sendJson, type HttpExchange, type HttpRoute } from '../../transports/http-route.js';
import { foreignHost } from '../../transports/origin.js';
import { admitCaller } from './backend.js';

export interface McpHttpOptions {
  newServer: (peer: ClientEnd) => McpServer;
  gate: ClientGate;
  /** The server listens on loopback only: `Host` must name loopback too (DNS rebinding). */
  loopbackOnly: boolean;
  /** Open sessions at most (`mcp.max_sessions`). */
  maxSessions: number;
  /** Open sessions at most per key, or per address without keys (`mcp.max_sessions_per_key`). */
  maxSessionsPerKey: number;
  /** A session with no request in progress for this long is closed; 0 never (`connections.idle_timeout_s`). */
  idleTimeoutMs: number;
  /** Largest message body (`http.max_body_bytes`). */
  maxBodyBytes: number;
  log: Logger;
}

/** One MCP session over HTTP: its SDK transport and server, and the key that opened it. */
interface Session {
  transport: StreamableHTTPServerTransport;
  server: McpServer;
  keyId: string | undefined;
  /** Whose sessions it counts among (`maxSessionsPerKey`): the key's id, else the address. */
  owner: string;
  /** Requests in progress (an open GET stream counts). */
  active: number;
  idleTimer: NodeJS.Timeout | undefined;
}

/** A refusal of the session layer (not an error of the table), in the shape the SDK answers its own. */
function refuseSession(res: ServerResponse, status: number, code: number, message: string): void {
  sendJson(res, status, { jsonrpc: '2.0', id: null, error: { code, message } }, refusalHeaders(status, undefined));
}

/**
 * MCP's Streamable HTTP transport at `/mcp`, through the SDK: `POST` for messages (answered with
 * JSON or an SSE stream), `GET` for the server's own stream, `DELETE` to end a session, sessions
 * named by `Mcp-Session-Id`. Before the SDK sees a request, this checks `Origin` and `Host`
 * (DNS rebinding), the API key (`Authorization: Bearer`, when keys are set; a session belongs to
 * the key that opened it) and the client's connection limit.
 */
export class McpHttpRoute implements HttpRoute, AsyncDisposable {
  readonly #options: McpHttpOptions;
  readonly #sessions = new Map<string, Session>();
  #closed = false;

  constructor(options: McpHttpOptions) {
    this.#options = options;
  }

  get sessions(): number {
    return this.#sessions.size;
  }

  matches(_method: string, path: string): boolean {
    return path === '/mcp';
  }

  async serve(exchange: HttpExchange): Promise<void> {
    const { req, res, address } = exchange;
    // Browsers from other origins never get here: the HTTP transport applies the one origin rule to every route.
    const { gate, loopbackOnly } = this.#options;
    const foreign = loopbackOnly ? foreignHost(req.headers) : undefined;
    if (foreign) return void sendError(res, foreign, 'mcp');
    let peer: ClientEnd;
    try {
      peer = { address, key: gate.keyFromHeader(req.headers.authorization, 'refuse') };
      res.once('close', gate.admitConnection(peer, 'http'));
    } catch (err) {
      if (!(err instanceof ServerError)) throw err;
      return void sendError(res, err, 'mcp');
    }
    const sessionId = req.headers['mcp-session-id'];
    if (typeof sessionId === 'string') {
      const session = this.#sessions.get(sessionId);
      if (!session || session.keyId !== peer.key?.id) return refuseSession(res, 404, -32001, 'Session not found');
      return this.#handle(session, exchange);
    }
    if (req.method !== 'POST') return refuseSession(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
    if (this.#closed) return refuseSession(res, 503, -32000, 'The server is shutting down');
    if (this.#sessions.size >= this.#options.maxSessions) {
      const limit = this.#options.maxSessions;
      return refuseSession(res, 503, -32000, `Too many MCP sessions: at most ${limit} (setting mcp.max_sessions); end one with DELETE`);
    }
    const owner = peer.key?.id ?? address;
    const { maxSessionsPerKey: perKey } = this.#options;
    if ([...this.#sessions.values()].filter((s) => s.owner === owner).length >= perKey) {
      const message = `Too many MCP sessions for this key: at most ${perKey} (setting mcp.max_sessions_per_key); end one with DELETE`;
      return refuseSession(res, 429, -32000, message);
    }
    try {
      // An initialize spends one request of the client's rate, as every other request does.
      admitCaller(gate, peer, 'initialize', 0);
    } catch (err) {
      if (!(err instanceof ServerError)) throw err;
      return void sendError(res, err, 'mcp');
    }
    await this.#open(peer, owner, exchange);
  }

  /** Closes every session. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#sessions.values()].map((s) => s.transport.close()));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** A request without a session: an `initialize` opens one; anything else is answered by the SDK (400) and forgotten. */
  async #open(peer: ClientEnd, owner: string, exchange: HttpExchange): Promise<void> {
    const server = this.#options.newServer(peer);
    const session: Session = { transport: undefined!, server, keyId: peer.key?.id, owner, active: 0, idleTimer: undefined };
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => void this.#sessions.set(id, session),
      maxRequestBodySize: this.#options.maxBodyBytes,
    });
    session.transport = transport;
    transport.onclose = () => {
      clearTimeout(session.idleTimer);
      if (transport.sessionId !== undefined) this.#sessions.delete(transport.sessionId);
    };
    transport.onerror = (err) => this.#options.log.debug({ err }, 'mcp over http: transport error');
    await server.connect(transport);
    await this.#handle(session, exchange);
    if (transport.sessionId === undefined) await server.close();
  }

  async #handle(session: Session, exchange: HttpExchange): Promise<void> {
    const { req, res } = exchange;
    let body: unknown;
    if (req.method === 'POST') {
      try {
        body = await readJson(exchange);
      } catch (err) {
        if (err instanceof ServerError) return void sendError(res, err, 'mcp');
        throw err;
      }
      this.#cancelOnDisconnect(session, res, body);
    }
    session.active++;
    clearTimeout(session.idleTimer);
    try {
      await session.transport.handleRequest(req, res, body);
    } finally {
      // The SDK resolves once the reply has begun; an SSE stream stays open after it.
      const done = (): void => {
        session.active--;
        this.#armIdle(session);
      };
      if (res.writableFinished || res.destroyed) done();
      else res.once('close', done);
    }
  }

  /**
   * A client that goes away before its reply is complete cancels its requests, as if it had sent
   * `notifications/cancelled`: their generations stop and free the engine.
   */
  #cancelOnDisconnect(session: Session, res: ServerResponse, body: unknown): void {
    const ids = (Array.isArray(body) ? body : [body]).flatMap((m: unknown) => {
      const message = m as { method?: unknown; id?: unknown } | null;
      return typeof message?.method === 'string' && (typeof message.id === 'string' || typeof message.id === 'number') ? [message.id] : [];
    });
    if (ids.length === 0) return;
    res.once('close', () => {
      if (res.writableFinished) return;
      for (const requestId of ids) {
        session.transport.onmessage?.({
          jsonrpc: '2.0',
          method: 'notifications/cancelled',
          params: { requestId, reason: 'the client went away' },
        });
      }
    });
  }

  #armIdle(session: Session): void {
    const ms = this.#options.idleTimeoutMs;
    if (ms === 0 || session.active > 0) return;
    session.idleTimer = setTimeout(() => void session.transport.close(), ms);
    session.idleTimer.unref();
  }
}
