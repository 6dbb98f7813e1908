/** OpenAI's wire format: server-sent events, ids. */
import { randomBytes } from 'node:crypto';
import type { Wire } from '../generation.js';

/** An id like OpenAI's: `prefix-` and 24 random characters. */
export function openaiId(prefix: string): string {
  return `${prefix}-${randomBytes(18).toString('base64url')}`;
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** Server-sent events in OpenAI's framing (`data: {json}`, ending with `data: [DONE]`); a failure is OpenAI's error object as an event. */
export const SSE: Wire = {
  headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' },
  frame: (event) => `data: ${JSON.stringify(event)}\n\n`,
  failure: (message) => ({ error: { message, type: 'server_error', param: null, code: 'engine_error' } }),
  trailer: 'data: [DONE]\n\n',
};
