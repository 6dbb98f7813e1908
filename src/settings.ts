import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';

/** Every setting, with its default. Times are in the units their names say. */
export interface Settings {
  host: string;
  diagnostics: boolean;
  log_level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  http: {
    enabled: boolean;
    port: number;
    /** Largest request body accepted, in bytes. */
    max_body_bytes: number;
  };
  engine: {
    kind: 'llama.cpp';
    /** A GGUF file; null uses the built-in model, generated on first use. */
    model_path: string | null;
    /** CPU threads; 0 picks: 1 for models under 64 MiB (thread sync dominates), else all cores. */
    threads: number;
    /** Generations run at once (context sequences). */
    parallel: number;
    /** Runs waiting for a slot at most; beyond it callers get a busy error. */
    queue_limit: number;
    max_context_len: number;
  };
  jsonrpc: {
    max_batch: number;
  };
  streams: {
    /** Seconds a buffer may go unpolled before it expires. */
    buffer_timeout: number;
    /** Seconds between sweeps for expired buffers. */
    cleanup_interval: number;
    max_buffers: number;
    max_buffer_bytes: number;
    /** Longest long-poll, in ms. */
    max_wait_ms: number;
  };
}

export function defaultSettings(): Settings {
  return {
    host: '127.0.0.1',
    diagnostics: false,
    log_level: 'info',
    http: { enabled: true, port: 8082, max_body_bytes: 1024 * 1024 },
    engine: { kind: 'llama.cpp', model_path: null, threads: 0, parallel: 4, queue_limit: 64, max_context_len: 2048 },
    jsonrpc: { max_batch: 100 },
    streams: { buffer_timeout: 60, cleanup_interval: 30, max_buffers: 256, max_buffer_bytes: 1024 * 1024, max_wait_ms: 30_000 },
  };
}

const port = { type: 'integer', minimum: 0, maximum: 65535 };
const positive = (maximum: number): object => ({ type: 'integer', minimum: 1, maximum });

const settingsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    host: { type: 'string', minLength: 1 },
    diagnostics: { type: 'boolean' },
    log_level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    http: {
      type: 'object',
      additionalProperties: false,
      properties: { enabled: { type: 'boolean' }, port, max_body_bytes: positive(1024 ** 3) },
    },
    engine: {
      type: 'object',
      additionalProperties: false,
      properties: {
        kind: { enum: ['llama.cpp'] },
        model_path: { type: ['string', 'null'] },
        threads: { type: 'integer', minimum: 0, maximum: 1024 },
        parallel: positive(256),
        queue_limit: { type: 'integer', minimum: 0, maximum: 1_000_000 },
        max_context_len: { type: 'integer', minimum: 16, maximum: 1 << 20 },
      },
    },
    jsonrpc: { type: 'object', additionalProperties: false, properties: { max_batch: positive(100_000) } },
    streams: {
      type: 'object',
      additionalProperties: false,
      properties: {
        buffer_timeout: { type: 'number', exclusiveMinimum: 0, maximum: 86_400 },
        cleanup_interval: { type: 'number', exclusiveMinimum: 0, maximum: 86_400 },
        max_buffers: positive(1_000_000),
        max_buffer_bytes: positive(1024 ** 3),
        max_wait_ms: { type: 'integer', minimum: 0, maximum: 3_600_000 },
      },
    },
  },
};

const validate = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true }).compile(settingsSchema);

/** A settings problem, reported with the key and the expected value before the server stops. */
export class SettingsError extends Error {}

type Plain = Record<string, unknown>;

function isPlain(value: unknown): value is Plain {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Deep-merges `over` onto `base`; nested objects merge, everything else replaces. */
export function merge<T>(base: T, over: unknown): T {
  if (!isPlain(base) || !isPlain(over)) return over === undefined ? base : (over as T);
  const out: Plain = { ...base };
  for (const [key, value] of Object.entries(over)) out[key] = key in out ? merge(out[key], value) : value;
  return out as T;
}

/** Validates a partial settings object (from a file or flags), naming the key and what it expects. */
export function checkSettings(partial: unknown, source: string): void {
  if (validate(partial)) return;
  const error = validate.errors?.[0];
  if (!error) throw new SettingsError(`${source}: invalid settings`);
  const p = error.params as Plain;
  const key = [...error.instancePath.split('/').filter(Boolean), ...(typeof p.additionalProperty === 'string' ? [p.additionalProperty] : [])].join('.');
  const detail =
    error.keyword === 'additionalProperties'
      ? 'is not a known setting'
      : error.keyword === 'enum'
        ? `must be one of ${JSON.stringify(p.allowedValues)}`
        : (error.message ?? 'is invalid');
  throw new SettingsError(`${source}: setting "${key || '(root)'}" ${detail}`);
}

/** Reads a settings file (JSON); `resolveSettings` validates it. Missing keys keep their defaults. */
export function readSettingsFile(path: string): Plain {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SettingsError(`Cannot read settings file ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new SettingsError(`Settings file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  return parsed as Plain;
}

/** Defaults, then the file, then the flags; each layer validated. */
export function resolveSettings(layers: Array<{ source: string; values: unknown }>): Settings {
  let settings = defaultSettings();
  for (const layer of layers) {
    checkSettings(layer.values, layer.source);
    settings = merge(settings, layer.values);
  }
  return settings;
}
