/**
 * The one declaration of a generation request's fields (sampling, limits, stop strings, templates
 * and tools), by their names in rkllm.h, as JSON Schema. Every API's check is derived from it:
 * JSON-RPC takes the names as they are (`compileParams`, ajv), OpenAI and Ollama through a name map
 * (`fieldReader`), MCP as zod shapes (`zodShape`). So a range has one value everywhere.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { z } from 'zod';
import { fault, type ServerError } from './errors.js';

/** A JSON Schema (draft-07 subset) as plain data, so `rkllm_list_functions` can publish it. */
export type JsonSchema = Record<string, unknown>;

/** An object schema that refuses unknown fields, so a typo never passes silently. */
export function object<P extends Record<string, JsonSchema>>(properties: P, required: string[] = []) {
  return { type: 'object', properties, required, additionalProperties: false } as const;
}

const described = (description?: string): JsonSchema => (description ? { description } : {});
export const int = (minimum: number, maximum: number, description?: string) =>
  ({ type: 'integer', minimum, maximum, ...described(description) }) as const;
export const num = (minimum: number, maximum: number, description?: string) =>
  ({ type: 'number', minimum, maximum, ...described(description) }) as const;
export const str = (description?: string, maxLength?: number) =>
  ({ type: 'string', ...(maxLength === undefined ? {} : { maxLength }), ...described(description) }) as const;
export const bool = (description?: string) => ({ type: 'boolean', ...described(description) }) as const;

/** The sampling fields of RKLLMParam that a run may override (RKLLM 1.3's `sampling_params`). */
export const SAMPLING = {
  temperature: num(0, 100, 'Sampling temperature; 0 is greedy'),
  top_k: int(0, 1_000_000, 'Keep the k most likely tokens; 1 is greedy, 0 disables'),
  top_p: num(0, 1, 'Nucleus sampling threshold'),
  repeat_penalty: num(0, 10, 'Penalty for repeating recent tokens; 1 disables'),
  frequency_penalty: num(-2, 2),
  presence_penalty: num(-2, 2),
  mirostat: int(0, 2),
  mirostat_tau: num(0, 100),
  mirostat_eta: num(0, 10),
  /** Any safe integer, taken modulo 2^32 (`seedOf`): -1 and 4294967295 are the same seed. */
  seed: int(
    -Number.MAX_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER,
    'Not in rkllm.h: seed for reproducible sampling; any integer, taken modulo 2^32',
  ),
};

/** The fields of a generation request, declared once. */
export const REQUEST_FIELDS = {
  ...SAMPLING,
  /**
   * For `rkllm_init` and for each run: -1 (or 0 at init) fills the context. The engines read it
   * with one rule (src/engine/token-budget.ts); a run's 0, or a value beyond the model's context,
   * is refused when the model is known (`checkMaxNewTokens`).
   */
  max_new_tokens: int(-1, 1 << 20, 'Tokens to generate at most; -1 fills the context'),
  stop: {
    anyOf: [str(), { type: 'array', items: str(), maxItems: 16 }],
    description: 'Stop sequences (a string or up to 16): the text ends before the first one',
  },
  chat_template: object({ system_prompt: str(), prompt_prefix: str(), prompt_postfix: str() }, [
    'system_prompt',
    'prompt_prefix',
    'prompt_postfix',
  ]),
  function_tools: object(
    {
      system_prompt: str(),
      tools: str('A JSON array of tool definitions'),
      tool_response_str: str('Tag for tool results, e.g. "tool_response"'),
    },
    ['system_prompt', 'tools', 'tool_response_str'],
  ),
};
export type FieldName = keyof typeof REQUEST_FIELDS;

/** The type a declared schema admits (an object's fields all given, as the declared objects require). */
type ValueOf<S> = S extends { type: 'integer' | 'number' }
  ? number
  : S extends { type: 'string' }
    ? string
    : S extends { type: 'boolean' }
      ? boolean
      : S extends { type: 'object'; properties: infer P }
        ? { -readonly [K in keyof P]: ValueOf<P[K]> }
        : string | string[];

/** The declared fields' types, each given (`stop` in its one shape, an array). */
export type Declared = { [K in FieldName]: K extends 'stop' ? string[] : ValueOf<(typeof REQUEST_FIELDS)[K]> };

/** A request's fields by their declared names, as every API's check gives them. */
export type RequestFields = Partial<Declared>;

/** Fields declared with a default: each is its schema and its default value. */
type WithDefaults = Record<string, readonly [JsonSchema, unknown]>;

const schemasOf = <F extends WithDefaults>(fields: F): { [K in keyof F]: F[K][0] } =>
  Object.fromEntries(Object.entries(fields).map(([name, [schema]]) => [name, schema])) as never;

/** The defaults of `fields`, as a fresh object. */
const defaultsOf = (fields: WithDefaults): Record<string, unknown> =>
  structuredClone(Object.fromEntries(Object.entries(fields).map(([name, [, value]]) => [name, value])));

