import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Peer } from '../auth.js';
import type { ClientGate } from '../clients.js';
import type { RpcError } from '../jsonrpc/errors.js';
import { errorResponse } from '../jsonrpc/message.js';
import { LiveConnection, readLines, tooManyConnections, type ConnectionLimits } from './live-connection.js';
import { listen } from './listen.js';
import type { MessageHandler, Transport } from './transport.js';

export interface TcpTransportOptions {
  host: string;
  port: number;
  /** Longest line (one message) accepted, in bytes. */
  maxLineBytes: number;
  /** Open connections at most. */
  maxConnections: number;
  limits: ConnectionLimits;
  handle: MessageHandler;
  gate: ClientGate;
  log: Logger;
}

/** How long a socket we have ended may keep sending (discarded) before it is cut off. */
const LINGER_MS = 2000;

/** Tells a connection we will not serve why, then closes it. */
function turnAway(socket: Socket, error: RpcError): void {
  endGracefully(socket, `${JSON.stringify(errorResponse(null, error))}\n`);
}

/** Ends our side once what was written is flushed, discarding whatever the peer still sends, and cuts it off if it lingers. */
function endGracefully(socket: Socket, last = ''): void {
  socket.end(last);
  socket.removeAllListeners('data');
  socket.resume();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

/**
 * JSON-RPC over TCP, one message per line (NDJSON) both ways. A line over the limit is answered
 * with -32600, after which the connection is closed (once the reply is flushed); a malformed line gets -32700 and the
 * connection stays usable. When the peer closes or half-closes, what it started is aborted.
 */
export class TcpTransport implements Transport {
  readonly name = 'tcp';
  readonly #options: TcpTransportOptions;
  readonly #server: Server;
  readonly #connections = new Map<Socket, LiveConnection>();
  #accepted = 0;
  #listening: Promise<void> | undefined;
  #closed: Promise<void> | undefined;

  constructor(options: TcpTransportOptions) {
    this.#options = options;
    this.#server = createServer({ allowHalfOpen: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 }, (socket) =>
      this.#accept(socket),
    );
  }

  start(): Promise<string> {
    return listen(this.#server, this.#options.host, this.#options.port);
  }

  get openConnections(): number {
    return this.#connections.size;
  }

  stopAccepting(): void {
    void this.#stopListening();
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      const stopped = this.#stopListening();
      for (const [socket, connection] of this.#connections) {
        connection.dispose();
        socket.destroy();
      }
      await stopped;
    })();
    return this.#closed;
  }

  /** Resolves once the listener is closed and every connection has ended. */
  #stopListening(): Promise<void> {
    this.#listening ??= new Promise<void>((resolve) => this.#server.close(() => resolve()));
    return this.#listening;
  }

  #accept(socket: Socket): void {
    const { maxConnections, maxLineBytes, limits, handle, gate, log } = this.#options;
    socket.on('error', (err) => log.debug({ err }, 'tcp: socket error'));
    if (this.#connections.size >= maxConnections) {
      turnAway(socket, tooManyConnections('TCP', maxConnections));
      return;
    }
    const peer: Peer = { address: socket.remoteAddress ?? 'unknown', key: undefined };
    let release: () => void;
    try {
      release = gate.admitConnection(peer, this.name);
    } catch (err) {
      turnAway(socket, err as RpcError);
      return;
    }
    const connection = new LiveConnection({
      id: `tcp#${++this.#accepted}`,
      transport: this.name,
      peer,
      handle,
      limits,
      log,
      wire: {
        write: (text) => socket.write(`${text}\n`),
        get pendingBytes() {
          return socket.writableLength;
        },
        pause: () => socket.pause(),
        resume: () => socket.resume(),
        end: () => endGracefully(socket),
      },
    });
    this.#connections.set(socket, connection);
    readLines(socket, connection, { maxLineBytes, setting: 'tcp.max_line_bytes' }, (error) => {
      connection.closeWith(error);
      return 'stop';
    });
    socket.on('drain', () => connection.drained());
    socket.on('close', () => {
      connection.dispose();
      this.#connections.delete(socket);
      release();
    });
  }
}
