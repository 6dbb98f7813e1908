/** What the OpenAI and Ollama faces share: the model's name, and a generation request as the hub's run parameters. */
import type { Client } from '../clients.js';
import { parseKeepAlive } from '../models/keep-alive.js';
import type { ModelLease } from '../models/loaded.js';
import { RKLLMInferMode, RKLLMInputType, type ChatMessage, type Engine, type SamplingParams } from '../engine/types.js';
import type { RunParams } from '../streams/hub.js';
import { seedOf, type FieldName, type RequestFields } from '../request-schema.js';
import type { FaceMessage } from './chat-messages.js';
import { badField, type HubDeps } from './http-kit.js';
import type { ToolDefinition } from './text-filters.js';

/**
 * Whether `client`'s keep_alive counts: an admin's, or anyone's with models.user_loads. Else it is
 * checked and ignored, so a user key can neither shorten nor end the life of a model every key shares.
 */
export const honoursKeepAlive = (deps: HubDeps, client: Client): boolean => client.admin || deps.models.userLoads;

/**
 * A hold on the model a request names (absent: the default), loaded when needed; `keepAlive` is
 * the request's `keep_alive` (Ollama; see `honoursKeepAlive`). An unknown name is INVALID_PARAMS "model_not_found" (404),
 * before anything loads; a model that would need loading is FORBIDDEN (403) for a `client` that
 * may not load (a user key, unless models.user_loads). Release the lease once the request is answered.
 */
export function useModel(
  deps: HubDeps,
  client: Client,
  requested: string | undefined,
  keepAlive: unknown,
  signal: AbortSignal,
): Promise<ModelLease> {
  const ms = readKeepAlive(keepAlive);
  return deps.models.use(requested, honoursKeepAlive(deps, client) ? ms : undefined, signal, client.admin);
}

/** A request's `keep_alive` in ms (undefined when absent or null); INVALID_PARAMS naming it when it is no duration. */
export function readKeepAlive(keepAlive: unknown): number | undefined {
  if (keepAlive === undefined || keepAlive === null) return undefined;
  const ms = parseKeepAlive(keepAlive);
  if (ms === undefined)
    throw badField('keep_alive', `must be a duration ("5m", "30s"), a number of seconds, 0 or -1; got ${JSON.stringify(keepAlive)}`);
  return ms;
}

/** A generation in the words both APIs share. */
export interface GenerationRequest {
  /** A conversation (chat), each message's images with it, or... */
  messages?: FaceMessage[];
  /** ...a raw prompt (completion), which goes to the engine as `rkllm_run`'s `prompt_input` does, with its `<image>` placed. */
  prompt?: string;
  /** The prompt's images (with `prompt` only). */
  images?: Uint8Array[];
  maxTokens?: number;
  sampling: Partial<SamplingParams>;
  /** Constrains the output: `{}` for any JSON object. */
  jsonSchema?: Record<string, unknown>;
  tools?: readonly ToolDefinition[];
}

/** The sampling fields OpenAI and Ollama take, by their declared names (the faces' name maps add a prefix or none). */
export const FACE_SAMPLING: readonly FieldName[] = [
  'temperature',
  'top_p',
  'top_k',
  'repeat_penalty',
  'frequency_penalty',
  'presence_penalty',
  'seed',
];

/** `stop` in OpenAI and Ollama: a string or an array of strings. */
export const FACE_STOP = { to: 'stop', problem: 'must be a string or an array of up to 16 strings' } as const;

/** The declared fields a face reads, as a generation's limit and sampling, and the stop strings. */
export interface RequestParts extends Pick<GenerationRequest, 'maxTokens' | 'sampling'> {
  stop: string[];
}

export function requestParts(fields: RequestFields): RequestParts {
  const { max_new_tokens: maxTokens, stop = [], ...sampling } = fields;
  return { maxTokens, sampling, stop };
}

/**
 * The hub's run parameters for `request`. `max_tokens` beyond the context is capped to it (as
 * llama-server does); a seed is dropped on an engine that samples without one (RKLLM); a seed
 * becomes the sampler's (`seedOf`).
 */
export function toRunParams(engine: Engine, request: GenerationRequest, model?: string): RunParams {
  const sampling = { ...request.sampling };
  if (sampling.seed !== undefined) {
    if (engine.supports('seed')) sampling.seed = seedOf(sampling.seed);
    else delete sampling.seed;
  }
  const context = engine.param.max_context_len;
  const tools = request.tools && request.tools.length > 0 ? request.tools : undefined;
  const images = request.messages ? request.messages.flatMap((m) => m.images ?? []) : (request.images ?? []);
  return {
    ...(model === undefined ? {} : { model }),
    input: {
      role: 'user',
      enable_thinking: false,
      input_type: RKLLMInputType.RKLLM_INPUT_PROMPT,
      ...(request.messages
        ? { messages: request.messages.map(({ role, content }): ChatMessage => ({ role, content })) }
        : { prompt_input: request.prompt ?? '' }),
      ...(images.length > 0 ? { images } : {}),
    },
    infer: {
      mode: RKLLMInferMode.RKLLM_INFER_GENERATE,
      keep_history: 0,
      ...(request.maxTokens === undefined ? {} : { max_new_tokens: Math.min(request.maxTokens, context) }),
      sampling_params: sampling,
      ...(request.jsonSchema ? { json_schema: request.jsonSchema } : {}),
      ...(tools ? { function_tools: { system_prompt: '', tools: JSON.stringify(tools), tool_response_str: '' } } : {}),
    },
  };
}

/** The run parameters of an embedding: the input's last hidden layer (GET_LAST_HIDDEN_LAYER). */
export function embeddingParams(text: string, model?: string): RunParams {
  return {
    ...(model === undefined ? {} : { model }),
    input: { role: 'user', enable_thinking: false, input_type: RKLLMInputType.RKLLM_INPUT_PROMPT, prompt_input: text },
    infer: { mode: RKLLMInferMode.RKLLM_INFER_GET_LAST_HIDDEN_LAYER, keep_history: 0 },
  };
}

/**
 * The embedding of one text: the rows of the last hidden layer the engine returns, averaged
 * (mean pooling), then scaled to unit length. On llama.cpp the engine returns one row (node-llama-cpp's
 * embedding of the whole input); on RKLLM one row per input token.
 */
export function pool(hidden: { hidden_states: number[]; embd_size: number; num_tokens: number }): number[] {
  const { hidden_states: values, embd_size: size, num_tokens: rows } = hidden;
  const mean = new Array<number>(size).fill(0);
  for (let r = 0; r < rows; r++) for (let i = 0; i < size; i++) mean[i]! += values[r * size + i]! / rows;
  const norm = Math.hypot(...mean);
  return norm > 0 ? mean.map((v) => v / norm) : mean;
}
