import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { RpcError } from '../jsonrpc/errors.js';
import { errorResponse } from '../jsonrpc/message.js';
import { LiveConnection, tooManyConnections, type ConnectionLimits } from './live-connection.js';
import { listen } from './listen.js';
import type { MessageHandler, Transport } from './transport.js';

export interface WsTransportOptions {
  host: string;
  port: number;
  /** Largest message accepted, in bytes (the WebSocket `maxPayload`). */
  maxMessageBytes: number;
  /** Open connections at most. */
  maxConnections: number;
  limits: ConnectionLimits;
  handle: MessageHandler;
  log: Logger;
}

/** WebSocket close codes (RFC 6455, section 7.4.1). */
const CloseCode = { NORMAL: 1000, TRY_AGAIN_LATER: 1013 } as const;

/**
 * JSON-RPC over WebSocket, one message per text frame. Binary frames are answered with -32600 and
 * the connection stays open. A message over the limit closes the connection with 1009 (Message
 * Too Big), which the `ws` library sends before we see the message. Closing the socket aborts
 * what the connection started.
 */
export class WsTransport implements Transport {
  readonly name = 'ws';
  readonly #options: WsTransportOptions;
  readonly #http: Server;
  readonly #wss: WebSocketServer;
  readonly #connections = new Map<WebSocket, LiveConnection>();
  #accepted = 0;
  #closed: Promise<void> | undefined;

  constructor(options: WsTransportOptions) {
    this.#options = options;
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxMessageBytes,
      perMessageDeflate: false,
      clientTracking: false,
      // Invalid UTF-8 is the dispatcher's to answer (-32700), so the connection stays usable.
      skipUTF8Validation: true,
    });
    this.#http = createServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' }).end('This port speaks JSON-RPC over WebSocket\n');
    });
    this.#http.on('upgrade', (req, socket, head) => {
      socket.on('error', (err) => options.log.debug({ err }, 'ws: socket error during upgrade'));
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws));
    });
  }

  start(): Promise<string> {
    return listen(this.#http, this.#options.host, this.#options.port);
  }

  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.#http.close(() => resolve());
      this.#http.closeAllConnections();
      for (const [ws, connection] of this.#connections) {
        connection.dispose();
        ws.terminate();
      }
      this.#wss.close();
    });
    return this.#closed;
  }

  #accept(ws: WebSocket): void {
    const { maxConnections, limits, handle, log } = this.#options;
    ws.on('error', (err) => log.debug({ err }, 'ws: connection error'));
    if (this.#connections.size >= maxConnections) {
      const error = tooManyConnections('WebSocket', maxConnections);
      ws.send(JSON.stringify(errorResponse(null, error)));
      ws.close(CloseCode.TRY_AGAIN_LATER, error.name);
      return;
    }
    const connection: LiveConnection = new LiveConnection({
      id: `ws#${++this.#accepted}`,
      transport: this.name,
      handle,
      limits,
      log,
      wire: {
        write: (text) => ws.send(text, () => connection.drained()),
        get pendingBytes() {
          return ws.bufferedAmount;
        },
        pause: () => ws.pause(),
        resume: () => ws.resume(),
        // The reason itself went out as a JSON-RPC message; the close frame carries its string code.
        end: (reason) => ws.close(CloseCode.NORMAL, reason?.name),
      },
    });
    this.#connections.set(ws, connection);
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (!isBinary) {
        connection.receive(data as Buffer);
        return;
      }
      const error = new RpcError(
        'INVALID_REQUEST',
        'Invalid Request: binary frames are not accepted; send each JSON-RPC message as a text frame',
      );
      connection.send(errorResponse(null, error));
    });
    ws.on('close', () => {
      connection.dispose();
      this.#connections.delete(ws);
    });
  }
}
