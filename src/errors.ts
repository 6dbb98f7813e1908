/** The machinery of the one error table (`src/error-table.ts`): `ServerError`, `fault`, and the form clients read. */
import { ERRORS, type ErrorSpec } from './error-table.js';

export { ERRORS, type ErrorSpec };

export type ErrorName = keyof typeof ERRORS;

/** Every name, in the order of the table. */
export const ERROR_NAMES = Object.keys(ERRORS) as ErrorName[];

type Spec<N extends ErrorName> = (typeof ERRORS)[N];
type MessageName<N extends ErrorName> = keyof Spec<N>['messages'] & string;
type Template<N extends ErrorName, M extends MessageName<N>> = Spec<N>['messages'][M] & string;

/** The `{names}` in a template. */
type Placeholders<S extends string> = S extends `${string}{${infer K}}${infer Rest}` ? K | Placeholders<Rest> : never;

/** The fields `data` may hold for error `N`. */
export type ErrorData<N extends ErrorName> = { [K in Spec<N>['data'][number]]?: unknown };

/** What a template needs: its placeholders' values, then the error's data (if any). */
type Args<N extends ErrorName, M extends MessageName<N>> = [Placeholders<Template<N, M>>] extends [never]
  ? [vars?: Record<string, never>, data?: ErrorData<N>]
  : [vars: Record<Placeholders<Template<N, M>>, string | number>, data?: ErrorData<N>];

/**
 * An error the server produces, by its name in the table. It carries the client-facing message and
 * `data`; how it travels (JSON-RPC error object, HTTP status) is the wire layer's business.
 */
export class ServerError extends Error {
  override readonly name: ErrorName;
  readonly data: unknown;

  constructor(name: ErrorName, message: string, data?: unknown) {
    super(message);
    this.name = name;
    this.data = data;
  }
}

/** An error as clients see it: a JSON-RPC error object, and the `error` of a final chunk. */
export interface ErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

/**
 * The one place an error becomes `{ code, message, data? }`. The wire layer calls it for JSON-RPC
 * replies and HTTP refusals; the streams layer calls it for a final chunk's `error`, because chunks
 * are stored (memory, Redis) in the form clients read them.
 */
export function errorObject(error: ServerError): ErrorObject {
  const code = ERRORS[error.name].code;
  return error.data === undefined ? { code, message: error.message } : { code, message: error.message, data: error.data };
}

/** Fills `{name}` placeholders from `vars`. */
export function fill(template: string, vars: Readonly<Record<string, string | number>> = {}): string {
  return template.replace(/\{(\w+)\}/g, (whole, key: string) => (key in vars ? String(vars[key]) : whole));
}

/**
 * Builds error `name` from its template `message`:
 * `fault('STREAM_NOT_FOUND', 'unknown', { stream_id }, { stream_id, reason: 'unknown' })`.
 */
export function fault<N extends ErrorName, M extends MessageName<N>>(name: N, message: M, ...[vars, data]: Args<N, M>): ServerError {
  const templates: Readonly<Record<string, string>> = ERRORS[name].messages;
  return new ServerError(name, fill(templates[message]!, vars), data);
}
