import type { Logger } from 'pino';
import type { ClientEnd } from '../auth.js';
import type { ClientGate } from '../clients.js';
import { fault, type ServerError } from '../errors.js';
import { LiveConnection, type ConnectionLimits, type Wire } from './live-connection.js';
import type { MessageHandler } from './transport.js';

/** How long a socket we have ended may linger (the peer not reading, or not closing its side) before it is cut off. */
export const LINGER_MS = 2000;

/** What the transports' sockets (a TCP socket, a WebSocket) have in common: they say when they have closed. */
export interface ClosingSocket {
  once(event: 'close', listener: () => void): unknown;
}

export interface TrackedConnectionsOptions {
  /** The transport's name ("tcp", "ws"): connection ids are `${transport}#${n}`. */
  transport: string;
  /** The transport as messages name it ("TCP", "WebSocket"). */
  title: string;
  /** Open connections at most (setting connections.max_connections). */
  maxConnections: number;
  /** How long a connection may stay without a valid key while keys are required (setting auth.timeout_s), in ms. */
  authTimeoutMs: number;
  limits: ConnectionLimits;
  handle: MessageHandler;
  gate: ClientGate;
  log: Logger;
}

/**
 * The open connections of one socket transport (TCP, WebSocket), by socket. It accepts a socket:
 * counts it against the transport's limit and its client's, turns it away beyond either, and
 * otherwise makes its `LiveConnection` and tracks it until the socket closes or the transport does.
 */
export class TrackedConnections<S extends ClosingSocket> {
  readonly #options: TrackedConnectionsOptions;
  readonly #open = new Map<S, { connection: LiveConnection; release: () => void; authTimer?: NodeJS.Timeout }>();
  #accepted = 0;

  constructor(options: TrackedConnectionsOptions) {
    this.#options = options;
  }

  get size(): number {
    return this.#open.size;
  }

  /**
   * Admits `socket` from `peer`, speaking through `wire`. Beyond a limit, hands the refusal to
   * `turnAway` (which tells the client and closes the socket) and returns undefined.
   */
  accept(socket: S, peer: ClientEnd, wire: Wire, turnAway: (error: ServerError) => void): LiveConnection | undefined {
    const { transport, title, maxConnections, limits, handle, gate, log } = this.#options;
    let release: () => void;
    try {
      if (this.#open.size >= maxConnections) {
        throw fault(
          'TOO_MANY_CONNECTIONS',
          'transport',
          { max_connections: maxConnections, transport: title },
          { max_connections: maxConnections, retry_after: 1 },
        );
      }
      release = gate.admitConnection(peer, transport);
    } catch (err) {
      turnAway(err as ServerError);
      return undefined;
    }
    const connection = new LiveConnection({ id: `${transport}#${++this.#accepted}`, transport, peer, handle, limits, log, wire });
    this.#open.set(socket, { connection, release, ...this.#awaitKey(connection, peer, release) });
    return connection;
  }

  /**
   * While keys are required, a connection without one counts against its address and has
   * `authTimeoutMs` to authenticate; once it does, its address count is released (its key's was taken).
   */
  #awaitKey(connection: LiveConnection, peer: ClientEnd, releaseAddress: () => void): { authTimer?: NodeJS.Timeout } {
    const { gate, authTimeoutMs } = this.#options;
    if (!gate.keysRequired || peer.key) return {};
    const authTimer = setTimeout(() => {
      if (!peer.key) connection.closeWith(fault('UNAUTHORIZED', 'timeout', { timeout_s: authTimeoutMs / 1000 }));
    }, authTimeoutMs);
    authTimer.unref();
    peer.authenticated = () => {
      clearTimeout(authTimer);
      releaseAddress();
    };
    return { authTimer };
  }

  /** The socket has closed: its connection is disposed and stops counting. */
  closed(socket: S): void {
    const open = this.#open.get(socket);
    if (!open) return;
    open.connection.dispose();
    clearTimeout(open.authTimer);
    this.#open.delete(socket);
    open.release();
  }

  /**
   * The transport closes: every connection is disposed (it sends nothing more) and `end` closes its
   * socket once what was already written has gone out (the final chunks of the streams a shutdown
   * cut short). A socket still open `LINGER_MS` later is cut with `cut`. Resolves once all are closed.
   */
  async closeAll(end: (socket: S) => void, cut: (socket: S) => void): Promise<void> {
    const open = [...this.#open];
    await Promise.all(
      open.map(
        ([socket, { connection, authTimer }]) =>
          new Promise<void>((resolve) => {
            clearTimeout(authTimer);
            connection.dispose();
            const lingering = setTimeout(() => cut(socket), LINGER_MS);
            socket.once('close', () => {
              clearTimeout(lingering);
              resolve();
            });
            end(socket);
          }),
      ),
    );
  }
}
