import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ClientEnd } from '../auth.js';
import { ERROR_NAMES, ERRORS, fault, ServerError, type ErrorSpec } from '../errors.js';
import type { JsonRpcResponse } from '../jsonrpc/message.js';
import { LINGER_MS, readBody, refusalHeaders, sendError, sendJson, type HttpRoute } from './http-route.js';
import { foreignOrigin } from './origin.js';
import { listen, type NetworkTransportOptions, type Transport } from './transport.js';

/** A GET endpoint beside JSON-RPC (`/health`, `/metrics`). */
export interface HttpEndpoint {
  /** Whether it needs an API key when keys are set (`/metrics` does; `/health` is for load balancers and does not). */
  keyed: boolean;
  /** With keys, only an admin key may read it (it shows every client's state): others get 403. */
  admin?: boolean;
  serve(): Promise<{ status: number; type: string; body: string }>;
}

export interface HttpTransportOptions extends NetworkTransportOptions {
  maxBodyBytes: number;
  /** How long a keep-alive connection may stay idle between requests; 0 never closes it. */
  idleTimeoutMs: number;
  /** How long a client may take to send a whole request, headers and body (setting http.request_timeout_s); then 408. */
  requestTimeoutMs: number;
  /** Browser origins allowed besides the server's own (setting http.allowed_origins). */
  allowedOrigins: readonly string[];
  /** GET endpoints by path. */
  endpoints: ReadonlyMap<string, HttpEndpoint>;
  /** The faces beside JSON-RPC, asked in order before it; read at each request, so a server can add them once its model is loaded. */
  routes?: () => readonly HttpRoute[];
}

/** The errors by JSON-RPC code, for the status of a reply that carries one. */
const SPEC_OF_CODE = new Map<number, ErrorSpec>(ERROR_NAMES.map((name) => [ERRORS[name].code, ERRORS[name]]));

/** The status and headers for a reply: a single refusal keeps its HTTP meaning (401, 403, 429 with Retry-After). */
function statusOf(reply: JsonRpcResponse | JsonRpcResponse[]): { status: number; headers: Record<string, string> } {
  if (Array.isArray(reply) || !('error' in reply)) return { status: 200, headers: {} };
  const spec = SPEC_OF_CODE.get(reply.error.code);
  const status = spec?.refusal ? spec.status! : 200;
  return { status, headers: refusalHeaders(status, reply.error.data) };
}

/** Answers a request refused before its body is read, and discards the body. */
function refuse(req: IncomingMessage, res: ServerResponse, error: ServerError): void {
  sendError(res, error, 'jsonrpc');
  req.resume();
}

/**
 * Whether the client of one request went away before its reply was finished. The AbortSignal
 * is made only when asked for: most requests (a status, a poll that has its chunk) never need
 * one, and an AbortController per request was a visible share of a trivial RPC's CPU.
 */
class ClientGone {
  #controller: AbortController | undefined;
  #gone = false;

  constructor(res: ServerResponse) {
    res.once('close', () => {
      if (res.writableFinished) return;
      this.#gone = true;
      this.#controller?.abort();
    });
  }

  get aborted(): boolean {
    return this.#gone;
  }

  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    if (this.#gone) this.#controller.abort();
    return this.#controller.signal;
  }
}

/**
 * JSON-RPC over HTTP: `POST /` with one message or a batch in the body, the response in the
 * reply. Bodies over the limit are refused (413) without being read, from Content-Length when
 * given and while streaming otherwise. A request whose client goes away is aborted. With API keys,
 * every POST needs `Authorization: Bearer <key>` (401 otherwise, before the body is read). GET
 * serves the endpoints beside JSON-RPC (`/health`, `/metrics`).
 */
export class HttpTransport implements Transport {
  readonly name = 'http';
  readonly #options: HttpTransportOptions;
  readonly #server: Server;
  readonly #origins: ReadonlySet<string>;
  #sockets = 0;
  #closed: Promise<void> | undefined;
  /** The answers not yet finished; once closing, each one's connection closes when it is sent. */
  readonly #answering = new Set<ServerResponse>();

