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
  /** TCP: one JSON-RPC message per line (NDJSON) both ways; chunks are pushed live. */
  tcp: {
    enabled: boolean;
    port: number;
    /** Longest line (one message) accepted, in bytes; a longer one is answered -32600 and the connection closed. */
    max_line_bytes: number;
  };
  /** UDP: one message per datagram; replies go to the sender; streams are also buffered, for repair by `poll`. */
  udp: {
    enabled: boolean;
    port: number;
    /** Largest datagram received or sent, in bytes (65507 is the most IPv4 carries); larger ones get an error naming it. */
    max_datagram_bytes: number;
  };
  /** WebSocket: one message per text frame; chunks are pushed live. */
  ws: {
    enabled: boolean;
    port: number;
    /** Largest message accepted, in bytes; a larger one closes the connection with 1009 (Message Too Big). */
    max_message_bytes: number;
  };
  /** stdio (`--stdio`): NDJSON on stdin/stdout for a parent process; the server exits 0 when stdin ends. */
  stdio: {
    enabled: boolean;
    /** Longest line (one message) accepted, in bytes; a longer one is answered -32600 and skipped. */
    max_line_bytes: number;
  };
  /** Limits of every live connection (TCP, WebSocket, stdio; UDP takes the send cap). */
  connections: {
    /** Open connections per transport (TCP, WebSocket) at most; a new one beyond it is told why and closed. */
    max_connections: number;
    /** Seconds a connection may stay open with nothing received and nothing in progress (no request, no live stream; HTTP: between requests); 0 never closes. */
    idle_timeout_s: number;
    /**
     * Bytes waiting to be sent per connection at most (over UDP: for all peers). Past it, reading
     * from the connection pauses, its streams end with a -32010 error chunk, and detached streams
     * stop being pushed to it (they keep buffering).
     */
    max_send_buffer_bytes: number;
    /** Requests one connection may have in progress at once; reading from it pauses beyond that. */
    max_inflight: number;
  };
  engine: {
    /** "llama.cpp" (any CPU, GGUF models) or "rkllm" (Rockchip's NPU runtime, .rkllm models). */
    kind: 'llama.cpp' | 'rkllm';
    /** A GGUF file (llama.cpp; null uses the built-in model, generated on first use) or an .rkllm file (rkllm; required). */
    model_path: string | null;
    /** CPU threads; 0 picks all cores but one (the server's own thread needs one). */
    threads: number;
    /** Generations run at once (context sequences). */
    parallel: number;
    /** Runs waiting for a slot at most; beyond it callers get a busy error. */
    queue_limit: number;
    max_context_len: number;
    /** The RKLLM engine: librkllmrt.so through FFI, in a worker process that is restarted when it crashes. */
    rkllm: {
      /** librkllmrt.so: a path, or a file name the dynamic loader finds (LD_LIBRARY_PATH, /usr/lib). */
      library: string;
      /** The struct layout of the library: "1.2", "1.3", or "auto" (told by the library's default parameters). */
      runtime_version: 'auto' | '1.2' | '1.3';
      /** RKLLMExtendParam at start: CPU cores for the runtime's threads (enabled_cpus_mask, e.g. 240 = CPU4-7), inputs per forward pass (n_batch). */
      extend_param: { base_domain_id: number; embed_flash: number; enabled_cpus_num: number; enabled_cpus_mask: number; n_batch: number };
      /** The first delay before restarting a crashed runtime, in ms; it doubles with each failure in a row. */
      restart_delay_ms: number;
      restart_max_delay_ms: number;
      /** Failed restarts in a row before the engine gives up (the status method then shows "failed"). */
      max_restarts: number;
      /** How long loading the library and the model (rkllm_init) may take, in ms. */
      init_timeout_ms: number;
    };
  };
  jsonrpc: {
    max_batch: number;
  };
  streams: {
    /** Seconds a buffer may go unpolled before it expires. */
    buffer_timeout_s: number;
    /** Seconds between sweeps for expired buffers. */
    cleanup_interval_s: number;
    max_buffers: number;
    max_buffer_bytes: number;
    /** Longest long-poll, in ms. */
    max_wait_ms: number;
    /** Where buffers live: "memory" (this process) or "redis" (shared by every instance using the same Redis). */
    store: 'memory' | 'redis';
  };
  /** The shared buffer store, with `streams.store: "redis"`. */
  redis: {
    /** redis://[user:password@]host:port[/db] or rediss://...; `--redis URL` sets it and the store. */
    url: string | null;
    /** Prefix of every key, so several deployments can share one Redis. */
    key_prefix: string;
    /** How long an instance's lease on the streams it generates lasts; if it is not renewed (the instance died), their pollers get an error chunk. */
    lease_ms: number;
    /** How long storing a chunk is retried while Redis is unreachable before the stream is stopped with an error. */
    retry_ms: number;
    /** Connections for blocking reads (long polls) per instance at most; further long polls wait for one. */
    max_blocking_connections: number;
  };
  /** API keys. With at least one, every request on every transport must carry a key, and a stream belongs to the key that started it. */
  auth: {
    /** The accepted keys: 16 to 4096 characters of A-Z a-z 0-9 . _ ~ + / - (a Bearer token); none turns authentication off. */
    api_keys: string[];
  };
  /** Limits per client: per API key, or per client address when there are no keys. 0 turns a limit off. Refusals carry retry_after. */
  limits: {
    /** Requests a client may send per second, sustained. */
    requests_per_second: number;
    /** Requests a client may send at once beyond that rate. */
    request_burst: number;
    /** Streams (rkllm_run_async, rkllm_run) a client may have queued or running at once. */
    max_streams: number;
    /** Connections a client may hold open on each transport (TCP, WebSocket; HTTP: requests in progress). */
    max_connections: number;
  };
  /** Graceful shutdown, on SIGTERM or SIGINT (a second signal exits at once). */
  shutdown: {
    /** Seconds running streams may take to finish, and buffered ones to be polled to their end; the rest then end with finish_reason "shutdown". */
    drain_timeout_s: number;
    /** Seconds the final chunks of the streams cut short stay pollable before the process exits. */
    final_poll_timeout_s: number;
  };
}

