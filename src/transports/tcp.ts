import { createServer, type Socket } from 'node:net';
import type { ClientEnd } from '../auth.js';
import { errorResponse } from '../jsonrpc/message.js';
import { LINGER_MS } from './http-route.js';
import { readLines } from './live-connection.js';
import { SocketTransport, type SocketTransportOptions } from './socket-transport.js';

/** The line limit, and what every socket transport takes. */
export interface TcpTransportOptions extends SocketTransportOptions {
  /** Longest line (one message) accepted, in bytes. */
  maxLineBytes: number;
}

/** Bytes one tick may gather under the cork before they are sent anyway. */
const CORK_BYTES = 16_384;

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
export class TcpTransport extends SocketTransport<Socket> {
  readonly name = 'tcp';
  protected readonly title = 'TCP';
  readonly #maxLineBytes: number;

  constructor(options: TcpTransportOptions) {
    const server = createServer({ allowHalfOpen: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 }, (socket) =>
      this.#serve(socket),
    );
    super(options, server);
    this.#maxLineBytes = options.maxLineBytes;
  }

  protected end(socket: Socket): void {
    endGracefully(socket);
  }

  protected cut(socket: Socket): void {
    socket.destroy();
  }

  #serve(socket: Socket): void {
    const maxLineBytes = this.#maxLineBytes;
    socket.on('error', (err) => this.options.log.debug({ err }, 'tcp: socket error'));
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
    const connection = this.accept(socket, peer, wire, (error) => endGracefully(socket, `${JSON.stringify(errorResponse(null, error))}\n`));
    if (!connection) return;
    readLines(socket, connection, { maxLineBytes, setting: 'tcp.max_line_bytes' }, (error) => connection.closeWith(error));
    socket.on('drain', () => connection.drained());
  }
}
