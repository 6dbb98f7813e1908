/**
 * Every error the server can put on the wire, in one table.
 *
 * Each entry has a stable string code (used in logs and tests) and the numeric JSON-RPC code that
 * goes on the wire. The five standard codes come from the JSON-RPC 2.0 specification; the server's
 * own codes live in the implementation-defined range -32000..-32099.
 */
export const ErrorCodes = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  /** The run queue is full; `data.retry_after` (seconds) says when to try again. */
  BUSY: -32000,
  /** `poll`/`rkllm_abort` named a stream that does not exist, has expired or was released. */
  STREAM_NOT_FOUND: -32001,
  /** The maximum number of live stream buffers is reached. */
  TOO_MANY_STREAMS: -32002,
  /** Several live streams share the JSON-RPC id given as `request_id`. */
  AMBIGUOUS_REQUEST_ID: -32003,
  /** The engine is not loaded, is loading, or failed. */
  ENGINE_UNAVAILABLE: -32004,
  /** The active engine cannot do what was asked. */
  NOT_SUPPORTED: -32005,
  /** The engine reported a failure while running. */
  ENGINE_ERROR: -32006,
  /** A stream buffer reached its byte cap (appears in error chunks). */
  BUFFER_FULL: -32007,
  /** `rkllm_init` while a model is loaded or loading: the server holds one model; call `rkllm_destroy` first. */
  MODEL_LOADED: -32008,
  /** A stream the server stopped because its model went away (`rkllm_destroy`); appears in final chunks. */
  ABORTED: -32009,
  /** A live connection's send buffer passed its cap: the client does not read (error chunks and notices). */
  SEND_BUFFER_FULL: -32010,
  /** A transport's connection limit is reached; the new connection is told so and closed. */
  TOO_MANY_CONNECTIONS: -32011,
  /** A connection was closed for staying idle too long. */
  CONNECTION_IDLE: -32012,
  /** The shared stream store (Redis) cannot be reached; retry once it is back (replies and error chunks). */
  STORE_UNAVAILABLE: -32013,
  /** The instance generating a stream stopped renewing its lease (it died or lost Redis); appears in final chunks. */
  STREAM_OWNER_LOST: -32014,
  /** A missing or wrong API key, on every transport (HTTP answers it with status 401). It says nothing more. */
  UNAUTHORIZED: -32015,
  /** A per-client limit is reached (request rate, streams, connections); `data.limit` names the setting, `data.retry_after` the seconds to wait. */
  RATE_LIMITED: -32016,
  /** The server is shutting down: it starts no new runs; a final chunk with `finish_reason: "shutdown"` carries it when a stream is cut short. */
  SHUTTING_DOWN: -32017,
} as const;

export type ErrorName = keyof typeof ErrorCodes;

/** An error that is meant to reach the client as a JSON-RPC error object. */
export class RpcError extends Error {
  readonly code: number;
  readonly data: unknown;

  constructor(name: ErrorName, message: string, data?: unknown) {
    super(message);
    this.name = name;
    this.code = ErrorCodes[name];
    this.data = data;
  }

  toJSON(): { code: number; message: string; data?: unknown } {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}

export function invalidParams(message: string, data?: unknown): RpcError {
  return new RpcError('INVALID_PARAMS', message, data);
}
