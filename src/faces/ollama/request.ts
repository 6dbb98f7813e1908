/** Ollama's request fields: `options`, `format`, `stream`. */
import { checkOutputSchema, fieldReader } from '../../request-schema.js';
import { FACE_SAMPLING, FACE_STOP, requestParts, type RequestParts } from '../generation-request.js';
import { badField, field } from '../http-kit.js';

/** Ollama's names of the declared fields, in `options`; num_predict -2 (fill the context) is -1. */
const readFields = fieldReader({
  ...Object.fromEntries(FACE_SAMPLING.map((n) => [`options.${n}`, n])),
  'options.num_predict': {
    to: 'max_new_tokens',
    schema: { type: 'integer', minimum: -2, not: { const: 0 } },
    problem: 'must be a positive integer, -1 (no limit) or -2 (fill the context)',
    map: (predict) => Math.max(predict, -1),
  },
  'options.stop': FACE_STOP,
});

/** `options`: num_predict, the sampling fields and stop; the others (num_ctx, num_thread, ...) are accepted and ignored. */
export function readOptions(body: Record<string, unknown>): RequestParts {
  field(body, 'options', 'object');
  return requestParts(readFields(body));
}

/** `format`: "json" (any JSON object) or a JSON Schema; undefined without. */
export function readFormat(body: Record<string, unknown>): Record<string, unknown> | undefined {
  const format = body.format;
  if (format === undefined || format === null || format === '') return undefined;
  if (format === 'json') return {};
  if (typeof format === 'object' && !Array.isArray(format)) {
    checkOutputSchema(format, 'format');
    return format as Record<string, unknown>;
  }
  throw badField('format', 'must be "json" or a JSON Schema object');
}

/** `stream`: true unless the request says false. */
export function readStream(body: Record<string, unknown>): boolean {
  return field(body, 'stream', 'boolean') ?? true;
}

/** `model` (or the older `name`). */
export function readModel(body: Record<string, unknown>): string | undefined {
  return field(body, 'model', 'string') ?? field(body, 'name', 'string');
}
