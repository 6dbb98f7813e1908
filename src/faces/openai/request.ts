/** The fields chat completions and completions share: sampling, stop, `n`, streaming. */
import { fieldReader } from '../../request-schema.js';
import { FACE_SAMPLING, FACE_STOP, requestParts, type RequestParts } from '../generation-request.js';
import type { TextRun } from '../generation.js';
import { badField, field } from '../http-kit.js';

/** OpenAI's max tokens: at least 1 (beyond the context it is capped to it, as llama-server does). */
const MAX_TOKENS = { to: 'max_new_tokens', schema: { type: 'integer', minimum: 1 }, problem: 'must be a positive integer' } as const;

/** OpenAI's names of the declared fields (`top_k` and `repeat_penalty` are llama-server's extensions). */
const readFields = fieldReader({
  ...Object.fromEntries(FACE_SAMPLING.map((n) => [n, n])),
  max_completion_tokens: MAX_TOKENS,
  max_tokens: MAX_TOKENS,
  stop: FACE_STOP,
});

export interface CommonFields extends RequestParts {
  model: string | undefined;
  stream: boolean;
  includeUsage: boolean;
}

export function readCommon(body: Record<string, unknown>): CommonFields {
  const n = field(body, 'n', 'number');
  if (n !== undefined && n !== 1) throw badField('n', `must be 1: this server generates one choice per request; got ${n}`);
  const stream = field(body, 'stream', 'boolean') ?? false;
  const options = field(body, 'stream_options', 'object');
  return {
    model: field(body, 'model', 'string'),
    ...requestParts(readFields(body)),
    stream,
    includeUsage: stream && options?.include_usage === true,
  };
}

/** OpenAI's finish reasons. */
export function finishReason(reason: string, calls: number): 'stop' | 'length' | 'tool_calls' {
  if (calls > 0) return 'tool_calls';
  return reason === 'length' ? 'length' : 'stop';
}

export function usage(result: Pick<TextRun, 'perf' | 'input_tokens'>): Record<string, number> {
  const { perf } = result;
  const prompt = result.input_tokens ?? perf.prefill_tokens;
  return {
    prompt_tokens: prompt,
    completion_tokens: perf.generate_tokens,
    total_tokens: prompt + perf.generate_tokens,
  };
}
