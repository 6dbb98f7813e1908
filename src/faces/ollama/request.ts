/** Ollama's request fields: `options`, `format`, `stream`. */
import type { SamplingParams } from '../../engine/types.js';
import { checkSampling } from '../generation-request.js';
import { badField, field } from '../http-kit.js';
import { readStop } from '../openai/request.js';

const SAMPLING: Array<keyof SamplingParams> = [
  'temperature',
  'top_k',
  'top_p',
  'repeat_penalty',
  'frequency_penalty',
  'presence_penalty',
  'seed',
];

export interface OllamaOptions {
  maxTokens: number | undefined;
  sampling: Partial<SamplingParams>;
  stop: string[];
}

/** `options`: num_predict, the sampling fields and stop; the others (num_ctx, num_thread, ...) are accepted and ignored. */
export function readOptions(body: Record<string, unknown>): OllamaOptions {
  const options = field(body, 'options', 'object') ?? {};
  const sampling: Partial<SamplingParams> = {};
  for (const key of SAMPLING) {
    const value = field(options, key, 'number');
    if (value === undefined) continue;
    checkSampling(key, value, `options.${key}`);
    sampling[key] = value;
  }
  const predict = field(options, 'num_predict', 'number');
  if (predict !== undefined && (!Number.isInteger(predict) || predict === 0 || predict < -2)) {
    throw badField('options.num_predict', `must be a positive integer, -1 (no limit) or -2 (fill the context); got ${predict}`);
  }
  return { maxTokens: predict === undefined ? undefined : Math.max(predict, -1), sampling, stop: readStop(options.stop, 'options.stop') };
}

/** `format`: "json" (any JSON object) or a JSON Schema; undefined without. */
export function readFormat(body: Record<string, unknown>): Record<string, unknown> | undefined {
  const format = body.format;
  if (format === undefined || format === null || format === '') return undefined;
  if (format === 'json') return {};
  if (typeof format === 'object' && !Array.isArray(format)) return format as Record<string, unknown>;
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
