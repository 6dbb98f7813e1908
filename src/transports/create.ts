import type { Logger } from 'pino';
import type { ClientGate } from '../clients.js';
import { HttpTransport, type HttpEndpoint } from './http.js';
import type { HttpRoute } from './http-route.js';
import type { ConnectionLimits } from './live-connection.js';
import { StdioTransport, type StdioGuest } from './stdio.js';
import { TcpTransport } from './tcp.js';
import type { MessageHandler, Transport } from './transport.js';
import { UdpTransport } from './udp.js';
import { WsTransport } from './ws.js';

/** Which transports to build, and their limits. A transport left out is not served. */
export interface TransportOptions {
  /** The address every network transport binds. */
  host: string;
  /** What every live connection enforces. */
  limits: ConnectionLimits;
  /** Open connections per transport (TCP, WebSocket) at most. */
  maxConnections: number;
  /** How long a TCP or WebSocket connection may stay without a valid key while keys are required, in ms. */
  authTimeoutMs: number;
  /** Browser origins allowed besides the server's own, on HTTP and WebSocket. */
  allowedOrigins: readonly string[];
  http?: { port: number; maxBodyBytes: number; requestTimeoutMs: number };
  tcp?: { port: number; maxLineBytes: number };
  /** `guard`: bound beyond loopback, so a datagram without a valid key gets no more than its own size back and starts no stream. */
  udp?: { port: number; maxDatagramBytes: number; guard: boolean };
  ws?: { port: number; maxMessageBytes: number };
  stdio?: { maxLineBytes: number };
}

export interface TransportDeps {
  handle: MessageHandler;
  gate: ClientGate;
  /** GET endpoints of the HTTP transport (`/health`, `/metrics`). */
  endpoints: ReadonlyMap<string, HttpEndpoint>;
  /** The faces served on the HTTP port beside JSON-RPC, read at each request. */
  routes: () => readonly HttpRoute[];
  log: Logger;
  /** Another protocol sharing stdio with JSON-RPC (MCP). */
  stdioGuest?: StdioGuest;
  /** stdio's input has ended and everything is flushed: the server should stop. */
  onStdioEnd: () => void;
}

/** Builds every transport `options` names, in the order the readiness line names them. */
export function createTransports(options: TransportOptions, deps: TransportDeps): Transport[] {
  const shared = { ...options, ...deps };
  const transports: Transport[] = [];
  let http: HttpTransport | undefined;
  if (options.http) {
    transports.push((http = new HttpTransport({ ...shared, ...options.http, idleTimeoutMs: options.limits.idleTimeoutMs })));
  }
  if (options.tcp) transports.push(new TcpTransport({ ...shared, ...options.tcp }));
  if (options.udp) {
    transports.push(new UdpTransport({ ...shared, ...options.udp, maxSendBufferBytes: options.limits.maxSendBufferBytes }));
  }
  if (options.ws) {
    const pagePorts = (): number[] => (http?.port === undefined ? [] : [http.port]);
    transports.push(new WsTransport({ ...shared, ...options.ws, pagePorts }));
  }
  if (options.stdio) {
    const io = { input: process.stdin, output: process.stdout, onEnd: deps.onStdioEnd };
    const guest = deps.stdioGuest ? { guest: deps.stdioGuest } : {};
    transports.push(new StdioTransport({ ...shared, ...options.stdio, ...io, ...guest }));
  }
  return transports;
}
