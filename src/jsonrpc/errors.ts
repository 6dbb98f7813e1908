import { ERROR_NAMES, ERRORS, ServerError, type ErrorName } from '../errors.js';

export type { ErrorName };

/**
 * The numeric code of every error, by name: a view of the table in src/errors.ts, kept for the code
 * that still compares numbers.
 */
export const ErrorCodes = Object.fromEntries(ERROR_NAMES.map((name) => [name, ERRORS[name].code])) as {
  readonly [N in ErrorName]: (typeof ERRORS)[N]['code'];
};

/**
 * The domain error under its former name. Code that still does `new RpcError(name, message, data)`
 * builds a `ServerError`; `instanceof RpcError` and `instanceof ServerError` are the same test.
 */
export const RpcError = ServerError;
export type RpcError = ServerError;

/** A -32602 with a message written at the call site (compatibility; new code uses `fault('INVALID_PARAMS', ...)`). */
export function invalidParams(message: string, data?: unknown): ServerError {
  return new ServerError('INVALID_PARAMS', message, data);
}

/** A JSON-RPC error object, as it goes on the wire. */
export interface JsonRpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

/** The JSON-RPC error object for `error`. */
export function toErrorObject(error: ServerError): JsonRpcErrorObject {
  const code = ERRORS[error.name].code;
  return error.data === undefined ? { code, message: error.message } : { code, message: error.message, data: error.data };
}
