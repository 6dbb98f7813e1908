/**
 * The HTTP edge every API on the HTTP port shares (JSON-RPC, OpenAI, Ollama, MCP, the playground):
 * routes, one body reader, one `sendJson`, and the one function that turns an error into a status,
 * headers and a body in each API's shape.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { ERRORS, fault, fill, ServerError, type ErrorSpec } from '../errors.js';
import { encodeJson } from '../jsonrpc/large-id.js';
import { errorResponse } from '../jsonrpc/message.js';
import { jsonDepth, MAX_JSON_DEPTH } from '../request-schema.js';

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
   * Reads the whole body, within the transport's `http.max_body_bytes` (`readBody` below): over it,
   * it rejects with a BodyTooLarge, which the route answers (413) in its own shape.
   */
  readBody(): Promise<Buffer>;
  readonly log: Logger;
}

/**
 * How long a refused oversized request may keep sending before its connection is cut; and how long
 * a closing server lets the requests in flight finish their answers before it cuts them.
 */
export const LINGER_MS = 2000;

/**
 * Reads a whole request body of at most `limit` bytes. Over it (from Content-Length when given,
 * while streaming otherwise) it rejects with a BodyTooLarge, discards (never
 * buffers) what is still arriving, and cuts the connection shortly after. The caller answers 413
 * at once. No "Connection: close": Node would then destroy the socket as soon as the reply is
 * flushed, with the client's body still unread, and the reset that follows can reach the client
 * before it has read the reply.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tooLarge = (): void => {
      req.removeAllListeners('data');
      req.resume();
      setTimeout(() => req.socket.destroy(), LINGER_MS).unref();
      reject(new BodyTooLarge(limit));
    };
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) return tooLarge();
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (part: Buffer) => {
      size += part.length;
      if (size > limit) return tooLarge();
      parts.push(part);
    });
    req.on('end', () => {
      if (size <= limit) resolve(Buffer.concat(parts));
    });
    req.on('error', (err) => reject(err));
  });
}

/** INVALID_REQUEST "body_too_large": a body over the limit, which every API answers 413. */
export class BodyTooLarge extends ServerError {
  constructor(readonly limit: number) {
    super('INVALID_REQUEST', fill(ERRORS.INVALID_REQUEST.messages.body_too_large, { max_body_bytes: limit }));
  }
}

/** Reads the body as JSON. Throws BodyTooLarge, PARSE_ERROR (not JSON) or INVALID_REQUEST (nested deeper than MAX_JSON_DEPTH). */
export async function readJson(exchange: HttpExchange): Promise<unknown> {
  const text = (await exchange.readBody()).toString('utf8');
  if (jsonDepth(text) > MAX_JSON_DEPTH) {
    throw fault('INVALID_REQUEST', 'envelope', { detail: `the body nests arrays and objects deeper than ${MAX_JSON_DEPTH} levels` });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw fault('PARSE_ERROR', 'json', { reason: (err as Error).message });
  }
}

/** Sends a JSON reply; `nosniff`, so a browser never reads it as anything else. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = encodeJson(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(text);
}

/** The APIs on the HTTP port, each with its own error shape. */
export type HttpApi = 'jsonrpc' | 'openai' | 'ollama' | 'mcp';

/** An error as an HTTP API answers it. */
export interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: unknown;
  error: ServerError;
}

/**
 * The headers of a refusal with HTTP status `status`, the one Retry-After rule included: 401 asks
 * for a Bearer key; 429 and 503 say when to retry, from the error's `retry_after` (seconds,
 * rounded up) when it has one, else 1.
 */
export function refusalHeaders(status: number, data: unknown): Record<string, string> {
  if (status === 401) return { 'www-authenticate': 'Bearer' };
  if (status !== 429 && status !== 503) return {};
  const retry = (data as { retry_after?: unknown } | undefined)?.retry_after;
  return { 'retry-after': String(Math.max(1, Math.ceil(typeof retry === 'number' ? retry : 1))) };
}

/** OpenAI's `type` of an error, by HTTP status. */
function openaiType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 404 || status < 500) return status === 429 ? 'rate_limit_error' : 'invalid_request_error';
  return 'server_error';
}

/**
 * The one place an error becomes an HTTP answer, in the shape of `api`. The status is the error's
 * in src/errors.ts (absent: 500); an unknown model (INVALID_PARAMS "model_not_found") is the APIs'
 * 404, and a BodyTooLarge is 413. JSON-RPC answers with it only an error that refuses the
 * request itself (`refusal` in the table); other errors travel in a 200 JSON-RPC body. `status`
 * overrides it for what the transport itself refuses (405, 500).
 */
export function errorAnswer(err: unknown, api: HttpApi, status?: number): HttpAnswer {
  const error = err instanceof ServerError ? err : fault('INTERNAL_ERROR', 'internal');
  const spec: ErrorSpec = ERRORS[error.name];
  const data = (error.data ?? {}) as { reason?: unknown; path?: unknown };
  if (status === undefined) {
    if (error instanceof BodyTooLarge) status = 413;
    else if (api === 'jsonrpc') status = spec.refusal ? spec.status! : 200;
    else status = data.reason === 'model_not_found' ? 404 : (spec.status ?? 500);
  }
  const headers = refusalHeaders(status, error.data);
  const { message } = error;
  let body: unknown;
  if (api === 'jsonrpc') body = errorResponse(null, error);
  else if (api === 'mcp') body = { jsonrpc: '2.0', id: null, error: { code: spec.code, message } };
  else if (api === 'ollama') body = { error: message };
  else {
    const code = status === 404 ? 'model_not_found' : status === 401 ? 'invalid_api_key' : error.name.toLowerCase();
    body = { error: { message, type: openaiType(status), param: typeof data.path === 'string' ? data.path : null, code } };
  }
  return { status, headers, body, error };
}

/** Answers `err` on `res` in the shape of `api` (see `errorAnswer`). */
export function sendError(res: ServerResponse, err: unknown, api: HttpApi, status?: number): HttpAnswer {
  const answer = errorAnswer(err, api, status);
  sendJson(res, answer.status, answer.body, answer.headers);
  return answer;
}
