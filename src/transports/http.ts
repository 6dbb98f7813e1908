import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { ErrorCodes } from '../jsonrpc/errors.js';
import { listen } from './listen.js';
import type { MessageHandler, Transport } from './transport.js';

export interface HttpTransportOptions {
  host: string;
  port: number;
  maxBodyBytes: number;
  handle: MessageHandler;
  log: Logger;
}

/** How long a refused oversized request may keep sending before its connection is cut. */
const LINGER_MS = 2000;

function sendJson(res: ServerResponse, status: number, body: unknown, close = false): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...(close ? { connection: 'close' } : {}),
  });
  res.end(text);
}

function rpcError(code: number, message: string): unknown {
  return { jsonrpc: '2.0', id: null, error: { code, message } };
}

/**
 * JSON-RPC over HTTP: `POST /` with one message or a batch in the body, the response in the
 * reply. Bodies over the limit are refused (413) without being read, from Content-Length when
 * given and while streaming otherwise. A request whose client goes away is aborted.
 */
export class HttpTransport implements Transport {
  readonly name = 'http';
  readonly #options: HttpTransportOptions;
  readonly #server: Server;
  #closed: Promise<void> | undefined;

  constructor(options: HttpTransportOptions) {
    this.#options = options;
    this.#server = createServer((req, res) => this.#onRequest(req, res));
  }

  start(): Promise<string> {
    return listen(this.#server, this.#options.host, this.#options.port);
  }

  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    return this.#closed;
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      sendJson(res, 405, rpcError(ErrorCodes.INVALID_REQUEST, 'Use POST with a JSON-RPC 2.0 message in the body'));
      return;
    }
    const limit = this.#options.maxBodyBytes;
    const tooLarge = (): void => {
      sendJson(res, 413, rpcError(ErrorCodes.INVALID_REQUEST, `Request body exceeds the limit of ${limit} bytes`), true);
      // Answer at once, then discard (never buffer) what is still arriving, so the client reads the
      // reply instead of a connection reset; a client that keeps sending is cut off shortly.
      req.removeAllListeners('data');
      req.resume();
      setTimeout(() => req.socket.destroy(), LINGER_MS).unref();
    };
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      tooLarge();
      return;
    }
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (part: Buffer) => {
      size += part.length;
      if (size > limit) {
        req.removeAllListeners('data');
        tooLarge();
        return;
      }
      parts.push(part);
    });
    req.on('end', () => {
      if (size <= limit) void this.#respond(Buffer.concat(parts), res);
    });
    req.on('error', () => res.destroy());
  }

  async #respond(body: Buffer, res: ServerResponse): Promise<void> {
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    try {
      const reply = await this.#options.handle(body, { transport: this.name, signal: gone.signal });
      if (gone.signal.aborted) return;
      if (reply === undefined) {
        res.writeHead(204).end();
      } else {
        sendJson(res, 200, reply);
      }
    } catch (err) {
      this.#options.log.error({ err }, 'http: unexpected failure');
      if (!res.headersSent) sendJson(res, 500, rpcError(ErrorCodes.INTERNAL_ERROR, 'Internal error'));
    }
  }
}
