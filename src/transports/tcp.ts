import { createServer, type Socket } from 'node:net';
import type { ClientEnd } from '../auth.js';
import type { ServerError } from '../errors.js';
import { errorResponse } from '../jsonrpc/message.js';
import { readLines } from './live-connection.js';
import { Listener } from './listen.js';
import { LINGER_MS, TrackedConnections, type TrackedConnectionsOptions } from './tracked-connections.js';
import type { Transport } from './transport.js';

/** The host and port, the line limit, and what every socket transport's connections take (`TrackedConnectionsOptions`). */
export interface TcpTransportOptions extends Omit<TrackedConnectionsOptions, 'transport' | 'title'> {
  host: string;
  port: number;
  /** Longest line (one message) accepted, in bytes. */
  maxLineBytes: number;
}

/** Bytes one tick may gather under the cork before they are sent anyway. */
const CORK_BYTES = 16_384;

/** Tells a connection we will not serve why, then closes it. */
function turnAway(socket: Socket, error: ServerError): void {
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
  readonly #listener: Listener;
  readonly #connections: TrackedConnections<Socket>;
  #closed: Promise<void> | undefined;

  constructor(options: TcpTransportOptions) {
    this.#options = options;
    this.#connections = new TrackedConnections({ ...options, transport: this.name, title: 'TCP' });
    const server = createServer({ allowHalfOpen: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 }, (socket) =>
      this.#accept(socket),
    );
    this.#listener = new Listener(server, options.host, options.port);
  }

  start(): Promise<string> {
    return this.#listener.start();
  }

  get openConnections(): number {
    return this.#connections.size;
  }

  stopAccepting(): void {
    void this.#listener.stop();
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      const stopped = this.#listener.stop();
      await this.#connections.closeAll(
        (socket) => endGracefully(socket),
        (socket) => socket.destroy(),
      );
      await stopped;
    })();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #accept(socket: Socket): void {
    const { maxLineBytes, log } = this.#options;
    socket.on('error', (err) => log.debug({ err }, 'tcp: socket error'));
    const peer: ClientEnd = { address: socket.remoteAddress ?? 'unknown', key: undefined };
    // Messages written in one tick (chunks of several streams, replies) leave in one send. Bytes
    // held by the cork are not "pending" (the client has not had the chance to read them yet);
    // a tick that writes a lot (a replay) sends as it goes.
    let corkedAt: number | undefined;
    const uncork = (): void => {
      if (corkedAt === undefined) return;
      corkedAt = undefined;
      socket.uncork();
    };
    const wire = {
      write: (text: string) => {
        if (corkedAt === undefined) {
          corkedAt = socket.writableLength;
          socket.cork();
          process.nextTick(uncork);
        }
        socket.write(`${text}\n`);
        if (socket.writableLength - corkedAt >= CORK_BYTES) uncork();
      },
      get pendingBytes() {
        return corkedAt ?? socket.writableLength;
      },
      pause: () => socket.pause(),
      resume: () => socket.resume(),
      end: () => endGracefully(socket),
    };
    const connection = this.#connections.accept(socket, peer, wire, (error) => turnAway(socket, error));
    if (!connection) return;
    readLines(socket, connection, { maxLineBytes, setting: 'tcp.max_line_bytes' }, (error) => {
      connection.closeWith(error);
      return 'stop';
    });
    socket.on('drain', () => connection.drained());
    socket.on('close', () => this.#connections.closed(socket));
  }
}
