import { STATUS_CODES, createServer, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { ApiKey, ClientEnd } from '../auth.js';
import { fault, type ServerError } from '../errors.js';
import { errorResponse } from '../jsonrpc/message.js';
import { errorAnswer } from './http-route.js';
import type { LiveConnection } from './live-connection.js';
import { foreignOrigin } from './origin.js';
import { SocketTransport, type SocketTransportOptions } from './socket-transport.js';

/** The message limit, the origins, and what every socket transport takes. */
export interface WsTransportOptions extends SocketTransportOptions {
  /** Largest message accepted, in bytes (the WebSocket `maxPayload`). */
  maxMessageBytes: number;
  /** Browser origins allowed besides the server's own (setting http.allowed_origins). */
  allowedOrigins: readonly string[];
  /** The ports this server serves pages on (the playground on the HTTP port): their origins may open a WebSocket. */
  pagePorts?: () => readonly number[];
}

/** WebSocket close codes (RFC 6455, section 7.4.1). */
const CloseCode = { NORMAL: 1000, GOING_AWAY: 1001, TRY_AGAIN_LATER: 1013 } as const;

/** Refuses a handshake (a wrong key: 401; a foreign origin: 403) with the JSON-RPC error, as on the HTTP transport. */
function refuseHandshake(socket: Duplex, error: ServerError): void {
  const { status, headers, body: answer } = errorAnswer(error, 'jsonrpc');
  const body = JSON.stringify(answer);
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
  ];
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
}

/**
 * JSON-RPC over WebSocket, one message per text frame. Binary frames are answered with -32600 and
 * the connection stays open. A message over the limit closes the connection with 1009 (Message
 * Too Big), which the `ws` library sends before we see the message. Closing the socket aborts
 * what the connection started.
 */
export class WsTransport extends SocketTransport<WebSocket> {
  readonly name = 'ws';
  protected readonly title = 'WebSocket';
  readonly #http: Server;
  readonly #wss: WebSocketServer;

  constructor(options: WsTransportOptions) {
    const http = createServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' }).end('This port speaks JSON-RPC over WebSocket\n');
    });
    super(options, http);
    this.#http = http;
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxMessageBytes,
      perMessageDeflate: false,
      clientTracking: false,
      // Invalid UTF-8 is the dispatcher's to answer (-32700), so the connection stays usable.
      skipUTF8Validation: true,
    });
    const origins = new Set(options.allowedOrigins);
    http.on('upgrade', (req, socket, head) => {
      socket.on('error', (err) => options.log.debug({ err }, 'ws: socket error during upgrade'));
      const foreign = foreignOrigin(req.headers, origins, options.pagePorts?.() ?? []);
      if (foreign) {
        refuseHandshake(socket, foreign);
        return;
      }
      // Without an Authorization header the connection opens unauthenticated (it may call
      // `authenticate`, as browsers cannot set the header); a wrong key is refused with 401.
      let key: ApiKey | undefined;
      try {
        key = options.gate.keyFromHeader(req.headers.authorization, 'allow');
      } catch (err) {
        refuseHandshake(socket, err as ServerError);
        return;
      }
      const peer: ClientEnd = { address: req.socket.remoteAddress ?? 'unknown', key };
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#serve(ws, peer));
    });
  }

  protected end(ws: WebSocket): void {
    ws.close(CloseCode.GOING_AWAY, 'SHUTTING_DOWN');
  }

  protected cut(ws: WebSocket): void {
    ws.terminate();
  }

  protected override closeServer(): void {
    this.#http.closeAllConnections();
    this.#wss.close();
  }

  #serve(ws: WebSocket, peer: ClientEnd): void {
    ws.on('error', (err) => this.options.log.debug({ err }, 'ws: connection error'));
    const wire = {
      write: (text: string) => ws.send(text, () => connection?.drained()),
      get pendingBytes() {
        return ws.bufferedAmount;
      },
      pause: () => ws.pause(),
      resume: () => ws.resume(),
      // The reason itself went out as a JSON-RPC message; the close frame carries its string code.
      end: (reason?: ServerError) => ws.close(CloseCode.NORMAL, reason?.name),
    };
    const connection: LiveConnection | undefined = this.accept(ws, peer, wire, (error) => {
      ws.send(JSON.stringify(errorResponse(null, error)));
      ws.close(CloseCode.TRY_AGAIN_LATER, error.name);
    });
    if (!connection) return;
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) connection.send(errorResponse(null, fault('INVALID_REQUEST', 'binary_frame')));
      else connection.receive(data as Buffer);
    });
  }
}