  constructor(options: HttpTransportOptions) {
    this.#options = options;
    this.#origins = new Set(options.allowedOrigins);
    const timeout = options.requestTimeoutMs;
    const serverOptions = {
      keepAliveTimeout: options.idleTimeoutMs,
      requestTimeout: timeout,
      headersTimeout: timeout,
      // Node checks these timeouts only this often (30 s by default).
      connectionsCheckingInterval: Math.min(30_000, Math.max(50, timeout / 4)),
    };
    this.#server = createServer(serverOptions, (req, res) => this.#onRequest(req, res));
    this.#server.on('connection', (socket) => {
      this.#sockets++;
      socket.once('close', () => this.#sockets--);
    });
  }

  get openConnections(): number {
    return this.#sockets;
  }

  start(): Promise<string> {
    return listen(this.#server, this.#options.host, this.#options.port);
  }

  /** The bound port, while listening: pages served here may open the WebSocket transport. */
  get port(): number | undefined {
    return (this.#server.address() as AddressInfo | null)?.port;
  }

  /** HTTP keeps listening while the server drains: buffered streams must stay pollable, by clients that open a connection per poll too. */
  stopAccepting(): void {}

  /**
   * Stops accepting and closes the idle connections at once. A request in flight gets its answer
   * (a long poll woken by the streams' end carries their final chunks), sent with `Connection:
   * close`; a connection still open `LINGER_MS` later (a stream of events) is cut off.
   */
  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeIdleConnections();
      for (const res of this.#answering) this.#closeAfter(res);
      setTimeout(() => this.#server.closeAllConnections(), LINGER_MS).unref();
    });
    return this.#closed;
  }

  /** Closes `res`'s connection once it is answered: by header if its head is not sent yet, else after it ends. */
  #closeAfter(res: ServerResponse): void {
    if (!res.headersSent) res.setHeader('connection', 'close');
    else res.once('finish', () => setImmediate(() => this.#server.closeIdleConnections()));
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    this.#answering.add(res);
    res.once('close', () => this.#answering.delete(res));
    if (this.#closed) this.#closeAfter(res);
    const foreign = foreignOrigin(req.headers, this.#origins);
    if (foreign) {
      refuse(req, res, foreign);
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    try {
      // Routes decode the path: "%ZZ" would throw a URIError there.
      decodeURIComponent(url.pathname);
    } catch {
      sendError(res, fault('INVALID_REQUEST', 'envelope', { detail: 'the URL path has malformed percent-encoding' }), 'jsonrpc', 400);
      req.resume();
      return;
    }
    const method = req.method ?? 'GET';
    const route = this.#options.routes?.().find((r) => r.matches(method, url.pathname, req.headers));
    if (route) {
      void this.#route(route, url, req, res);
      return;
    }
    const endpoint = method === 'GET' ? this.#options.endpoints.get(url.pathname) : undefined;
    if (endpoint) {
      void this.#serve(endpoint, req, res);
      return;
    }
    if (method !== 'POST') {
      res.setHeader('allow', 'POST');
      sendError(res, fault('INVALID_REQUEST', 'not_post'), 'jsonrpc', 405);
      return;
    }
    void this.#jsonRpc(req, res);
  }

  /** `POST /`: checks the key (before the body is read), counts the request against its client's limit, reads the body and answers it. */
  async #jsonRpc(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { gate, maxBodyBytes, log } = this.#options;
    let peer: ClientEnd;
    let body: Buffer;
    try {
      peer = { address: req.socket.remoteAddress ?? 'unknown', key: gate.keyFromHeader(req.headers.authorization, 'refuse') };
      res.once('close', gate.admitConnection(peer, this.name));
    } catch (err) {
      if (!(err instanceof ServerError)) throw err;
      refuse(req, res, err);
      return;
    }
    try {
      body = await readBody(req, maxBodyBytes);
    } catch (err) {
      if (err instanceof ServerError) sendError(res, err, 'jsonrpc');
      else res.destroy();
      return;
    }
    const gone = new ClientGone(res);
    try {
      const reply = await this.#options.handle(body, {
        transport: this.name,
        get signal() {
          return gone.signal;
        },
        peer,
      });
      if (gone.aborted) return;
      if (reply === undefined) {
        res.writeHead(204).end();
      } else {
        const { status, headers } = statusOf(reply);
        sendJson(res, status, reply, headers);
      }
    } catch (err) {
      log.error({ err }, 'http: unexpected failure');
      if (!res.headersSent) sendError(res, undefined, 'jsonrpc', 500);
    }
  }

  async #route(route: HttpRoute, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const gone = new ClientGone(res).signal;
    const limit = this.#options.maxBodyBytes;
    const log = this.#options.log;
    try {
      const address = req.socket.remoteAddress ?? 'unknown';
      await route.serve({ req, res, url, address, signal: gone, readBody: () => readBody(req, limit), log });
    } catch (err) {
      log.error({ err, path: url.pathname }, 'http: route failed');
      if (!res.headersSent) sendError(res, undefined, 'jsonrpc', 500);
      else res.end();
    }
  }

  async #serve(endpoint: HttpEndpoint, req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const { gate } = this.#options;
      const key = endpoint.keyed ? gate.keyFromHeader(req.headers.authorization, 'refuse') : undefined;
      if (endpoint.admin && gate.keysRequired && !key?.admin) throw fault('FORBIDDEN', 'admin_view', { what: `GET ${req.url ?? ''}` });
      const { status, type, body } = await endpoint.serve();
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' }).end(body);
    } catch (err) {
      if (err instanceof ServerError) {
        refuse(req, res, err);
        return;
      }
      this.#options.log.error({ err }, 'http: endpoint failed');
      if (!res.headersSent) sendError(res, undefined, 'jsonrpc', 500);
    }
  }
}
