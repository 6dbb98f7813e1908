import {
  boolean,
  defaultsOf,
  integer,
  nullableString,
  number,
  oneOf,
  section,
  string,
  stringList,
  stringMap,
  type Leaf,
  type ValueOf,
} from './setting-kinds.js';

/** What an API key may be: a Bearer token (RFC 6750's token68), long enough not to be guessed. */
const API_KEY = { minLength: 16, maxLength: 4096, pattern: '^[A-Za-z0-9._~+/-]+=*$' };

const MiB = 1024 * 1024;
const GiB = 1024 ** 3;

const port = (value: number, doc: string): Leaf<number> => integer(value, 0, 65535, doc);
const positive = (value: number, max: number, doc: string): Leaf<number> => integer(value, 1, max, doc);
const nonEmpty = (value: string, doc: string): Leaf<string> => string(value, doc, { minLength: 1 });

/**
 * Every setting, declared once: its kind, default, bounds and meaning. The `Settings` type, the
 * defaults, the schema every layer is validated against, the `RKLLM_MCP_*` environment variables
 * and docs/settings.md all come from this tree. Times are in the units their names say.
 */
export const SETTINGS = section('Every setting.', {
  host: nonEmpty('127.0.0.1', 'The address every network transport binds.'),
  diagnostics: boolean(false, 'Serves the buffer-manager test methods (test_*); `--diagnostics` turns it on.'),
  log_level: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info', 'How much the server logs (on stderr).'),
  http: section('HTTP: `POST /` with one JSON-RPC message or a batch; `GET /health` and `GET /metrics`.', {
    enabled: boolean(true, 'Serves HTTP.'),
    port: port(8082, 'The HTTP port; 0 picks a free port.'),
    max_body_bytes: positive(MiB, GiB, 'Largest request body accepted, in bytes; a larger one is refused with HTTP 413 before it is read.'),
    allowed_origins: stringList(
      'Browser origins (scheme://host[:port], or "null") allowed besides the server\'s own; a request or WebSocket handshake carrying any other `Origin` gets 403. ' +
        'Requests without `Origin` (curl, SDKs) are not affected.',
      { minLength: 4, maxLength: 2048, pattern: '^(null|[a-z][a-z0-9+.-]*://[^/?#\\s]+)$' },
      1000,
    ),
    request_timeout_s: number(
      10,
      { above: 0, max: 3600 },
      'Seconds a client may take to send a whole request (headers and body); a slower one is answered 408 and its connection closed.',
    ),
  }),
  tcp: section('TCP: one JSON-RPC message per line (NDJSON) both ways; chunks are pushed live.', {
    enabled: boolean(true, 'Serves TCP.'),
    port: port(8080, 'The TCP port; 0 picks a free port.'),
    max_line_bytes: positive(
      MiB,
      GiB,
      'Longest line (one message) accepted, in bytes; a longer one is answered -32600 and the connection closed.',
    ),
  }),
  udp: section('UDP: one message per datagram; replies go to the sender; streams are also buffered, for repair by `poll`.', {
    enabled: boolean(true, 'Serves UDP.'),
    port: port(8081, 'The UDP port; 0 picks a free port.'),
    max_datagram_bytes: integer(
      65_507,
      512,
      65_507,
      'Largest datagram received or sent, in bytes (65507 is the most IPv4 carries); larger ones get an error naming it.',
    ),
  }),
  ws: section('WebSocket: one message per text frame; chunks are pushed live.', {
    enabled: boolean(true, 'Serves WebSocket.'),
    port: port(8083, 'The WebSocket port; 0 picks a free port.'),
    max_message_bytes: positive(
      MiB,
      GiB,
      'Largest message accepted, in bytes; a larger one closes the connection with 1009 (Message Too Big).',
    ),
  }),
  stdio: section('stdio (`--stdio`): NDJSON on stdin/stdout for a parent process; the server exits 0 when stdin ends.', {
    enabled: boolean(false, 'Serves stdin/stdout (logs stay on stderr).'),
    max_line_bytes: positive(MiB, GiB, 'Longest line (one message) accepted, in bytes; a longer one is answered -32600 and skipped.'),
  }),
  connections: section('Limits of every live connection (TCP, WebSocket, stdio; UDP takes the send cap).', {
    max_connections: positive(
      1024,
      1_000_000,
      'Open connections per transport (TCP, WebSocket) at most, counting all clients; a new one beyond it is told why (-32011) and closed.',
    ),
    idle_timeout_s: number(
      300,
      { min: 0, max: 86_400 },
      'Seconds a connection may stay open with nothing received and nothing in progress (no request, no live stream; HTTP: between requests); 0 never closes.',
    ),
    max_send_buffer_bytes: positive(
      MiB,
      GiB,
      'Bytes waiting to be sent per connection at most (over UDP: for all clients). Past it, reading from the connection pauses, its streams end ' +
        'with a -32010 error chunk, and detached streams stop being pushed to it (they keep buffering).',
    ),
    max_inflight: positive(64, 100_000, 'Requests one connection may have in progress at once; reading from it pauses beyond that.'),
  }),
  engine: section('The engine and its model.', {
    kind: oneOf(
      ['llama.cpp', 'rkllm'],
      'llama.cpp',
      '"llama.cpp" (any CPU, GGUF models) or "rkllm" (Rockchip\'s NPU runtime, .rkllm models).',
    ),
    model_path: nullableString(
      'A GGUF file (llama.cpp; null uses the built-in model, generated on first use) or an .rkllm file (rkllm; required).',
    ),
    threads: integer(0, 0, 1024, "CPU threads; 0 picks all cores but one (the server's own thread needs one)."),
    parallel: integer(
      0,
      0,
      256,
      'Generations run at once: llama.cpp context sequences, batched together, or RKLLM runtime instances of the model (each holds a copy ' +
        'of it, see docs/rkllm.md). 0: 4 on llama.cpp, 1 on rkllm.',
    ),
    queue_limit: integer(64, 0, 1_000_000, 'Runs waiting for a slot at most, in all clients; beyond it callers get a busy error (-32000).'),
    queue_limit_per_client: integer(
      16,
      0,
      1_000_000,
      'Runs one client (API key, or address without keys) may have waiting for a slot; beyond it it gets a busy error (-32000). ' +
        'Waiting runs take turns across clients (each client in its own order). 0: only queue_limit bounds it.',
    ),
    max_context_len: integer(2048, 16, 1 << 20, 'Context length per sequence, in tokens.'),
    load_wait_ms: integer(
      120_000,
      0,
      86_400_000,
      'How long a request that arrives while the model loads waits for it, in ms, on every transport; after that it is refused (-32004). 0 refuses at once.',
    ),
    max_memory: integer(
      0,
      0,
      Number.MAX_SAFE_INTEGER,
      "Bytes the model and its context may take (llama.cpp's estimate); settings that need more are refused at start, with the estimate. " +
        "0: 75% of the machine's memory.",
    ),
    rkllm: section('The RKLLM engine: librkllmrt.so through FFI, in a worker process that is restarted when it crashes.', {
      library: nonEmpty('librkllmrt.so', 'librkllmrt.so: a path, or a file name the dynamic loader finds (LD_LIBRARY_PATH, /usr/lib).'),
      runtime_version: oneOf(
        ['auto', '1.2', '1.3'],
        'auto',
        'The struct layout of the library: "1.2", "1.3", or "auto" (told by the library\'s default parameters).',
      ),
      extend_param: section(
        "RKLLMExtendParam at start: CPU cores for the runtime's threads (enabled_cpus_mask, e.g. 240 = CPU4-7), inputs per forward pass (n_batch).",
        {
          base_domain_id: integer(0, 0, 2 ** 31 - 1, 'RKLLMExtendParam.base_domain_id.'),
          embed_flash: integer(0, 0, 1, 'RKLLMExtendParam.embed_flash: 1 keeps the embedding table in flash.'),
          enabled_cpus_num: integer(0, 0, 127, 'RKLLMExtendParam.enabled_cpus_num: how many CPUs the runtime uses; 0 lets it choose.'),
          enabled_cpus_mask: integer(0, 0, 2 ** 32 - 1, 'RKLLMExtendParam.enabled_cpus_mask: which CPUs, as a bit mask (240 = CPU4-7).'),
          n_batch: positive(1, 255, 'RKLLMExtendParam.n_batch: inputs per forward pass.'),
        },
      ),
      restart_delay_ms: positive(
        500,
        3_600_000,
        'The first delay before restarting a crashed runtime, in ms; it doubles with each failure in a row.',
      ),
      restart_max_delay_ms: positive(30_000, 3_600_000, 'The longest delay between restarts, in ms.'),
      max_restarts: positive(5, 1000, 'Failed restarts in a row before the engine gives up (the status method then shows "failed").'),
      init_timeout_ms: positive(600_000, 86_400_000, 'How long loading the library and the model (rkllm_init) may take, in ms.'),
      vision: section(
        "A VL model's vision encoder: an .rknn model run by Rockchip's RKNN runtime beside the .rkllm (see docs/vision.md).",
        {
          encoder: nullableString(
            'The encoder (.rknn) of the model given at start (`--vision-encoder FILE.rknn`); null: none. Any .rkllm model also pairs with `<stem>.vision.rknn` beside it.',
          ),
          rknn_lib: nonEmpty('librknnrt.so', 'librknnrt.so: a path, or a file name the dynamic loader finds (`--rknn-lib PATH`).'),
          core_mask: oneOf(
            ['auto', '0', '1', '2', '0_1', '0_1_2', 'all'],
            'auto',
            'NPU cores the encoder runs on (rknn_set_core_mask), e.g. "2" to keep it off the cores 0-1 of the LLM; "auto": the runtime chooses.',
          ),
          image_tags: oneOf(
            ['auto', 'qwen2-vl', 'minicpm-v'],
            'auto',
            'The image tags of the model family (docs/vision.md); "auto": told by the model file name (qwen → qwen2-vl, minicpm → minicpm-v).',
          ),
          max_image_bytes: positive(20 * MiB, GiB, 'Largest image accepted, in bytes (encoded, as sent).'),
          max_image_pixels: positive(50_000_000, 1_000_000_000, 'Most pixels (width x height) an image may have.'),
        },
      ),
    }),
  }),
  folders: section(
    'Where names that clients give are resolved: a client names a file inside one of these folders, never a path of its own choosing ' +
      '(absolute paths, ".." and links leading out are refused). Relative folders are under the per-user data folder, ' +
      'or under the working directory when the settings file is ./settings.json or the server runs from a checkout (see "Where state lives").',
    {
      models: nonEmpty(
        'models',
        "Models that `rkllm_init` may load (`model_path`); the operator's own `engine.model_path` may be anywhere.",
      ),
      prompt_caches: nonEmpty(
        'prompt-caches',
        'Prompt caches that runs save and `rkllm_load_prompt_cache` loads (`prompt_cache_path`); created on first save.',
      ),
      lora_adapters: nonEmpty('lora-adapters', 'LoRA adapters that `rkllm_load_lora` loads (`lora_adapter_path`).'),
      images: nonEmpty('images', 'Images that JSON-RPC runs name (`multimodal_input.image` as a file name).'),
    },
  ),
  models: section(
    'Models by name: the folder of models, loading on demand, and how long an idle model stays loaded (see docs/models.md).',
    {
      dir: nullableString(
        "The folder of models (*.gguf on llama.cpp, *.rkllm on RKLLM); a model's name is its file name without the extension. " +
          'null: the folder of `folders.models` (default `models/` in the per-user data folder; see "Where state lives"). `--models-dir DIR` sets it.',
      ),
      max_loaded: integer(
        1,
        0,
        1024,
        'Models loaded at once at most; a request for another unloads the least recently used idle one first. ' +
          "0 (llama.cpp): as many as fit engine.max_memory, each model's size and KV cache computed from its GGUF metadata. Always 1 on RKLLM (the NPU holds one model).",
      ),
      keep_alive: string(
        '5m',
        'How long a model stays loaded once idle, in Ollama\'s words: a duration ("30s", "5m", "1h"), seconds as a number, "0" to unload at once, "-1" never. ' +
          "A request's own `keep_alive` overrides it for its model. The model given at start never expires by time.",
        { minLength: 1, maxLength: 32 },
      ),
      user_loads: boolean(
        false,
        'With API keys: whether a user key may load a model that is not loaded (and so unload an idle one to make room) by naming it in a request. ' +
          'false: only admin keys load (by a request, or models_load); a user key is served the models already loaded and gets -32018 (403) for the others. Without keys, anyone loads.',
      ),
    },
  ),
  mcp: section('MCP (Model Context Protocol): Streamable HTTP at `/mcp` on the HTTP port, and on stdio beside JSON-RPC with `--stdio`.', {
    enabled: boolean(true, 'Serves MCP (`/mcp` over HTTP; MCP messages on stdio).'),
    max_sessions: positive(1024, 1_000_000, 'Open MCP sessions over HTTP at most; a new one beyond it is refused with 503.'),
    max_sessions_per_key: positive(
      16,
      1_000_000,
      'Open MCP sessions over HTTP at most per API key (per address without keys), so one client cannot take them all; a new one beyond it is refused with 429.',
    ),
    max_chat_sessions: positive(
      256,
      1_000_000,
      'Chat histories (`chat` tool, `session`) kept at most; the least recently used is forgotten first.',
    ),
  }),
  openai: section('The OpenAI-compatible API under `/v1` on the HTTP port (see docs/compatible-apis.md).', {
    model_aliases: stringMap(
      'Other names for models, alias to model (`{"gpt-4o-mini": "rkllm-tiny"}`), for clients that insist on a model name this server lacks. ' +
        'A request naming an alias is served by its model; `/v1/models` lists the aliases too. Names without an alias that no model has still get 404.',
      1000,
    ),
  }),
  jsonrpc: section('JSON-RPC.', {
    max_batch: positive(100, 100_000, 'Requests in one batch at most.'),
  }),
  streams: section('Stream buffers, read with `poll`.', {
    buffer_timeout_s: number(
      60,
      { above: 0, max: 86_400 },
      'Seconds a buffer may go unpolled before it expires; its generation is aborted.',
    ),
    cleanup_interval_s: number(30, { above: 0, max: 86_400 }, 'Seconds between sweeps for expired buffers.'),
    max_buffers: positive(
      256,
      1_000_000,
      'Live stream buffers at most; a new stream beyond it is refused (-32002), never evicting a live one.',
    ),
    max_buffer_bytes: positive(MiB, GiB, 'Bytes buffered per stream; a stream nobody polls stops there with an error chunk (-32007).'),
    max_wait_ms: integer(30_000, 0, 3_600_000, "Longest long-poll (`poll`'s `wait_ms`), in ms."),
    store: oneOf(
      ['memory', 'redis'],
      'memory',
      'Where buffers live: "memory" (this process) or "redis" (shared by every instance using the same Redis).',
    ),
  }),
  redis: section('The shared buffer store, with `streams.store: "redis"`.', {
    url: nullableString('redis://[user:password@]host:port[/db] or rediss://...; `--redis URL` sets it and the store.', '^rediss?://'),
    key_prefix: string('rkllm:', 'Prefix of every key, so several deployments can share one Redis.', { maxLength: 100 }),
    lease_ms: integer(
      5000,
      100,
      3_600_000,
      "How long an instance's lease on the streams it generates lasts; if it is not renewed (the instance died), their pollers get an error chunk.",
    ),
    retry_ms: integer(
      10_000,
      0,
      3_600_000,
      'How long storing a chunk is retried while Redis is unreachable before the stream is stopped with an error.',
    ),
    command_timeout_ms: integer(
      2000,
      50,
      600_000,
      'How long a command waits for Redis to answer; past it Redis counts as not answering (a stall, a partition): /health says degraded, and the command is retried or fails as unreachable.',
    ),
    max_blocking_connections: positive(
      64,
      10_000,
      'Connections for blocking reads (long polls) per instance at most; further long polls wait for one.',
    ),
  }),
  fleet: section('One run queue shared by every instance on the same Redis (with `--redis`).', {
    shared_queue: boolean(
      true,
      'With the Redis store, runs wait in one queue in Redis and any instance with a free slot that can serve them executes them; false: each instance runs what it receives.',
    ),
    check_interval_ms: integer(
      500,
      20,
      60_000,
      'How often an idle instance looks at the shared queue besides being woken by a notification (a lost notification delays a run at most this long).',
    ),
  }),
  auth: section(
    'API keys. With at least one, every request on every transport must carry a key, and a stream belongs to the key that started it.',
    {
      api_keys: stringList(
        'The accepted keys: 16 to 4096 characters of A-Z a-z 0-9 . _ ~ + / - (a Bearer token); none turns authentication off.',
        API_KEY,
        10_000,
      ),
      admin_keys: stringList(
        'Keys that may also change the engine for everyone (rkllm_init, rkllm_destroy, templates, tools, LoRA, prompt caches, the KV cache, diagnostics) ' +
          "and see every client's state; they are accepted keys too. With keys but no admin key, nobody may.",
        API_KEY,
        10_000,
      ),
      timeout_s: number(
        10,
        { above: 0, max: 3600 },
        'Seconds a TCP or WebSocket connection may stay open without a valid key while keys are required; it counts against its address meanwhile.',
      ),
    },
  ),
  limits: section(
    'Limits per client: per API key, or per client address when there are no keys. 0 turns a limit off. Refusals carry retry_after.',
    {
      requests_per_second: number(0, { min: 0, max: 1_000_000 }, 'Requests a client may send per second, sustained.'),
      request_burst: positive(200, 1_000_000, 'Requests a client may send at once beyond that rate.'),
      max_streams: integer(64, 0, 1_000_000, 'Streams (rkllm_run_async, rkllm_run) a client may have queued or running at once.'),
      max_connections: integer(
        256,
        0,
        1_000_000,
        'Connections a client may hold open on each transport (TCP, WebSocket; HTTP: requests in progress).',
      ),
    },
  ),
  shutdown: section('Graceful shutdown, on SIGTERM or SIGINT (a second signal exits at once).', {
    drain_timeout_s: number(
      30,
      { min: 0, max: 86_400 },
      'Seconds running streams may take to finish, and buffered ones to be polled to their end; the rest then end with finish_reason "shutdown".',
    ),
    final_poll_timeout_s: number(
      5,
      { min: 0, max: 3600 },
      'Seconds the final chunks of the streams cut short stay pollable before the process exits.',
    ),
  }),
});

/** Every setting, with its value. */
export type Settings = ValueOf<typeof SETTINGS>;

export function defaultSettings(): Settings {
  return defaultsOf(SETTINGS);
}

/** A settings problem, reported with the key and the expected value before the server stops. */
export class SettingsError extends Error {}

/** The setting engine.parallel for `kind`: 0 stands for 4 on llama.cpp and 1 on RKLLM (each instance is a copy of the model). */
export function parallelOf(kind: Settings['engine']['kind'], parallel: number): number {
  return parallel > 0 ? parallel : kind === 'rkllm' ? 1 : 4;
}
