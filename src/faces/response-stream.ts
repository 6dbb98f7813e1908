import type { ServerResponse } from 'node:http';

/**
 * A streamed HTTP response of one face: the headers once, then one frame per value, written as
 * the run produces them. The faces differ only in their framing: OpenAI's server-sent events,
 * Ollama's NDJSON.
 */
export class ResponseStream {
  readonly #res: ServerResponse;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #frame: (value: unknown) => string;
  #open = false;

  constructor(res: ServerResponse, headers: Readonly<Record<string, string>>, frame: (value: unknown) => string) {
    this.#res = res;
    this.#headers = headers;
    this.#frame = frame;
  }

  /** Sends the headers (once). */
  open(): void {
    if (this.#open) return;
    this.#open = true;
    this.#res.writeHead(200, this.#headers);
    this.#res.flushHeaders();
  }

  send(value: unknown): void {
    this.open();
    if (!this.#res.writableEnded) this.#res.write(this.#frame(value));
  }

  /** Ends the response, after `trailer` when given. */
  close(trailer?: string): void {
    this.open();
    if (!this.#res.writableEnded) this.#res.end(trailer);
  }

  /** Bytes written but not yet sent. */
  get pending(): number {
    return this.#res.writableLength;
  }
}
