/** OpenAI's wire format: server-sent events, ids. */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { ResponseStream, type Framing } from '../generation.js';

/** An id like OpenAI's: `prefix-` and 24 random characters. */
export function openaiId(prefix: string): string {
  return `${prefix}-${randomBytes(18).toString('base64url')}`;
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** A stream of server-sent events on `res`, in OpenAI's framing (`data: {json}`, ending with `data: [DONE]`). */
export class EventStream extends ResponseStream {
  constructor(res: ServerResponse, framing: Framing) {
    const headers = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' };
    super(res, headers, (event) => `data: ${JSON.stringify(event)}\n\n`, framing);
  }

  /** An error after the stream began: OpenAI's error object as an event, then the end. */
  fail(message: string): void {
    this.send({ error: { message, type: 'server_error', param: null, code: 'engine_error' } });
    this.end();
  }

  end(): void {
    this.close('data: [DONE]\n\n');
  }

  /** The last chunk, then the usage chunk (`usage` given: `stream_options.include_usage`), then the end. */
  finish(last: unknown, usage?: unknown): void {
    this.send(last);
    if (usage) this.send(usage);
    this.end();
  }
}