const EXTEND_PARAM = {
  base_domain_id: [int(0, 2 ** 31 - 1), 0],
  embed_flash: [int(0, 1, 'Keep embeddings in flash (NPU only)'), 0],
  enabled_cpus_num: [int(0, 256, 'CPU threads; the llama.cpp engine uses it as its thread count when > 0'), 0],
  enabled_cpus_mask: [int(0, 2 ** 32 - 1, 'Bitwise OR of CPU0..CPU7 (see rkllm_get_constants)'), 0],
  n_batch: [int(1, 100, 'Inputs per forward pass (NPU only; the llama.cpp engine batches its parallel slots)'), 1],
  use_cross_attn: [int(0, 1), 0],
} as const;

/**
 * RKLLMParam, what `rkllm_init` takes: each field's schema and its default, the one of
 * `rkllm_createDefaultParam()` in rkllm.h (for engines without a library to ask, llama.cpp).
 */
const RKLLM_PARAM = {
  model_path: [
    { ...str('A model file name inside the models folder (setting folders.models; GGUF for the llama.cpp engine)'), minLength: 1 },
    '',
  ],
  max_context_len: [int(16, 1 << 20), 512],
  max_new_tokens: [REQUEST_FIELDS.max_new_tokens, -1],
  top_k: [SAMPLING.top_k, 40],
  n_keep: [int(-1, 1 << 20, 'Tokens kept at the start when old history is dropped'), 0],
  top_p: [SAMPLING.top_p, 0.9],
  temperature: [SAMPLING.temperature, 0.8],
  repeat_penalty: [SAMPLING.repeat_penalty, 1.1],
  frequency_penalty: [SAMPLING.frequency_penalty, 0],
  presence_penalty: [SAMPLING.presence_penalty, 0],
  mirostat: [SAMPLING.mirostat, 0],
  mirostat_tau: [SAMPLING.mirostat_tau, 5.0],
  mirostat_eta: [SAMPLING.mirostat_eta, 0.1],
  skip_special_token: [bool(), true],
  is_async: [bool(), false],
  img_start: [str(), ''],
  img_end: [str(), ''],
  img_content: [str(), ''],
  extend_param: [object(schemasOf(EXTEND_PARAM)), defaultsOf(EXTEND_PARAM)],
} as const;

/** `rkllm_init`'s params: RKLLMParam's fields, flat; only `model_path` is required. */
export const initSchema = object(schemasOf(RKLLM_PARAM), ['model_path']);

export type DeclaredParam = ValueOf<typeof initSchema>;

/** A fresh RKLLMParam with the defaults of rkllm.h's `rkllm_createDefaultParam()`. */
export const defaultParam = (): DeclaredParam => defaultsOf(RKLLM_PARAM) as DeclaredParam;

/** Refuses a run's `max_new_tokens` of 0 or beyond the context (rather than clamping it): INVALID_PARAMS. */
export function checkMaxNewTokens(maxNew: number | undefined, maxContext: number): void {
  if (maxNew !== undefined && (maxNew === 0 || maxNew > maxContext)) {
    throw fault('INVALID_PARAMS', 'detail', {
      detail: `"max_new_tokens" must be -1 or between 1 and ${maxContext} (max_context_len); got ${maxNew}`,
    });
  }
}

/** The seed the sampler takes: an unsigned 32-bit number. */
export const seedOf = (seed: number): number => seed >>> 0;

// verbose: errors carry the offending value, so messages can say what was received. allErrors: an
// unknown field (a typo such as "promt_input") is reported before the missing field it stands for.
const ajv = new Ajv({ allErrors: true, strict: true, useDefaults: false, allowUnionTypes: true, verbose: true });

function fieldName(path: string, child?: string, base?: string): string {
  const parts = [...(base === undefined ? [] : [base]), ...path.split('/').filter(Boolean), ...(child === undefined ? [] : [child])];
  return parts.length === 0 ? 'params' : parts.join('.');
}

