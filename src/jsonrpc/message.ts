import { errorObject, fault, type ErrorObject, type ServerError } from '../errors.js';
import { keepLargeIds, LargeId } from './large-id.js';

/** A JSON-RPC id: string, number (a LargeId beyond 2^53, kept exact) or null. `undefined` marks a notification. */
export type JsonRpcId = string | number | LargeId | null;

export interface JsonRpcRequest {
  jsonrpc: '2.0';
  method: string;
  params?: unknown;
  /** Absent for notifications. */
  id?: JsonRpcId;
}

export type JsonRpcResponse = { jsonrpc: '2.0'; id: JsonRpcId; result: unknown } | { jsonrpc: '2.0'; id: JsonRpcId; error: ErrorObject };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes and parses one wire message. Invalid UTF-8 and invalid JSON are both parse errors
 * (-32700), as JSON-RPC requires.
 */
export function parseMessage(raw: Uint8Array | string): unknown {
  let text = raw;
  try {
    text = typeof raw === 'string' ? raw : utf8.decode(raw);
    return keepLargeIds(JSON.parse(text), text);
  } catch (err) {
    throw typeof text === 'string' ? fault('PARSE_ERROR', 'json', { reason: (err as Error).message }) : fault('PARSE_ERROR', 'utf8');
  }
}

/** The JSON value in `raw`, or undefined when it is not JSON: a look at a message before the dispatcher's (which answers -32700). */
export function peekJson(raw: Uint8Array | string): unknown {
  try {
    return JSON.parse(typeof raw === 'string' ? raw : Buffer.from(raw).toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

function isValidId(id: unknown): id is JsonRpcId {
  return id === null || typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)) || id instanceof LargeId;
}

/** The id to answer an invalid request with: its own id when that id is well-formed, else null. */
export function salvageId(value: unknown): JsonRpcId {
  const id = typeof value === 'object' && value !== null && 'id' in value ? value.id : null;
  return isValidId(id) ? id : null;
}

/** Checks the envelope of one request; throws -32600 naming what is wrong. */
export function validateRequest(value: unknown): JsonRpcRequest {
  const invalid = (detail: string): ServerError => fault('INVALID_REQUEST', 'envelope', { detail });
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('a request must be a JSON object');
  const msg = value as Record<string, unknown>;
  if (msg.jsonrpc !== '2.0') throw invalid('"jsonrpc" must be exactly "2.0"');
  if (typeof msg.method !== 'string') throw invalid('"method" must be a string');
  if ('id' in msg && !isValidId(msg.id)) throw invalid('"id" must be a string, a number or null');
  if ('params' in msg && (typeof msg.params !== 'object' || msg.params === null)) throw invalid('"params" must be an object or an array');
  return msg as unknown as JsonRpcRequest;
}

export function resultResponse(id: JsonRpcId, result: unknown): JsonRpcResponse {
  return { jsonrpc: '2.0', id, result };
}

/** The response that answers request `id` with `error`: the wire layer's way of sending an error. */
export function errorResponse(id: JsonRpcId, error: ServerError): JsonRpcResponse {
  return { jsonrpc: '2.0', id, error: errorObject(error) };
}
