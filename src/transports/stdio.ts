import type { Readable, Writable } from 'node:stream';
import type { ClientEnd } from '../auth.js';
import { errorResponse, peekJson, type JsonRpcResponse } from '../jsonrpc/message.js';
import { LiveConnection, readLines, type LiveConnectionOptions } from './live-connection.js';
import type { Transport } from './transport.js';

/**
 * Another protocol that shares stdio with JSON-RPC (MCP). Every message is offered to it first,
 * parsed; what it takes never reaches the dispatcher. It writes its own messages through the link.
 */
export interface StdioGuest {
  /** Called once, when the transport starts. */
  open(link: StdioLink): void;
  /** Takes `message` (one parsed JSON value) when it is the guest's; returns whether it did. */
  offer(message: unknown): boolean;
}

/** What a guest gets: the one stdio connection, its client and its end. */
export interface StdioLink {
  /** Writes one message (one line). */
  send(message: object): void;
  /** Keeps the output open, once stdin has ended, until the returned function is called. */
  hold(): () => void;
  /** The client (the parent process), with the key it bound with `authenticate`, if any. */
  readonly peer: ClientEnd;
  /** Aborts when stdin has ended or stdout failed. */
  readonly closed: AbortSignal;
}

export interface StdioTransportOptions extends Pick<LiveConnectionOptions, 'limits' | 'handle' | 'log'> {
  /** Where messages come from (process.stdin). */
  input: Readable;
  /** Where replies go (process.stdout): nothing else may write there. */
  output: Writable;
  /** Longest line (one message) accepted, in bytes. */
  maxLineBytes: number;
  /** Another protocol on the same stdio (MCP), offered every message first. */
  guest?: StdioGuest;
  /** Called once, when the input has ended and every reply and final chunk is flushed, or when the output fails. */
  onEnd: () => void;
}

/**
 * JSON-RPC over a pair of byte streams, one message per line (NDJSON), for a parent process that
 * spawns the server. It is one connection: when the input ends, what it started is aborted, the
 * replies and final chunks are flushed, and `onEnd` is called. A line over the limit is answered
 * with -32600 and skipped up to the next newline: the input cannot be closed from this side.
 */
export class StdioTransport implements Transport {
  readonly name = 'stdio';
  readonly #options: StdioTransportOptions;
  readonly #connection: LiveConnection;
  readonly #peer: ClientEnd = { address: 'stdio', key: undefined };
  #closed = false;
  #ended = false;

  constructor(options: StdioTransportOptions) {
    this.#options = options;
    const { input, output, limits, handle, log, guest } = options;
    this.#connection = new LiveConnection({
      id: 'stdio',
      transport: this.name,
      peer: this.#peer,
      handle: guest ? (raw, origin) => (guest.offer(peekJson(raw)) ? Promise.resolve(undefined) : handle(raw, origin)) : handle,
      limits: { ...limits, idleTimeoutMs: 0 },
      log,
      wire: {
        write: (text) => output.write(`${text}\n`),
        get pendingBytes() {
          return output.writableLength;
        },
        pause: () => input.pause(),
        resume: () => input.resume(),
        end: () => output.end(() => this.#end()),
      },
    });
  }

  get openConnections(): number {
    return this.#closed || this.#ended ? 0 : 1;
  }

  /** The parent process is the one client; it keeps its connection while the server drains. */
  stopAccepting(): void {}

  async start(): Promise<string> {
    const { input, output, maxLineBytes, log } = this.#options;
    const connection = this.#connection;
    this.#options.guest?.open({
      // The guest's messages are JSON-RPC messages too; the connection only serialises them.
      send: (message) => void connection.send(message as JsonRpcResponse),
      hold: () => connection.hold(),
      peer: this.#peer,
      closed: connection.closed,
    });
    readLines(input, connection, { maxLineBytes, setting: 'stdio.max_line_bytes' }, (error) => connection.send(errorResponse(null, error)));
    input.on('error', (err) => log.warn({ err }, 'stdio: input error'));
    output.on('drain', () => connection.drained());
    output.on('error', (err) => {
      log.warn({ err }, 'stdio: output error; the reader has gone');
      connection.dispose();
      this.#end();
    });
    return 'stdin/stdout';
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#connection.dispose();
    this.#options.input.pause();
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#options.onEnd();
  }
}