export function defaultSettings(): Settings {
  return {
    host: '127.0.0.1',
    diagnostics: false,
    log_level: 'info',
    http: { enabled: true, port: 8082, max_body_bytes: 1024 * 1024 },
    tcp: { enabled: true, port: 8080, max_line_bytes: 1024 * 1024 },
    udp: { enabled: true, port: 8081, max_datagram_bytes: 65_507 },
    ws: { enabled: true, port: 8083, max_message_bytes: 1024 * 1024 },
    stdio: { enabled: false, max_line_bytes: 1024 * 1024 },
    connections: { max_connections: 1024, idle_timeout_s: 300, max_send_buffer_bytes: 1024 * 1024, max_inflight: 64 },
    engine: {
      kind: 'llama.cpp',
      model_path: null,
      threads: 0,
      parallel: 4,
      queue_limit: 64,
      max_context_len: 2048,
      rkllm: {
        library: 'librkllmrt.so',
        runtime_version: 'auto',
        extend_param: { base_domain_id: 0, embed_flash: 0, enabled_cpus_num: 0, enabled_cpus_mask: 0, n_batch: 1 },
        restart_delay_ms: 500,
        restart_max_delay_ms: 30_000,
        max_restarts: 5,
        init_timeout_ms: 600_000,
      },
    },
    jsonrpc: { max_batch: 100 },
    streams: {
      buffer_timeout_s: 60,
      cleanup_interval_s: 30,
      max_buffers: 256,
      max_buffer_bytes: 1024 * 1024,
      max_wait_ms: 30_000,
      store: 'memory',
    },
    redis: { url: null, key_prefix: 'rkllm:', lease_ms: 5000, retry_ms: 10_000, max_blocking_connections: 64 },
    auth: { api_keys: [] },
    limits: { requests_per_second: 0, request_burst: 200, max_streams: 64, max_connections: 256 },
    shutdown: { drain_timeout_s: 30, final_poll_timeout_s: 5 },
  };
}

