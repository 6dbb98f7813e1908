import { once } from 'node:events';
import type { AddressInfo, Server } from 'node:net';
import type { Logger } from 'pino';
import type { ClientEnd } from '../auth.js';
import type { ClientGate } from '../clients.js';
import type { Connection } from '../jsonrpc/connection.js';
import type { RequestOrigin } from '../jsonrpc/dispatcher.js';
import type { JsonRpcResponse } from '../jsonrpc/message.js';

/** Hands one raw message to the dispatcher; resolves with what to send back (nothing for notifications). */
export type MessageHandler = (
  raw: Uint8Array | string,
  origin: RequestOrigin<ClientEnd>,
) => Promise<JsonRpcResponse | JsonRpcResponse[] | undefined>;

/** Hands `raw` to `handle` and sends its reply back on the connection it came on; an unexpected failure is logged, never thrown. */
export async function answerOn(
  handle: MessageHandler,
  raw: Uint8Array | string,
  origin: RequestOrigin<ClientEnd> & { connection: Connection },
  log: Logger,
): Promise<void> {
  try {
    const reply = await handle(raw, origin);
    if (reply !== undefined) origin.connection.send(reply);
  } catch (err) {
    log.error({ err, connection: origin.connection.id }, `${origin.transport}: unexpected failure handling a message`);
  }
}

/**
 * The contract every transport implements. A transport owns its sockets and framing; it never
 * interprets JSON-RPC beyond handing messages to the dispatcher and writing back responses.
 */
export interface Transport {
  /** "http", "tcp", "udp", "ws" or "stdio". */
  readonly name: string;
  /** Connections open now (HTTP: sockets; UDP, which has none: 0), for metrics. */
  readonly openConnections: number;
  /** Binds and starts accepting. Resolves with the bound address, e.g. "127.0.0.1:8082". */
  start(): Promise<string>;
  /**
   * A graceful shutdown has begun: take no new connections where that is possible without cutting
   * off clients that still read their streams. Open connections carry on. Idempotent.
   */
  stopAccepting(): void;
  /** Stops accepting and closes every connection. Idempotent. */
  close(): Promise<void>;
}

/** What every network transport takes: where it binds, what answers its messages, the gate its clients pass, and its log. */
export interface NetworkTransportOptions {
  host: string;
  port: number;
  handle: MessageHandler;
  gate: ClientGate;
  log: Logger;
}

/** "host:port", with an IPv6 host in brackets. */
export function formatAddress(address: AddressInfo): string {
  return `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
}

/** Binds a TCP-based server (net or http) and resolves with its bound address; rejects if binding fails. */
export async function listen(server: Server, host: string, port: number): Promise<string> {
  server.listen(port, host);
  await once(server, 'listening');
  return formatAddress(server.address() as AddressInfo);
}