/** A short JSON rendering of a received value. */
function received(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** ajv's first error (an unknown field first) as a sentence that names the field (under `base`), the problem and what was received. */
function describe(errors: ErrorObject[], base?: string): string {
  const error = errors.find((e) => e.keyword === 'additionalProperties') ?? errors[0];
  if (!error) return 'rejected by the schema';
  const p = error.params as Record<string, unknown>;
  const at = (child?: string): string => fieldName(error.instancePath, child, base);
  const got = `; got ${received(error.data)}`;
  switch (error.keyword) {
    case 'additionalProperties':
      return `unknown field "${at(String(p.additionalProperty))}"`;
    case 'required':
      return `missing required field "${at(String(p.missingProperty))}"`;
    case 'type':
      return `"${at()}" must be ${String(p.type).replace(',', ' or ')}${got}`;
    case 'enum':
      return `"${at()}" must be one of ${JSON.stringify(p.allowedValues)}${got}`;
    default:
      return `"${at()}" ${error.message ?? 'is invalid'}${got}`;
  }
}

/** Compiles a params schema into a check that throws -32602 naming the field and the problem. */
export function compileParams<T>(schema: JsonSchema): (params: unknown) => T {
  const validate: ValidateFunction = ajv.compile(schema);
  return (params: unknown): T => {
    if (!validate(params)) throw fault('INVALID_PARAMS', 'detail', { detail: describe(validate.errors ?? []) });
    return params as T;
  };
}

/** INVALID_PARAMS about field `name` of an HTTP API's body (its `path`, which the OpenAI face reports as `param`). */
export function badField(name: string, problem: string): ServerError {
  return fault('INVALID_PARAMS', 'detail', { detail: `"${name}" ${problem}` }, { path: name });
}

/**
 * How an API names a declared field: the field, or the field with the API's own range (`schema`,
 * with `problem` as its message) and a conversion of the value into the declared meaning (`map`).
 */
export type FieldSource = FieldName | { to: FieldName; schema?: JsonSchema; problem?: string; map?: (value: number) => number };

/** A value of field `name` in its one shape: `stop` as an array. */
const shaped = (name: FieldName, value: unknown): unknown => (name === 'stop' && typeof value === 'string' ? [value] : value);

/**
 * A reader of the fields an API names (`map`: the API's name, dotted when nested, to its source),
 * checked against the declaration. A field that is absent or null is left out; when two names
 * give one field the first one given wins; `stop` comes back as an array. A bad value throws
 * INVALID_PARAMS naming the field as the API spells it.
 */
export function fieldReader(map: Record<string, FieldSource>): (body: Record<string, unknown>) => RequestFields {
  const checks = Object.entries(map).map(([name, source]) => {
    const { to, schema, problem, map: convert } = typeof source === 'string' ? { to: source } : source;
    return { name, path: name.split('.'), to, validate: ajv.compile<unknown>(schema ?? REQUEST_FIELDS[to]), problem, convert };
  });
  return (body) => {
    const out: Record<string, unknown> = {};
    for (const { name, path, to, validate, problem, convert } of checks) {
      const value = path.reduce<unknown>(
        (at, key) => (typeof at === 'object' && at !== null ? (at as Record<string, unknown>)[key] : undefined),
        body,
      );
      if (value === undefined || value === null) continue;
      if (!validate(value)) {
        const detail = problem ? `"${name}" ${problem}; got ${received(value)}` : describe(validate.errors ?? [], name);
        throw fault('INVALID_PARAMS', 'detail', { detail }, { path: name });
      }
      out[to] ??= convert ? convert(value as number) : shaped(to, value);
    }
    return out;
  };
}

/** The zod shape of the declared fields `names`, each optional and in its one shape, for an MCP tool's input schema. */
export function zodShape<N extends FieldName>(names: readonly N[]): { [K in N]: z.ZodOptional<z.ZodType<NonNullable<RequestFields[K]>>> } {
  const zodOf = (name: FieldName): z.ZodType => {
    const declared = z.fromJSONSchema(REQUEST_FIELDS[name] as Parameters<typeof z.fromJSONSchema>[0]);
    return name === 'stop' ? declared.transform((value) => shaped(name, value)) : declared;
  };
  return Object.fromEntries(names.map((name) => [name, zodOf(name).optional()])) as never;
}

/** How deep arrays and objects may nest in a JSON body: deeper values would overflow the stack of whatever walks them. */
export const MAX_JSON_DEPTH = 64;

/** The deepest nesting of arrays and objects in JSON `text`, found without recursion (brackets inside strings skipped). */
export function jsonDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
    } else if (c === 0x5b || c === 0x7b) deepest = Math.max(deepest, ++depth);
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}

/**
 * The bounds of a JSON Schema that constrains the output (OpenAI's `response_format` and tool
 * parameters, Ollama's `format`): its grammar is built synchronously, on the event loop every
 * client shares, in a time that grows with the schema. Within them it takes a few milliseconds.
 * `choices`: enum entries, consts and anyOf/oneOf alternatives, in total.
 */
export const OUTPUT_SCHEMA_LIMITS = { bytes: 16 * 1024, depth: 32, choices: 500 } as const;

/** Refuses a schema over OUTPUT_SCHEMA_LIMITS with INVALID_PARAMS naming field `name`. */
export function checkOutputSchema(schema: unknown, name: string): void {
  const { bytes, depth, choices } = OUTPUT_SCHEMA_LIMITS;
  const text = JSON.stringify(schema);
  if (Buffer.byteLength(text) > bytes) throw badField(name, `must be at most ${bytes} bytes as JSON (it builds a grammar)`);
  if (jsonDepth(text) > depth) throw badField(name, `must nest at most ${depth} levels (it builds a grammar)`);
  let count = 0;
  const stack: unknown[] = [schema];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value !== 'object' || value === null) continue;
    for (const [key, child] of Object.entries(value)) {
      if (Array.isArray(child) && ['enum', 'anyOf', 'oneOf'].includes(key)) count += child.length;
      else if (key === 'const') count++;
      stack.push(child);
    }
  }
  if (count > choices)
    throw badField(name, `must have at most ${choices} enum entries, consts and anyOf/oneOf alternatives in all; got ${count}`);
}
