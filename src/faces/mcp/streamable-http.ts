import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import {
  createMcpHandler,
  isLegacyRequest,
  WebStandardStreamableHTTPServerTransport,
  type McpHttpHandler,
  type McpServer,
} from '@modelcontextprotocol/server';
import type { Logger } from 'pino';
import type { ClientEnd } from '../../auth.js';
import type { ClientGate } from '../../clients.js';
import { ServerError } from '../../errors.js';
import { readJson, refusalHeaders, sendError, sendJson, type HttpExchange, type HttpRoute } from '../../transports/http-route.js';
import { foreignHost } from '../../transports/origin.js';
import { admitCaller } from './backend.js';
import type { Watch } from './subscriptions.js';

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
  /** Watches a resource for a caller's `subscriptions/listen`. */
  watch: Watch;
  log: Logger;
}

/** One MCP session over HTTP (2025 era): its SDK transport and server, and the key that opened it. */
interface Session {
  transport: WebStandardStreamableHTTPServerTransport;
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

/** The node request as the web `Request` the SDK takes; `signal` aborts it (the client went away). */
function webRequest({ req, url, signal }: HttpExchange, body: unknown): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) if (value !== undefined) headers.set(name, String(value));
  const init = { method: req.method ?? 'GET', headers, signal };
  return new Request(`http://localhost${url.pathname}${url.search}`, body === undefined ? init : { ...init, body: JSON.stringify(body) });
}

/** Writes the SDK's web `Response` (JSON, or an SSE stream until either side ends it). */
async function reply(res: ServerResponse, response: Response): Promise<void> {
  res.writeHead(response.status, Object.fromEntries(response.headers));
  const reader = response.body?.getReader();
  if (!reader) return void res.end();
  res.flushHeaders();
  res.once('close', () => void reader.cancel().catch(() => {}));
  try {
    for (let r = await reader.read(); !r.done; r = await reader.read()) res.write(r.value);
  } catch {
    // The client went away: cancelling the reader ends the read.
  }
  res.end();
}

/**
 * MCP's Streamable HTTP transport at `/mcp`, through the SDK, in both eras. 2026-07-28 requests
 * (stateless, each with `MCP-Protocol-Version`) go to the SDK's per-request handler, one server
 * per request; a response stream the client closes cancels its request. 2025-era requests keep
 * sessions: `POST` for messages (answered with JSON or an SSE stream), `GET` for the server's own
 * stream, `DELETE` to end a session, sessions named by `Mcp-Session-Id`. Before the SDK sees a
 * request, this checks `Origin` and `Host` (DNS rebinding), the API key (`Authorization: Bearer`,
 * when keys are set; a session belongs to the key that opened it) and the client's connection limit.
 */
export class McpHttpRoute implements HttpRoute, AsyncDisposable {
  readonly #options: McpHttpOptions;
  readonly #sessions = new Map<string, Session>();
  /** The 2026-07-28 handler: it learns a request's caller from `authInfo.extra.peer`. */
  readonly #modern: McpHttpHandler;
  #closed = false;

