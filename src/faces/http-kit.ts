/** What the faces on the HTTP port share: JSON bodies, admission through the client gate, and the HTTP meaning of errors. */
import type { ServerResponse } from 'node:http';
import type { Client, ClientGate } from '../clients.js';
import type { Engine } from '../engine/types.js';
import type { LoadedModels } from '../models/loaded.js';
import type { StreamHub } from '../streams/hub.js';
import { ERRORS, fault, ServerError, type ErrorSpec } from '../errors.js';
import { badField } from '../request-schema.js';
import { BodyTooLarge, type HttpExchange } from '../transports/http-route.js';

export { badField };

/** What every face needs from the server. */
export interface FaceDeps {
  gate: ClientGate;
  /** Counts a request answered by a face (metrics: method and seconds). */
  answered: (method: string, seconds: number) => void;
  /** Counts an error sent to a client (metrics), by its JSON-RPC code. */
  refused: (code: number) => void;
  /** Over this many bytes waiting to be written to a streaming client, the run is stopped. */
  sendLimit: { bytes: number; setting: string };
}

/** What a face that runs generations needs: the hub it starts them on, and the engine it describes. */
export interface HubDeps extends FaceDeps {
  hub: StreamHub;
  engine: Engine;
  /** The models requests name: the folder, and what is loaded. */
  models: LoadedModels;
}

/** An error as a face answers it: its HTTP status, and the headers that go with it. */
export interface HttpFault {
  status: number;
  headers: Record<string, string>;
  error: ServerError;
}

/** The HTTP meaning of `err`: 400 for bad requests, 404 for an unknown model, 401, 429 and 503 with Retry-After, else 500. */
export function httpFault(err: unknown): HttpFault {
  const error = err instanceof ServerError ? err : fault('INTERNAL_ERROR', 'internal');
  const data = (error.data ?? {}) as { reason?: unknown; retry_after?: unknown };
  const status = data.reason === 'model_not_found' ? 404 : ((ERRORS[error.name] as ErrorSpec).api ?? 500);
  const headers: Record<string, string> = {};
  if (status === 401) headers['www-authenticate'] = 'Bearer';
  if (status === 429 || status === 503) headers['retry-after'] = String(Math.max(1, Math.ceil(Number(data.retry_after ?? 1))));
  return { status, headers, error };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Reads the body as a JSON object. Throws PARSE_ERROR (not JSON), INVALID_REQUEST (not an object, or over the size limit). */
export async function readJson(exchange: HttpExchange): Promise<Record<string, unknown>> {
  let body: Buffer;
  try {
    body = await exchange.readBody();
  } catch (err) {
    if (err instanceof BodyTooLarge) throw fault('INVALID_REQUEST', 'body_too_large', { max_body_bytes: err.limit });
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw fault('PARSE_ERROR', 'json', { reason: (err as Error).message });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fault('INVALID_REQUEST', 'envelope', { detail: 'the body must be a JSON object' });
  }
  return value as Record<string, unknown>;
}

/**
 * Serves one request of a face: admits its client (key, rate, connection limit), runs `handle`,
 * and answers a failure with `answerError` in the face's own shape. Counts the request in the
 * metrics under `method`.
 */
export async function serveFace(
  deps: FaceDeps,
  exchange: HttpExchange,
  method: string,
  handle: (client: Client) => Promise<void>,
  answerError: (res: ServerResponse, fault: HttpFault) => void,
): Promise<void> {
  const started = performance.now();
  let release = (): void => {};
  try {
    const admitted = deps.gate.admitHttp(exchange.req.headers.authorization, exchange.address);
    release = admitted.release;
    await handle(admitted.client);
  } catch (err) {
    const answer = httpFault(err);
    if (answer.status === 500) exchange.log.error({ err, path: exchange.url.pathname }, 'face: request failed');
    deps.refused(ERRORS[answer.error.name].code);
    exchange.req.resume();
    if (!exchange.res.headersSent) answerError(exchange.res, answer);
    else exchange.res.end();
  } finally {
    release();
    deps.answered(method, (performance.now() - started) / 1000);
  }
}

/** The types `field` checks for, by name. */
interface FieldTypes {
  string: string;
  number: number;
  boolean: boolean;
  object: Record<string, unknown>;
  array: unknown[];
}

/** The field `name` of a request body, checked to be of `type`; undefined when absent (or null). Throws INVALID_PARAMS naming it. */
export function field<T extends keyof FieldTypes>(body: Record<string, unknown>, name: string, type: T): FieldTypes[T] | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  const actual = Array.isArray(value) ? 'array' : typeof value;
  if (actual !== type) throw badField(name, `must be ${type === 'array' || type === 'object' ? 'an' : 'a'} ${type}; got ${actual}`);
  return value as FieldTypes[T];
}
