/** OpenAI's wire format: its error object, server-sent events, ids. */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { sendJson, type HttpFault } from '../http-kit.js';
import { ResponseStream } from '../response-stream.js';

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
export class EventStream extends ResponseStream {
  constructor(res: ServerResponse) {
    const headers = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' };
    super(res, headers, (event) => `data: ${JSON.stringify(event)}\n\n`);
  }

  /** An error after the stream began: OpenAI's error object as an event, then the end. */
  fail(message: string): void {
    this.send({ error: { message, type: 'server_error', param: null, code: 'engine_error' } });
    this.end();
  }

  end(): void {
    this.close('data: [DONE]\n\n');
  }
}