  constructor(options: McpHttpOptions) {
    this.#options = options;
    this.#modern = createMcpHandler((ctx) => options.newServer(ctx.authInfo?.extra?.peer as ClientEnd), {
      legacy: 'reject',
      maxRequestBodySize: options.maxBodyBytes,
      onerror: (err) => options.log.debug({ err }, 'mcp over http: modern request error'),
    });
  }

  matches(_method: string, path: string): boolean {
    return path === '/mcp';
  }

  /** Serves one request; a refusal (origin, key, connection or request limit, body) is answered in MCP's shape. */
  async serve(exchange: HttpExchange): Promise<void> {
    try {
      await this.#serve(exchange);
    } catch (err) {
      if (!(err instanceof ServerError) || exchange.res.headersSent) throw err;
      sendError(exchange.res, err, 'mcp');
    }
  }

  async #serve(exchange: HttpExchange): Promise<void> {
    const { req, res, address } = exchange;
    // Browsers from other origins never get here: the HTTP transport applies the one origin rule to every route.
    const { gate, loopbackOnly } = this.#options;
    const foreign = loopbackOnly ? foreignHost(req.headers) : undefined;
    if (foreign) throw foreign;
    const peer: ClientEnd = { address, key: gate.keyFromHeader(req.headers.authorization, 'refuse') };
    res.once('close', gate.admitConnection(peer, 'http'));
    const body = req.method === 'POST' ? await readJson(exchange) : undefined;
    const sessionId = req.headers['mcp-session-id'];
    if (typeof sessionId === 'string') {
      const session = this.#sessions.get(sessionId);
      if (!session || session.keyId !== peer.key?.id) return refuseSession(res, 404, -32001, 'Session not found');
      return this.#handle(session, exchange, body);
    }
    if (req.method === 'POST' && this.#closed) return refuseSession(res, 503, -32000, 'The server is shutting down');
    if (req.method === 'POST' && !(await isLegacyRequest(webRequest(exchange, body), body))) {
      const authInfo = { token: '', clientId: peer.key?.id ?? address, scopes: [], extra: { peer } };
      this.#watchListened(peer, exchange, body);
      return reply(res, await this.#modern.fetch(webRequest(exchange, body), { parsedBody: body, authInfo }));
    }
    if (req.method !== 'POST') return refuseSession(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
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
    // An initialize spends one request of the client's rate, as every other request does.
    admitCaller(gate, peer, 'initialize', 0);
    await this.#open(peer, owner, exchange, body);
  }

  /** Closes every session. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([this.#modern.close(), ...[...this.#sessions.values()].map((s) => s.transport.close())]);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** A request without a session: an `initialize` opens one; anything else is answered by the SDK (400) and forgotten. */
  async #open(peer: ClientEnd, owner: string, exchange: HttpExchange, body: unknown): Promise<void> {
    const server = this.#options.newServer(peer);
    const session: Session = { transport: undefined!, server, keyId: peer.key?.id, owner, active: 0, idleTimer: undefined };
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => void this.#sessions.set(id, session),
    });
    session.transport = transport;
    transport.onclose = () => {
      clearTimeout(session.idleTimer);
      if (transport.sessionId !== undefined) this.#sessions.delete(transport.sessionId);
    };
    transport.onerror = (err) => this.#options.log.debug({ err }, 'mcp over http: transport error');
    await server.connect(transport);
    await this.#handle(session, exchange, body);
    if (transport.sessionId === undefined) await server.close();
  }

  async #handle(session: Session, exchange: HttpExchange, body: unknown): Promise<void> {
    const { req, res } = exchange;
    if (req.method === 'POST') this.#cancelOnDisconnect(session, exchange.signal, body);
    session.active++;
    clearTimeout(session.idleTimer);
    try {
      const response = await session.transport.handleRequest(webRequest(exchange, body), { parsedBody: body });
      void reply(res, response);
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
  #cancelOnDisconnect(session: Session, gone: AbortSignal, body: unknown): void {
    const ids = (Array.isArray(body) ? body : [body]).flatMap((m: unknown) => {
      const message = m as { method?: unknown; id?: unknown } | null;
      return typeof message?.method === 'string' && (typeof message.id === 'string' || typeof message.id === 'number') ? [message.id] : [];
    });
    if (ids.length === 0) return;
    gone.addEventListener(
      'abort',
      () => {
        for (const requestId of ids) {
          session.transport.onmessage?.({
            jsonrpc: '2.0',
            method: 'notifications/cancelled',
            params: { requestId, reason: 'the client went away' },
          });
        }
      },
      { once: true },
    );
  }

  /**
   * A `subscriptions/listen` (2026-07-28): the resources it names are watched while its stream is
   * open, each change published to the listening streams (the SDK's router filters by URI).
   */
  #watchListened(peer: ClientEnd, { res, signal }: HttpExchange, body: unknown): void {
    const listen = body as { method?: unknown; params?: { notifications?: { resourceSubscriptions?: unknown } } } | null;
    const uris = listen?.method === 'subscriptions/listen' ? listen.params?.notifications?.resourceSubscriptions : undefined;
    if (!Array.isArray(uris)) return;
    for (const uri of uris.filter((u): u is string => typeof u === 'string')) {
      this.#options
        .watch(peer, uri, signal, () => this.#modern.notify.resourceUpdated(uri))
        .then((stop) => (res.closed ? stop() : res.once('close', stop)))
        .catch(() => {});
    }
  }

  #armIdle(session: Session): void {
    const ms = this.#options.idleTimeoutMs;
    if (ms === 0 || session.active > 0) return;
    session.idleTimer = setTimeout(() => void session.transport.close(), ms);
    session.idleTimer.unref();
  }
}
