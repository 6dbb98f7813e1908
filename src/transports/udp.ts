import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { encodeJson } from '../jsonrpc/large-id.js';
import { isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import type { Connection } from '../jsonrpc/connection.js';
import { RpcError } from '../jsonrpc/errors.js';
import { errorResponse, type JsonRpcResponse } from '../jsonrpc/message.js';
import { formatAddress } from './listen.js';
import type { MessageHandler, Transport } from './transport.js';

export interface UdpTransportOptions {
  host: string;
  port: number;
  /** Largest datagram received or sent, in bytes. */
  maxDatagramBytes: number;
  /** Bytes of datagrams queued for sending at most, over all peers. */
  maxSendBufferBytes: number;
  handle: MessageHandler;
  log: Logger;
}

const DATAGRAM_SETTING = 'udp.max_datagram_bytes';

/** A reply that would not fit in one datagram becomes an error that fits, for the same request. */
function tooLargeReply(message: JsonRpcResponse | JsonRpcResponse[], bytes: number, limit: number): JsonRpcResponse {
  const error = new RpcError(
    'INVALID_REQUEST',
    `The response is ${bytes} bytes, over the datagram limit of ${limit} bytes (setting ${DATAGRAM_SETTING}); use a stream transport for this request`,
    { max_datagram_bytes: limit },
  );
  return errorResponse(Array.isArray(message) ? null : message.id, error);
}

/**
 * JSON-RPC over UDP: one message per datagram, each reply (and each chunk of a stream) in its own
 * datagram to the sender's address. A datagram over the limit is answered with an error naming it.
 */
export class UdpTransport implements Transport {
  readonly name = 'udp';
  readonly #options: UdpTransportOptions;
  readonly #socket: Socket;
  readonly #closing = new AbortController();
  #pendingBytes = 0;
  #closed: Promise<void> | undefined;

  constructor(options: UdpTransportOptions) {
    this.#options = options;
    this.#socket = createSocket(isIPv6(options.host) ? 'udp6' : 'udp4');
    this.#socket.on('message', (data, sender) => this.#receive(data, sender));
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.#socket.once('error', reject);
      this.#socket.bind(this.#options.port, this.#options.host, () => {
        this.#socket.off('error', reject);
        resolve();
      });
    });
    this.#socket.on('error', (err) => this.#options.log.warn({ err }, 'udp: socket error'));
    return formatAddress(this.#socket.address());
  }

  /** UDP has no connections. */
  get openConnections(): number {
    return 0;
  }

  /** UDP keeps answering while the server drains, so clients can still repair and finish their streams with `poll`. */
  stopAccepting(): void {}

  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.#closing.abort();
      this.#socket.close(() => resolve());
    });
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #receive(data: Buffer, sender: RemoteInfo): void {
    const peer = this.#peer(sender);
    const limit = this.#options.maxDatagramBytes;
    if (data.length > limit) {
      const error = new RpcError(
        'INVALID_REQUEST',
        `Invalid Request: the datagram is ${data.length} bytes, over the limit of ${limit} bytes (setting ${DATAGRAM_SETTING})`,
        { max_datagram_bytes: limit },
      );
      peer.send(errorResponse(null, error));
      return;
    }
    void this.#dispatch(data, peer, sender);
  }

  /** Each datagram stands alone: over UDP a key travels in every request (`api_key`), never in a session. */
  async #dispatch(data: Buffer, peer: Connection, sender: RemoteInfo): Promise<void> {
    try {
      const origin = {
        transport: this.name,
        signal: this.#closing.signal,
        connection: peer,
        peer: { address: sender.address, key: undefined },
      };
      const reply = await this.#options.handle(data, origin);
      if (reply !== undefined) peer.send(reply);
    } catch (err) {
      this.#options.log.error({ err, connection: peer.id }, 'udp: unexpected failure handling a message');
    }
  }

  /**
   * The sender of a datagram, as a connection: replies and chunks go back to its address. It is
   * lossy, so streams started through it are buffered and gaps are repaired with `poll`. It never
   * closes on its own (UDP has no disconnects), only with the transport.
   */
  #peer(sender: RemoteInfo): Connection {
    return {
      id: `udp:${formatAddress(sender)}`,
      lossy: true,
      closed: this.#closing.signal,
      sendLimit: { bytes: this.#options.maxSendBufferBytes, setting: 'connections.max_send_buffer_bytes' },
      send: (message) => this.#sendTo(sender, message),
      hold: () => () => {},
    };
  }

  /** Sends one datagram; false once the datagrams still queued exceed the cap. */
  #sendTo(to: RemoteInfo, message: JsonRpcResponse | JsonRpcResponse[]): boolean {
    if (this.#closing.signal.aborted) return false;
    const limit = this.#options.maxDatagramBytes;
    let data = Buffer.from(encodeJson(message));
    if (data.length > limit) data = Buffer.from(JSON.stringify(tooLargeReply(message, data.length, limit)));
    this.#pendingBytes += data.length;
    this.#socket.send(data, to.port, to.address, (err) => {
      this.#pendingBytes -= data.length;
      if (err) this.#options.log.debug({ err, to: formatAddress(to) }, 'udp: send failed');
    });
    return this.#pendingBytes <= this.#options.maxSendBufferBytes;
  }
}
