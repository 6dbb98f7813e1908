/** The fields chat completions and completions share: sampling, stop, `n`, streaming. */
import type { SamplingParams } from '../../engine/types.js';
import { checkSampling } from '../generation-request.js';
import { badField, field } from '../http-kit.js';

/** OpenAI's names of the sampling fields (`top_k` and `repeat_penalty` are llama-server's extensions). */
const SAMPLING: Array<[string, keyof SamplingParams]> = [
  ['temperature', 'temperature'],
  ['top_p', 'top_p'],
  ['top_k', 'top_k'],
  ['repeat_penalty', 'repeat_penalty'],
  ['frequency_penalty', 'frequency_penalty'],
  ['presence_penalty', 'presence_penalty'],
  ['seed', 'seed'],
];

export interface CommonFields {
  model: string | undefined;
  maxTokens: number | undefined;
  sampling: Partial<SamplingParams>;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
}

export function readCommon(body: Record<string, unknown>): CommonFields {
  const n = field(body, 'n', 'number');
  if (n !== undefined && n !== 1) throw badField('n', `must be 1: this server generates one choice per request; got ${n}`);
  const sampling: Partial<SamplingParams> = {};
  for (const [name, key] of SAMPLING) {
    const value = field(body, name, 'number');
    if (value === undefined) continue;
    checkSampling(key, value, name);
    sampling[key] = value;
  }
  let maxTokens: number | undefined;
  for (const name of ['max_completion_tokens', 'max_tokens']) {
    const value = field(body, name, 'number');
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value < 1) throw badField(name, `must be a positive integer; got ${value}`);
    maxTokens ??= value;
  }
  const stream = field(body, 'stream', 'boolean') ?? false;
  const options = field(body, 'stream_options', 'object');
  return {
    model: field(body, 'model', 'string'),
    maxTokens,
    sampling,
    stop: readStop(body.stop),
    stream,
    includeUsage: stream && options?.include_usage === true,
  };
}

/** `stop`: a string or an array of strings (both APIs). */
export function readStop(value: unknown, name = 'stop'): string[] {
  if (value === undefined || value === null) return [];
  if (typeof value === 'string') return [value];
  if (Array.isArray(value) && value.every((s) => typeof s === 'string')) return value;
  throw badField(name, 'must be a string or an array of strings');
}

/** OpenAI's finish reasons. */
export function finishReason(reason: string, calls: number): 'stop' | 'length' | 'tool_calls' {
  if (calls > 0) return 'tool_calls';
  return reason === 'length' ? 'length' : 'stop';
}

export function usage(result: {
  perf: { prefill_tokens: number; generate_tokens: number };
  input_tokens?: number;
}): Record<string, number> {
  const { perf } = result;
  const prompt = result.input_tokens ?? perf.prefill_tokens;
  return {
    prompt_tokens: prompt,
    completion_tokens: perf.generate_tokens,
    total_tokens: prompt + perf.generate_tokens,
  };
}
