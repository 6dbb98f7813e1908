import type { EventEmitter } from 'node:events';
import type { Server } from 'node:net';
import type { ClientEnd } from '../auth.js';
import { fault, type ServerError } from '../errors.js';
import { LINGER_MS } from './http-route.js';
import { LiveConnection, type LiveConnectionOptions, type Wire } from './live-connection.js';
import { listen, type NetworkTransportOptions, type Transport } from './transport.js';

/** What every socket transport (TCP, WebSocket) takes. */
export interface SocketTransportOptions extends NetworkTransportOptions, Pick<LiveConnectionOptions, 'limits'> {
  /** Open connections at most (setting connections.max_connections). */
  maxConnections: number;
  /** How long a connection may stay without a valid key while keys are required (setting auth.timeout_s), in ms. */
  authTimeoutMs: number;
}

/**
 * A transport of sockets (TCP, WebSocket) on one listening server, bound once and stopped once. It
 * accepts a socket: counts it against the transport's limit and its client's, turns it away beyond
 * either, and otherwise makes its `LiveConnection` and tracks it until the socket closes or the
 * transport does. A subclass frames the messages and says how to end and cut a socket.
 */
export abstract class SocketTransport<S extends EventEmitter> implements Transport {
  abstract readonly name: string;
  /** The transport as messages name it ("TCP", "WebSocket"). */
  protected abstract readonly title: string;
  protected readonly options: SocketTransportOptions;
  readonly #server: Server;
  readonly #open = new Map<S, { connection: LiveConnection; release: () => void; authTimer?: NodeJS.Timeout }>();
  #accepted = 0;
  #stopped: Promise<void> | undefined;
  #closed: Promise<void> | undefined;

  constructor(options: SocketTransportOptions, server: Server) {
    this.options = options;
    this.#server = server;
  }

  /** Ends `socket` once what was already written has gone out. */
  protected abstract end(socket: S): void;
  /** Cuts `socket` off at once. */
  protected abstract cut(socket: S): void;

  start(): Promise<string> {
    return listen(this.#server, this.options.host, this.options.port);
  }

  get openConnections(): number {
    return this.#open.size;
  }

  stopAccepting(): void {
    void this.#stop();
  }

  /**
   * Every connection is disposed (it sends nothing more) and its socket ended once what was already
   * written has gone out (the final chunks of the streams a shutdown cut short). A socket still open
   * `LINGER_MS` later is cut. Resolves once all are closed and the listener with them.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      const stopped = this.#stop();
      await Promise.all(
        [...this.#open].map(
          ([socket, { connection, authTimer }]) =>
            new Promise<void>((resolve) => {
              clearTimeout(authTimer);
              connection.dispose();
              const lingering = setTimeout(() => this.cut(socket), LINGER_MS);
              socket.once('close', () => {
                clearTimeout(lingering);
                resolve();
              });
              this.end(socket);
            }),
        ),
      );
      this.closeServer();
      await stopped;
    })();
    return this.#closed;
  }

  /** Called once every connection has closed, before the listener's close is awaited. */
  protected closeServer(): void {}

  /**
   * Admits `socket` from `peer`, speaking through `wire`. Beyond a limit, hands the refusal to
   * `turnAway` (which tells the client and closes the socket) and returns undefined.
   */
  protected accept(socket: S, peer: ClientEnd, wire: Wire, turnAway: (error: ServerError) => void): LiveConnection | undefined {
    const { maxConnections, limits, handle, gate, log } = this.options;
    const transport = this.name;
    let release: () => void;
    try {
      if (this.#open.size >= maxConnections) {
        throw fault(
          'TOO_MANY_CONNECTIONS',
          'transport',
          { max_connections: maxConnections, transport: this.title },
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
    socket.once('close', () => this.#forget(socket));
    return connection;
  }

  /**
   * While keys are required, a connection without one counts against its address and has
   * `authTimeoutMs` to authenticate; once it does, its address count is released (its key's was taken).
   */
  #awaitKey(connection: LiveConnection, peer: ClientEnd, releaseAddress: () => void): { authTimer?: NodeJS.Timeout } {
    const { gate, authTimeoutMs } = this.options;
    if (!gate.keysRequired || peer.key) return {};
    const authTimer = setTimeout(() => {
      if (!peer.key) connection.closeWith(fault('UNAUTHORIZED', 'timeout', { timeout_s: authTimeoutMs / 1000 }));
    }, authTimeoutMs).unref();
    peer.authenticated = () => {
      clearTimeout(authTimer);
      releaseAddress();
    };
    return { authTimer };
  }

  /** The socket has closed: its connection is disposed and stops counting. */
  #forget(socket: S): void {
    const open = this.#open.get(socket);
    if (!open) return;
    open.connection.dispose();
    clearTimeout(open.authTimer);
    this.#open.delete(socket);
    open.release();
  }

  /** Takes no new connections; resolves once the listener is closed. Idempotent. */
  #stop(): Promise<void> {
    this.#stopped ??= new Promise<void>((resolve) => this.#server.close(() => resolve()));
    return this.#stopped;
  }
}
