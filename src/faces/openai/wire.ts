/** OpenAI's wire format: its error object, server-sent events, ids. */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { sendJson, type HttpFault } from '../http-kit.js';

/** OpenAI's `type` of an error, by HTTP status. */
function errorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 404 || status < 500) return status === 429 ? 'rate_limit_error' : 'invalid_request_error';
  return 'server_error';
}

/** `{"error": {"message", "type", "param", "code"}}` with the fault's status. */
export function answerError(res: ServerResponse, answer: HttpFault): void {
  const { status, headers, error } = answer;
  const data = (error.data ?? {}) as { path?: unknown; reason?: unknown };
  const code = status === 404 ? 'model_not_found' : status === 401 ? 'invalid_api_key' : error.name.toLowerCase();
  const param = typeof data.path === 'string' ? data.path : null;
  sendJson(res, status, { error: { message: error.message, type: errorType(status), param, code } }, headers);
}

/** An id like OpenAI's: `prefix-` and 24 random characters. */
export function openaiId(prefix: string): string {
  return `${prefix}-${randomBytes(18).toString('base64url')}`;
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** A stream of server-sent events on `res`, in OpenAI's framing (`data: {json}`, ending with `data: [DONE]`). */
export class EventStream {
  readonly #res: ServerResponse;
  #open = false;

  constructor(res: ServerResponse) {
    this.#res = res;
  }

  /** Sends the headers (once). */
  open(): void {
    if (this.#open) return;
    this.#open = true;
    this.#res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    this.#res.flushHeaders();
  }

  send(event: unknown): void {
    this.open();
    if (!this.#res.writableEnded) this.#res.write(`data: ${JSON.stringify(event)}\n\n`);
  }

  /** An error after the stream began: OpenAI's error object as an event, then the end. */
  fail(message: string): void {
    this.send({ error: { message, type: 'server_error', param: null, code: 'engine_error' } });
    this.end();
  }

  end(): void {
    this.open();
    if (!this.#res.writableEnded) this.#res.end('data: [DONE]\n\n');
  }

  /** Bytes written but not yet sent. */
  get pending(): number {
    return this.#res.writableLength;
  }
}
