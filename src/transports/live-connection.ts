import type { Readable } from 'node:stream';
import { encodeJson } from '../jsonrpc/large-id.js';
import type { Logger } from 'pino';
import type { ClientEnd } from '../auth.js';
import type { Connection } from '../jsonrpc/connection.js';
import { fault, type ServerError } from '../errors.js';
import { errorResponse, type JsonRpcResponse } from '../jsonrpc/message.js';
import { LineSplitter } from './ndjson.js';
import { answerOn, type MessageHandler } from './transport.js';

/** What every live connection enforces (the `connections` settings). */
export interface ConnectionLimits {
  /** Bytes waiting to be sent at most: past it, pushes stop and reading pauses. */
  maxSendBufferBytes: number;
  /** Requests in progress at most: reading pauses while more wait. */
  maxInflight: number;
  /** Close after this long with nothing received and nothing in progress; 0 never. */
  idleTimeoutMs: number;
}

/** The byte side of one connection, supplied by its transport: framing and I/O live there. */
export interface Wire {
  /** Writes one message, framed the way the transport frames messages. */
  write(text: string): void;
  /** Bytes written and not yet handed to the operating system. */
  readonly pendingBytes: number;
  /** Stops reading from the peer (its sends back up, not our memory); `resume` undoes it. */
  pause(): void;
  resume(): void;
  /** Closes once what was written is flushed. `reason`, when given, says why (it was also sent as a message). */
  end(reason?: ServerError): void;
}

export interface LiveConnectionOptions {
  /** Unique within the server, e.g. "tcp#3". */
  id: string;
  transport: string;
  /** The client end: its address, and the key it presented (at the WebSocket handshake, or later with `authenticate`). */
  peer: ClientEnd;
  wire: Wire;
  handle: MessageHandler;
  limits: ConnectionLimits;
  log: Logger;
  /** Starts the idle timer and returns its cancel; tests pass their own. Defaults to an unref'd `setTimeout`. */
  schedule?: (callback: () => void, ms: number) => () => void;
}

function unrefTimer(callback: () => void, ms: number): () => void {
  const timer = setTimeout(callback, ms).unref();
  return () => clearTimeout(timer);
}

/**
 * Feeds newline-delimited JSON from `input` to `connection`, one message per line; the end of the
 * input ends the connection's input. A line over `maxLineBytes` is handed to `onOversize` as a
 * -32600 error naming `setting` (a connection it closes ignores the lines after it).
 */
export function readLines(
  input: Readable,
  connection: LiveConnection,
  limit: { maxLineBytes: number; setting: string },
  onOversize: (error: ServerError) => void,
): void {
  const { maxLineBytes, setting } = limit;
  const tooLong = fault('INVALID_REQUEST', 'line_too_long', { max_line_bytes: maxLineBytes, setting }, { max_line_bytes: maxLineBytes });
  const lines = new LineSplitter(
    maxLineBytes,
    (line) => connection.receive(line),
    () => onOversize(tooLong),
  );
  input.on('data', (data: Buffer) => lines.push(data));
  input.on('end', () => {
    lines.end();
    connection.endInput();
  });
}

/**
 * One connection of a stream transport (TCP, WebSocket, stdio), above its wire. It hands each
 * message to the dispatcher with itself as the origin and writes back the replies. Memory stays
 * bounded: at most `maxInflight` requests run at once, and reading pauses while more wait or while
 * the bytes waiting to be sent exceed the cap. A connection idle too long closes with a reason.
 *
 * It ends in one of two ways. `endInput`: the peer will send nothing more (TCP FIN, end of stdin);
 * what it started is aborted, then the replies and final chunks are flushed and the wire ended.
 * `dispose`: the peer is gone; everything is aborted and nothing more is sent.
 */
