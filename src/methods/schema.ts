import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { fault } from '../errors.js';

/** A JSON Schema (draft-07 subset) as plain data, so `rkllm_list_functions` can publish it. */
export type JsonSchema = Record<string, unknown>;

// verbose: errors carry the offending value, so messages can say what was received. allErrors: an
// unknown field (a typo such as "promt_input") is reported before the missing field it stands for.
const ajv = new Ajv({ allErrors: true, strict: true, useDefaults: false, allowUnionTypes: true, verbose: true });

function fieldName(path: string, child?: string): string {
  const parts = path.split('/').filter(Boolean);
  if (child !== undefined) parts.push(child);
  return parts.length === 0 ? 'params' : parts.join('.');
}

/** A short JSON rendering of a received value. */
function received(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Turns ajv's first error into a sentence that names the field, the problem and what was received. */
function describe(error: ErrorObject): string {
  const problem = problemOf(error);
  return error.keyword === 'additionalProperties' || error.keyword === 'required' ? problem : `${problem}; got ${received(error.data)}`;
}

function problemOf(error: ErrorObject): string {
  const p = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperties':
      return `unknown field "${fieldName(error.instancePath, String(p.additionalProperty))}"`;
    case 'required':
      return `missing required field "${fieldName(error.instancePath, String(p.missingProperty))}"`;
    case 'type':
      return `"${fieldName(error.instancePath)}" must be ${String(p.type).replace(',', ' or ')}`;
    case 'enum':
      return `"${fieldName(error.instancePath)}" must be one of ${JSON.stringify(p.allowedValues)}`;
    default:
      return `"${fieldName(error.instancePath)}" ${error.message ?? 'is invalid'}`;
  }
}

/** Compiles a params schema into a check that throws -32602 naming the field and the problem. */
export function compileParams<T>(schema: JsonSchema): (params: unknown) => T {
  const validate: ValidateFunction = ajv.compile(schema);
  return (params: unknown): T => {
    if (!validate(params)) {
      const errors = validate.errors ?? [];
      const first = errors.find((e) => e.keyword === 'additionalProperties') ?? errors[0];
      throw fault('INVALID_PARAMS', 'detail', { detail: `${first ? describe(first) : 'rejected by the schema'}` });
    }
    return params as T;
  };
}

/** An object schema that refuses unknown fields, so a typo never passes silently. */
export function object(properties: Record<string, JsonSchema>, required: string[] = []): JsonSchema {
  return { type: 'object', properties, required, additionalProperties: false };
}

export const int = (minimum: number, maximum: number, description?: string): JsonSchema => ({
  type: 'integer',
  minimum,
  maximum,
  ...(description ? { description } : {}),
});

export const num = (minimum: number, maximum: number, description?: string): JsonSchema => ({
  type: 'number',
  minimum,
  maximum,
  ...(description ? { description } : {}),
});

export const str = (description?: string, maxLength?: number): JsonSchema => ({
  type: 'string',
  ...(maxLength === undefined ? {} : { maxLength }),
  ...(description ? { description } : {}),
});

export const bool = (description?: string): JsonSchema => ({ type: 'boolean', ...(description ? { description } : {}) });

/** A JSON-RPC id given back as `request_id`. */
export const requestIdSchema: JsonSchema = {
  type: ['string', 'number', 'null'],
  description: 'The JSON-RPC id of the rkllm_run_async request',
};
