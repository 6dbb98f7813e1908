import { HttpTransport, type HttpTransportOptions } from './http.js';
import { StdioTransport, type StdioGuest, type StdioTransportOptions } from './stdio.js';
import { TcpTransport, type TcpTransportOptions } from './tcp.js';
import type { Transport } from './transport.js';
import { UdpTransport, type UdpTransportOptions } from './udp.js';
import { WsTransport, type WsTransportOptions } from './ws.js';

/** Which transports to build, and their limits (each documented where its transport takes it). A transport left out is not served. */
export interface TransportOptions
  extends Pick<TcpTransportOptions, 'host' | 'limits' | 'maxConnections' | 'authTimeoutMs'>, Pick<WsTransportOptions, 'allowedOrigins'> {
  http?: Pick<HttpTransportOptions, 'port' | 'maxBodyBytes' | 'requestTimeoutMs'>;
  tcp?: Pick<TcpTransportOptions, 'port' | 'maxLineBytes'>;
  udp?: Pick<UdpTransportOptions, 'port' | 'maxDatagramBytes' | 'guard'>;
  ws?: Pick<WsTransportOptions, 'port' | 'maxMessageBytes'>;
  stdio?: Pick<StdioTransportOptions, 'maxLineBytes'>;
}

/** What the transports are served by, beside their options. */
export interface TransportDeps extends Pick<HttpTransportOptions, 'handle' | 'gate' | 'endpoints' | 'routes' | 'log'> {
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