export class LiveConnection implements Connection {
  readonly lossy = false;
  readonly id: string;
  readonly sendLimit: { bytes: number; setting: string };
  readonly #options: LiveConnectionOptions;
  readonly #closed = new AbortController();
  /** Messages received and not yet dispatched (reading is paused while any wait). */
  readonly #queue: Array<Buffer | string> = [];
  #inflight = 0;
  #holds = 0;
  #paused = false;
  #sendable = true;
  #cancelIdle: (() => void) | undefined;

  constructor(options: LiveConnectionOptions) {
    this.#options = options;
    this.id = options.id;
    this.sendLimit = { bytes: options.limits.maxSendBufferBytes, setting: 'connections.max_send_buffer_bytes' };
    this.#update();
  }

  get closed(): AbortSignal {
    return this.#closed.signal;
  }

  send(message: JsonRpcResponse | JsonRpcResponse[]): boolean {
    if (!this.#sendable) return false;
    const { wire, limits } = this.#options;
    wire.write(encodeJson(message));
    if (wire.pendingBytes <= limits.maxSendBufferBytes) return true;
    this.#update();
    return false;
  }

  hold(): () => void {
    this.#holds++;
    this.#update();
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#holds--;
      this.#update();
    };
  }

  /** One framed message arrived. Ignored once the input has ended. */
  receive(raw: Buffer | string): void {
    if (this.#closed.signal.aborted) return;
    this.#queue.push(raw);
    this.#pump();
  }

  /** The wire has flushed some bytes: reading may resume. */
  drained(): void {
    this.#update();
  }

  /** The peer will send nothing more: abort what it started, then flush and end the wire. */
  endInput(): void {
    if (this.#closed.signal.aborted) return;
    this.#closed.abort();
    this.#update();
  }

  /** Sends `error` (with id null) and closes: a framing violation or an idle timeout. */
  closeWith(error: ServerError): void {
    if (!this.#sendable) return;
    this.send(errorResponse(null, error));
    this.dispose();
    this.#options.wire.end(error);
  }

  /** The peer is gone: abort everything, send nothing more. Idempotent. */
  dispose(): void {
    this.#sendable = false;
    this.#queue.length = 0;
    this.#cancelIdle?.();
    this.#closed.abort();
  }

  #pump(): void {
    while (this.#inflight < this.#options.limits.maxInflight && this.#queue.length > 0) {
      this.#inflight++;
      void this.#dispatch(this.#queue.shift()!);
    }
    this.#update();
  }

  async #dispatch(raw: Buffer | string): Promise<void> {
    const { handle, transport, peer, log } = this.#options;
    await answerOn(handle, raw, { transport, signal: this.#closed.signal, connection: this, peer }, log);
    this.#inflight--;
    this.#pump();
  }

  /** Brings reading, the idle timer and the end of the wire in line with the current state. */
  #update(): void {
    if (!this.#sendable) return;
    const busy = this.#inflight > 0 || this.#holds > 0 || this.#queue.length > 0;
    if (this.#closed.signal.aborted) {
      if (!busy) {
        this.#sendable = false;
        this.#options.wire.end();
      }
      return;
    }
    this.#setPaused(this.#queue.length > 0 || this.#options.wire.pendingBytes > this.#options.limits.maxSendBufferBytes);
    this.#setIdleTimer(!busy);
  }

  #setPaused(paused: boolean): void {
    if (paused === this.#paused) return;
    this.#paused = paused;
    if (paused) this.#options.wire.pause();
    else this.#options.wire.resume();
  }

  #setIdleTimer(idle: boolean): void {
    const ms = this.#options.limits.idleTimeoutMs;
    if (!idle || ms === 0) {
      this.#cancelIdle?.();
      this.#cancelIdle = undefined;
      return;
    }
    if (this.#cancelIdle) return;
    this.#cancelIdle = (this.#options.schedule ?? unrefTimer)(() => {
      const seconds = ms / 1000;
      this.closeWith(fault('CONNECTION_IDLE', 'idle', { idle_timeout_s: seconds }, { idle_timeout_s: seconds }));
    }, ms);
  }
}
