import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { ERRORS, fill } from '../errors.js';

/**
 * A face served on the HTTP port beside JSON-RPC (`POST /`): the OpenAI and Ollama APIs, MCP, the
 * playground. The HTTP transport asks each route in order, before JSON-RPC and its GET endpoints;
 * the first that matches answers the request, in its own wire format.
 */
export interface HttpRoute {
  /** Whether this route answers `method` on `path` (the URL's pathname); `headers` tell apart, e.g., a browser asking for HTML. */
  matches(method: string, path: string, headers: IncomingHttpHeaders): boolean;
  /** Answers the request. A rejection is logged and answered 500 when nothing was sent yet. */
  serve(exchange: HttpExchange): Promise<void>;
}

/** One request handed to a route. */
export interface HttpExchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  /** The client's IP address. */
  readonly address: string;
  /** Aborts when the client goes away before the reply is complete. */
  readonly signal: AbortSignal;
  /**
   * Reads the whole body, within the transport's `http.max_body_bytes`. Over it, it stops reading,
   * cuts the connection shortly after, and rejects with a BodyTooLarge: the route answers 413 in
   * its own shape first.
   */
  readBody(): Promise<Buffer>;
  readonly log: Logger;
}

/** A body over the transport's limit. */
export class BodyTooLarge extends Error {
  constructor(readonly limit: number) {
    super(fill(ERRORS.INVALID_REQUEST.messages.body_too_large, { max_body_bytes: limit }));
    this.name = 'BodyTooLarge';
  }
}
