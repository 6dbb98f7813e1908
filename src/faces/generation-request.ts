/** What the OpenAI and Ollama faces share: the model's name, and a generation request as the hub's run parameters. */
import type { Client } from '../clients.js';
import { parseKeepAlive } from '../models/keep-alive.js';
import type { ModelLease } from '../models/loaded.js';
import { RKLLMInferMode, RKLLMInputType, type ChatMessage, type Engine, type SamplingParams } from '../engine/types.js';
import type { RunParams } from '../streams/hub.js';
import { badField, type HubDeps } from './http-kit.js';
import type { ToolDefinition } from './text-filters.js';

/**
 * A hold on the model a request names (absent: the default), loaded when needed; `keepAlive` is
 * the request's `keep_alive` (Ollama). An unknown name is INVALID_PARAMS "model_not_found" (404),
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
  let ms: number | undefined;
  if (keepAlive !== undefined && keepAlive !== null) {
    ms = parseKeepAlive(keepAlive);
    if (ms === undefined)
      throw badField('keep_alive', `must be a duration ("5m", "30s"), a number of seconds, 0 or -1; got ${JSON.stringify(keepAlive)}`);
  }
  return deps.models.use(requested, ms, signal, client.admin);
}

/** A generation in the words both APIs share. */
export interface GenerationRequest {
  /** A conversation (chat), or... */
  messages?: ChatMessage[];
  /** ...a raw prompt (completion), which goes to the engine as `rkllm_run`'s `prompt_input` does. */
  prompt?: string;
  maxTokens?: number;
  sampling: Partial<SamplingParams>;
  /** Constrains the output: `{}` for any JSON object. */
  jsonSchema?: Record<string, unknown>;
  tools?: readonly ToolDefinition[];
}

/** Range checks of the sampling fields, by their name in the engine (the faces name them in their own words). */
const RANGES: Record<keyof SamplingParams, [number, number, boolean]> = {
  temperature: [0, 100, false],
  top_p: [0, 1, false],
  top_k: [0, 1_000_000, true],
  repeat_penalty: [0, 10, false],
  frequency_penalty: [-2, 2, false],
  presence_penalty: [-2, 2, false],
  seed: [-(2 ** 53), 2 ** 53, true],
  mirostat: [0, 2, true],
  mirostat_tau: [0, 100, false],
  mirostat_eta: [0, 10, false],
};

/** Checks one sampling value; `name` is the field as the client spelled it. */
export function checkSampling(key: keyof SamplingParams, value: number, name: string): void {
  const [min, max, integer] = RANGES[key];
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw badField(name, `must be ${integer ? 'an integer' : 'a number'} between ${min} and ${max}; got ${value}`);
  }
}

/**
 * The hub's run parameters for `request`. `max_tokens` beyond the context is capped to it (as
 * llama-server does); a seed is dropped on an engine that samples without one (RKLLM); a seed
 * becomes an unsigned 32-bit number.
 */
export function toRunParams(engine: Engine, request: GenerationRequest, model?: string): RunParams {
  const sampling = { ...request.sampling };
  if (sampling.seed !== undefined) {
    if (engine.supports('seed')) sampling.seed = sampling.seed >>> 0;
    else delete sampling.seed;
  }
  const context = engine.param.max_context_len;
  const tools = request.tools && request.tools.length > 0 ? request.tools : undefined;
  return {
    ...(model === undefined ? {} : { model }),
    input: {
      role: 'user',
      enable_thinking: false,
      input_type: RKLLMInputType.RKLLM_INPUT_PROMPT,
      ...(request.messages ? { messages: request.messages } : { prompt_input: request.prompt ?? '' }),
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
