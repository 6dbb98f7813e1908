import type { Logger } from 'pino';
import type { ClientGate } from '../clients.js';
import type { Settings } from '../settings.js';
import { HttpTransport, type HttpEndpoint } from './http.js';
import type { ConnectionLimits } from './live-connection.js';
import { StdioTransport } from './stdio.js';
import { TcpTransport } from './tcp.js';
import type { MessageHandler, Transport } from './transport.js';
import { UdpTransport } from './udp.js';
import { WsTransport } from './ws.js';

export interface TransportDeps {
  handle: MessageHandler;
  gate: ClientGate;
  /** GET endpoints of the HTTP transport (`/health`, `/metrics`). */
  endpoints: ReadonlyMap<string, HttpEndpoint>;
  log: Logger;
  /** stdio's input has ended and everything is flushed: the server should stop. */
  onStdioEnd: () => void;
}

/** Builds every enabled transport from the settings, in the order the readiness line names them. */
export function createTransports(settings: Settings, deps: TransportDeps): Transport[] {
  const { host } = settings;
  const { handle, gate, log } = deps;
  const c = settings.connections;
  const limits: ConnectionLimits = {
    maxSendBufferBytes: c.max_send_buffer_bytes,
    maxInflight: c.max_inflight,
    idleTimeoutMs: c.idle_timeout_s * 1000,
  };
  const transports: Transport[] = [];
  if (settings.http.enabled) {
    const { port, max_body_bytes: maxBodyBytes } = settings.http;
    transports.push(
      new HttpTransport({ host, port, maxBodyBytes, idleTimeoutMs: limits.idleTimeoutMs, handle, gate, endpoints: deps.endpoints, log }),
    );
  }
  if (settings.tcp.enabled) {
    const { port, max_line_bytes } = settings.tcp;
    transports.push(
      new TcpTransport({ host, port, maxLineBytes: max_line_bytes, maxConnections: c.max_connections, limits, handle, gate, log }),
    );
  }
  if (settings.udp.enabled) {
    const { port, max_datagram_bytes } = settings.udp;
    transports.push(
      new UdpTransport({ host, port, maxDatagramBytes: max_datagram_bytes, maxSendBufferBytes: c.max_send_buffer_bytes, handle, log }),
    );
  }
  if (settings.ws.enabled) {
    const { port, max_message_bytes } = settings.ws;
    transports.push(
      new WsTransport({ host, port, maxMessageBytes: max_message_bytes, maxConnections: c.max_connections, limits, handle, gate, log }),
    );
  }
  if (settings.stdio.enabled) {
    const { max_line_bytes } = settings.stdio;
    const io = { input: process.stdin, output: process.stdout };
    transports.push(new StdioTransport({ ...io, maxLineBytes: max_line_bytes, limits, handle, log, onEnd: deps.onStdioEnd }));
  }
  return transports;
}
