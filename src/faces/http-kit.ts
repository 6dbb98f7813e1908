/** What the faces on the HTTP port share: JSON bodies, admission through the client gate, errors in the face's shape. */
import type { Client, ClientGate } from '../clients.js';
import type { Engine } from '../engine/types.js';
import type { LoadedModels } from '../models/loaded.js';
import type { StreamHub } from '../streams/hub.js';
import { ERRORS, fault, type ServerError } from '../errors.js';
import { badField } from '../request-schema.js';
import type { SendLimit } from '../streams/live-sink.js';
import { errorAnswer, readJson, sendJson, type HttpExchange } from '../transports/http-route.js';

export { badField };

/** What the OpenAI and Ollama faces need from the server: the hub they start runs on, the engine they describe. */
export interface HubDeps {
  hub: StreamHub;
  engine: Engine;
  /** The models requests name: the folder, and what is loaded. */
  models: LoadedModels;
  /** `openai.model_aliases`: a name the OpenAI face takes for a model's (alias to model). */
  modelAliases?: Readonly<Record<string, string>>;
  gate: ClientGate;
  /** Counts a request answered by a face (metrics: method and seconds). */
  answered: (method: string, seconds: number) => void;
  /** Counts an error sent to a client (metrics), by its JSON-RPC code. */
  refused: (code: number) => void;
  /** Over this many bytes waiting to be written to a streaming client, the run is stopped. */
  sendLimit: SendLimit;
}

/** Reads the body as a JSON object. Throws PARSE_ERROR (not JSON), INVALID_REQUEST (not an object, or over the size limit). */
export async function readObject(exchange: HttpExchange): Promise<Record<string, unknown>> {
  const value = await readJson(exchange);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fault('INVALID_REQUEST', 'envelope', { detail: 'the body must be a JSON object' });
  }
  return value as Record<string, unknown>;
}

/**
 * Serves one request of a face: admits its client (key, rate, connection limit), runs `handle`,
 * and answers a failure in the shape of `api`. Counts the request in the metrics under `method`.
 */
export async function serveFace(
  deps: HubDeps,
  exchange: HttpExchange,
  method: string,
  handle: (client: Client) => Promise<void>,
  api: 'openai' | 'ollama',
): Promise<void> {
  const started = performance.now();
  let release = (): void => {};
  try {
    const admitted = deps.gate.admitHttp(exchange.req.headers.authorization, exchange.address);
    release = admitted.release;
    await handle(admitted.client);
  } catch (err) {
    const answer = errorAnswer(err, api);
    if (answer.status === 500) exchange.log.error({ err, path: exchange.url.pathname }, 'face: request failed');
    deps.refused(ERRORS[answer.error.name].code);
    exchange.req.resume();
    if (!exchange.res.headersSent) sendJson(exchange.res, answer.status, answer.body, answer.headers);
    else exchange.res.end();
  } finally {
    release();
    deps.answered(method, (performance.now() - started) / 1000);
  }
}

/** The refusal of a model name that is neither in the models folder nor the built-in model (the faces answer 404). */
export function modelNotFound(model: string): ServerError {
  return fault('INVALID_PARAMS', 'no_model', { model, builtin: 'rkllm-tiny' }, { path: 'model', reason: 'model_not_found' });
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
