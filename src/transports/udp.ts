import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { isIPv6 } from 'node:net';
import { fault } from '../errors.js';
import type { Connection } from '../jsonrpc/connection.js';
import { encodeJson } from '../jsonrpc/large-id.js';
import { errorResponse, type JsonRpcId, type JsonRpcResponse } from '../jsonrpc/message.js';
import { answerOn, formatAddress, type NetworkTransportOptions, type Transport } from './transport.js';

/** The datagram limits and the guard; `gate` tells whether a datagram carries valid keys. */
export interface UdpTransportOptions extends NetworkTransportOptions {
  /** Largest datagram received or sent, in bytes. */
  maxDatagramBytes: number;
  /** Bytes of datagrams queued for sending at most, over all clients. */
  maxSendBufferBytes: number;
  /**
   * Bound beyond loopback: a datagram that does not carry a valid `api_key` in every request gets
   * no more bytes back than it had (replies that would exceed that are dropped) and starts no stream,
   * so the server cannot be used to amplify traffic towards a forged sender address.
   */
  guard: boolean;
}

/** The answer to a datagram, or a reply, over the datagram limit: an error that fits, for request `id`. */
function tooLarge(what: 'datagram_too_large' | 'reply_too_large', id: JsonRpcId, bytes: number, limit: number): JsonRpcResponse {
  const vars = { bytes, max_datagram_bytes: limit, setting: 'udp.max_datagram_bytes' };
  return errorResponse(id, fault('INVALID_REQUEST', what, vars, { max_datagram_bytes: limit }));
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
    this.#socket.bind(this.#options.port, this.#options.host);
    await once(this.#socket, 'listening');
    this.#socket.on('error', (err) => this.#options.log.warn({ err }, 'udp: socket error'));
    return formatAddress(this.#socket.address());
  }

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

  #receive(data: Buffer, sender: RemoteInfo): void {
    const peer = this.#peer(sender);
    const limit = this.#options.maxDatagramBytes;
    if (data.length > limit) {
      peer.send(tooLarge('datagram_too_large', null, data.length, limit));
      return;
    }
    const restricted = this.#options.guard && !this.#options.gate.presentsKey(data);
    const connection = restricted ? this.#peer(sender, data.length) : peer;
    // Each datagram stands alone: over UDP a key travels in every request (`api_key`), never in a session.
    const origin = { transport: this.name, signal: this.#closing.signal, connection, peer: { address: sender.address, key: undefined } };
    void answerOn(this.#options.handle, data, origin, this.#options.log);
  }

  /**
   * The sender of a datagram, as a connection: replies and chunks go back to its address. It is
   * lossy, so streams started through it are buffered and gaps are repaired with `poll`. It never
   * closes on its own (UDP has no disconnects), only with the transport.
   */
  #peer(sender: RemoteInfo, budget?: number): Connection {
    let left = budget ?? Infinity;
    return {
      id: `udp:${formatAddress(sender)}`,
      lossy: true,
      restricted: budget !== undefined,
      closed: this.#closing.signal,
      sendLimit: { bytes: this.#options.maxSendBufferBytes, setting: 'connections.max_send_buffer_bytes' },
      send: (message) => {
        const data = this.#encode(message);
        if (data.length > left) {
          this.#options.log.debug(
            { to: formatAddress(sender), bytes: data.length, budget: left },
            'udp: reply larger than the datagram; not sent',
          );
          return true;
        }
        left -= data.length;
        return this.#sendTo(sender, data);
      },
      hold: () => () => {},
    };
  }

  /** One datagram for `message`; a reply over the datagram limit becomes an error that fits. */
  #encode(message: JsonRpcResponse | JsonRpcResponse[]): Buffer {
    const limit = this.#options.maxDatagramBytes;
    const data = Buffer.from(encodeJson(message));
    if (data.length <= limit) return data;
    return Buffer.from(JSON.stringify(tooLarge('reply_too_large', Array.isArray(message) ? null : message.id, data.length, limit)));
  }

  /** Sends one datagram; false once the datagrams still queued exceed the cap. */
  #sendTo(to: RemoteInfo, data: Buffer): boolean {
    if (this.#closing.signal.aborted) return false;
    this.#pendingBytes += data.length;
    this.#socket.send(data, to.port, to.address, (err) => {
      this.#pendingBytes -= data.length;
      if (err) this.#options.log.debug({ err, to: formatAddress(to) }, 'udp: send failed');
    });
    return this.#pendingBytes <= this.#options.maxSendBufferBytes;
  }
}
