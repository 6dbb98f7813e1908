import type { JsonRpcResponse } from './message.js';

/**
 * A live connection of a real-time transport (a TCP socket, a WebSocket, a UDP peer, stdio): it
 * can push messages to its client at any time, not only answer requests. Handlers find it in
 * their context; HTTP requests have none. Transports implement it; nothing here knows sockets.
 */
export interface Connection {
  /** Unique within the server, e.g. "tcp#3" or "udp:127.0.0.1:50123"; for logs. */
  readonly id: string;
  /**
   * Messages may be lost on the way (UDP). The method layer then also buffers the streams it pushes
   * here, so gaps can be repaired with `poll`, and binds no key to it (`authenticate`).
   */
  readonly lossy: boolean;
  /**
   * Aborts when the client has gone or stopped sending. Everything the connection started is then
   * aborted, except detached streams; messages already queued are still flushed where possible.
   */
  readonly closed: AbortSignal;
  /**
   * The message came where answering it could amplify an attack (an unauthenticated datagram on UDP
   * bound beyond loopback): it may start no stream, and replies larger than it are not sent.
   */
  readonly restricted?: boolean;
  /** The cap `send` enforces on bytes waiting to be sent, and the setting it comes from. */
  readonly sendLimit: { bytes: number; setting: string };
  /**
   * Queues one message (a response, or a batch of them). Returns false once the bytes waiting to
   * be sent exceed `sendLimit`: whoever pushes must stop. Messages are dropped once the
   * connection can no longer send.
   */
  send(message: JsonRpcResponse | JsonRpcResponse[]): boolean;
  /** Marks the connection in use, so it is never closed as idle, until the returned function is called. */
  hold(): () => void;
}
