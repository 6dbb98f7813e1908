import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import { errorResponse } from '../jsonrpc/message.js';
import { LiveConnection, readLines, type ConnectionLimits } from './live-connection.js';
import type { MessageHandler, Transport } from './transport.js';

export interface StdioTransportOptions {
  /** Where messages come from (process.stdin). */
  input: Readable;
  /** Where replies go (process.stdout): nothing else may write there. */
  output: Writable;
  /** Longest line (one message) accepted, in bytes. */
  maxLineBytes: number;
  limits: ConnectionLimits;
  handle: MessageHandler;
  log: Logger;
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
  #closed = false;
  #ended = false;

  constructor(options: StdioTransportOptions) {
    this.#options = options;
    const { input, output, limits, handle, log } = options;
    this.#connection = new LiveConnection({
      id: 'stdio',
      transport: this.name,
      peer: { address: 'stdio', key: undefined },
      handle,
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
    readLines(input, connection, { maxLineBytes, setting: 'stdio.max_line_bytes' }, (error) => {
      connection.send(errorResponse(null, error));
      return 'skip';
    });
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
    if (this.#closed) return;
    this.#closed = true;
    this.#connection.dispose();
    this.#options.input.pause();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#options.onEnd();
  }
}
