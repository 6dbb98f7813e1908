import { connect } from 'node:net';
import { WebSocket } from 'ws';
import { LineSplitter } from '../transports/ndjson.js';

/** A message-framed connection to the server: one JSON-RPC message per frame, both ways. */
export interface Wire {
  send(text: string): void;
  close(): Promise<void>;
  /** Called with each message received. */
  onMessage: (text: string) => void;
  /** Called once when the connection ends, by either side. */
  onClose: (error: Error) => void;
}

/** The handlers a wire starts with, until the channel sets its own. */
const UNSET = { onMessage: (): void => {}, onClose: (): void => {} };

/** Opens a WebSocket (`ws://host:port`); the key goes in the handshake's Authorization header. */
export function openWs(url: string, apiKey: string | undefined): Promise<Wire> {
  const socket = new WebSocket(url, { headers: apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` } });
  const wire: Wire = {
    ...UNSET,
    send: (text) => socket.send(text),
    close: () =>
      new Promise<void>((resolve) => {
        if (socket.readyState === WebSocket.CLOSED) return resolve();
        socket.once('close', () => resolve());
        socket.close();
      }),
  };
  socket.on('message', (data: Buffer) => wire.onMessage(data.toString('utf8')));
  socket.on('close', () => wire.onClose(new Error(`connection to ${url} closed`)));
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(wire));
    socket.once('error', reject);
    socket.once('unexpected-response', (_req, res) => reject(new Error(`${url} refused the WebSocket: HTTP ${res.statusCode}`)));
  });
}

/** Opens a TCP connection (`tcp://host:port`) speaking NDJSON. */
export function openTcp(url: string): Promise<Wire> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port) });
  const lines = new LineSplitter(Infinity, (line) => wire.onMessage(line.toString('utf8')));
  const wire: Wire = {
    ...UNSET,
    send: (text) => socket.write(`${text}\n`),
    close: () =>
      new Promise<void>((resolve) => {
        if (socket.destroyed) return resolve();
        socket.once('close', () => resolve());
        socket.end();
      }),
  };
  socket.on('data', (data: Buffer) => lines.push(data));
  socket.on('close', () => wire.onClose(new Error(`connection to ${url} closed`)));
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(wire));
    socket.once('error', reject);
  });
}