const port = { type: 'integer', minimum: 0, maximum: 65535 };
const positive = (maximum: number): object => ({ type: 'integer', minimum: 1, maximum });
const section = (properties: Record<string, object>): object => ({ type: 'object', additionalProperties: false, properties });

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
    tcp: section({ enabled: { type: 'boolean' }, port, max_line_bytes: positive(1024 ** 3) }),
    udp: section({ enabled: { type: 'boolean' }, port, max_datagram_bytes: { type: 'integer', minimum: 512, maximum: 65_507 } }),
    ws: section({ enabled: { type: 'boolean' }, port, max_message_bytes: positive(1024 ** 3) }),
    stdio: section({ enabled: { type: 'boolean' }, max_line_bytes: positive(1024 ** 3) }),
    connections: section({
      max_connections: positive(1_000_000),
      idle_timeout_s: { type: 'number', minimum: 0, maximum: 86_400 },
      max_send_buffer_bytes: positive(1024 ** 3),
      max_inflight: positive(100_000),
    }),
    engine: {
      type: 'object',
      additionalProperties: false,
      properties: {
        kind: { enum: ['llama.cpp', 'rkllm'] },
        model_path: { type: ['string', 'null'] },
        threads: { type: 'integer', minimum: 0, maximum: 1024 },
        parallel: positive(256),
        queue_limit: { type: 'integer', minimum: 0, maximum: 1_000_000 },
        max_context_len: { type: 'integer', minimum: 16, maximum: 1 << 20 },
        rkllm: section({
          library: { type: 'string', minLength: 1 },
          runtime_version: { enum: ['auto', '1.2', '1.3'] },
          extend_param: section({
            base_domain_id: { type: 'integer', minimum: 0, maximum: 2 ** 31 - 1 },
            embed_flash: { type: 'integer', minimum: 0, maximum: 1 },
            enabled_cpus_num: { type: 'integer', minimum: 0, maximum: 127 },
            enabled_cpus_mask: { type: 'integer', minimum: 0, maximum: 2 ** 32 - 1 },
            n_batch: positive(255),
          }),
          restart_delay_ms: positive(3_600_000),
          restart_max_delay_ms: positive(3_600_000),
          max_restarts: positive(1000),
          init_timeout_ms: positive(86_400_000),
        }),
      },
    },
    jsonrpc: { type: 'object', additionalProperties: false, properties: { max_batch: positive(100_000) } },
    streams: {
      type: 'object',
      additionalProperties: false,
      properties: {
        buffer_timeout_s: { type: 'number', exclusiveMinimum: 0, maximum: 86_400 },
        cleanup_interval_s: { type: 'number', exclusiveMinimum: 0, maximum: 86_400 },
        max_buffers: positive(1_000_000),
        max_buffer_bytes: positive(1024 ** 3),
        max_wait_ms: { type: 'integer', minimum: 0, maximum: 3_600_000 },
        store: { enum: ['memory', 'redis'] },
      },
    },
    redis: section({
      url: { type: ['string', 'null'], pattern: '^rediss?://' },
      key_prefix: { type: 'string', maxLength: 100 },
      lease_ms: { type: 'integer', minimum: 100, maximum: 3_600_000 },
      retry_ms: { type: 'integer', minimum: 0, maximum: 3_600_000 },
      max_blocking_connections: positive(10_000),
    }),
    auth: section({
      api_keys: {
        type: 'array',
        uniqueItems: true,
        maxItems: 10_000,
        items: { type: 'string', minLength: 16, maxLength: 4096, pattern: '^[A-Za-z0-9._~+/-]+=*$' },
      },
    }),
    limits: section({
      requests_per_second: { type: 'number', minimum: 0, maximum: 1_000_000 },
      request_burst: positive(1_000_000),
      max_streams: { type: 'integer', minimum: 0, maximum: 1_000_000 },
      max_connections: { type: 'integer', minimum: 0, maximum: 1_000_000 },
    }),
    shutdown: section({
      drain_timeout_s: { type: 'number', minimum: 0, maximum: 86_400 },
      final_poll_timeout_s: { type: 'number', minimum: 0, maximum: 3600 },
    }),
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
  const key = [
    ...error.instancePath.split('/').filter(Boolean),
    ...(typeof p.additionalProperty === 'string' ? [p.additionalProperty] : []),
  ].join('.');
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

/** The defaults, then each layer in order (the file, the environment, the flags), later ones winning; each layer validated. */
export function resolveSettings(layers: Array<{ source: string; values: unknown }>): Settings {
  let settings = defaultSettings();
  for (const layer of layers) {
    checkSettings(layer.values, layer.source);
    settings = merge(settings, layer.values);
  }
  if (settings.engine.kind === 'rkllm' && settings.engine.model_path === null) {
    throw new SettingsError('setting "engine.model_path" is required with engine.kind "rkllm": give the .rkllm model (--model FILE.rkllm)');
  }
  return settings;
}
