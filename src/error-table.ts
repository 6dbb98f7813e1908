/**
 * Every error the server can produce, in one table (the shape of fastify's `createError` table).
 * Each entry has a stable string name (the key, used in logs, metrics and tests), the number
 * clients see (`code`: the five standard JSON-RPC codes, and the server's own in -32000..-32099),
 * its one HTTP status, the fields its `data` may hold, what it means (for docs/errors.md), and its
 * message templates. A template names its parameters in braces: `Unknown stream {stream_id}`.
 *
 * Layers below the wire throw a `ServerError` built with `fault`; the wire layer (`errorResponse`
 * in src/jsonrpc/message.ts, `errorAnswer` in src/transports/http-route.ts) turns it into a
 * JSON-RPC response or an HTTP answer. `errorObject` is the one place an error becomes the
 * `{ code, message, data }` clients read, in a response or in a final chunk.
 */
export const ERRORS = {
  PARSE_ERROR: {
    code: -32700,
    status: 400,
    data: [],
    meaning: 'The message is not JSON, or not valid UTF-8; answered with id null.',
    messages: {
      utf8: 'Parse error: the message is not valid UTF-8',
      json: 'Parse error: {reason}',
    },
  },
  INVALID_REQUEST: {
    code: -32600,
    status: 400,
    data: ['max_line_bytes', 'max_datagram_bytes'],
    meaning:
      'A bad envelope, an empty or oversized batch, a body, line or datagram over its limit (HTTP answers 413), a WebSocket binary frame, ' +
      'or a method called where it cannot work.',
    messages: {
      envelope: 'Invalid Request: {detail}',
      empty_batch: 'Invalid Request: empty batch',
      batch_too_large: 'Invalid Request: a batch holds at most {max_batch} requests; got {count}',
      not_post: 'Use POST with a JSON-RPC 2.0 message in the body',
      body_too_large: 'Request body exceeds the limit of {max_body_bytes} bytes',
      line_too_long: 'Invalid Request: a line exceeds the limit of {max_line_bytes} bytes (setting {setting})',
      datagram_too_large:
        'Invalid Request: the datagram is {bytes} bytes, over the limit of {max_datagram_bytes} bytes (setting {setting})',
      reply_too_large:
        'The response is {bytes} bytes, over the datagram limit of {max_datagram_bytes} bytes (setting {setting}); use a stream transport for this request',
      binary_frame: 'Invalid Request: binary frames are not accepted; send each JSON-RPC message as a text frame',
      authenticate_not_live:
        '{method} binds a key to a live connection (TCP, WebSocket, stdio). Over HTTP send "Authorization: Bearer <key>"; over UDP put "api_key" in every request',
      already_authenticated: 'This connection is already authenticated with another key; open a new connection',
      attach_not_live:
        'rkllm_stream_attach pushes chunks as responses, so it needs a request id and a live transport (TCP, UDP, WebSocket or stdio); over HTTP use poll',
    },
  },
  METHOD_NOT_FOUND: {
    code: -32601,
    data: [],
    meaning: 'An unknown method, or a `test_*` method without `--diagnostics`.',
    messages: { unknown: 'Method not found: {method}' },
  },
  INVALID_PARAMS: {
    code: -32602,
    status: 400,
    data: ['reason', 'path', 'engine', 'last_seq', 'acked_seq'],
    meaning:
      'The message names the field and the problem: wrong type or range, unknown field, token id outside the vocabulary, prompt longer ' +
      'than the context, `after_seq` beyond what was sent, missing file.',
    messages: {
      detail: 'Invalid params: {detail}',
      positional: 'Invalid params: params must be an object with named fields',
      too_deep: 'Invalid params: values nest deeper than {max_depth} levels of arrays and objects',
      after_seq_beyond: 'after_seq {after_seq} is beyond the last chunk sent (seq {last_seq})',
      after_seq_released: 'after_seq {after_seq} is before chunks already acknowledged and released (up to seq {acked_seq})',
      not_buffered:
        'Stream {stream_id} is not buffered, so it cannot be attached: it lives and dies with the connection that started it. Start runs with "detach": true to resume them later',
      no_model:
        'The model "{model}" is not in the models folder, and is not the built-in model "{builtin}" (models_list lists them; the OpenAI and Ollama APIs answer 404)',
      path_refused:
        'Invalid params: "{field}" must name a file inside the {folder} folder (setting {setting}): a relative name, without "..", and no link leading out of it',
      no_file: 'Invalid params: "{field}" names no file: {name}',
      no_folder: 'Invalid params: "{field}" is in a folder that does not exist: {name}',
    },
  },
  INTERNAL_ERROR: {
    code: -32603,
    data: [],
    meaning: 'A server bug; no details leak to the client (the log has them).',
    messages: {
      internal: 'Internal error',
      buffer_failed: 'The stream buffer failed; the stream was stopped',
      run_failed: 'The run failed inside the server',
      follow_failed: 'Reading the stream buffer failed inside the server',
      duplicate_buffer: 'Stream {stream_id} already has a buffer',
      store_reply: 'Unexpected reply from the stream store: {reply}',
    },
  },
  BUSY: {
    code: -32000,
    status: 429,
    data: ['retry_after', 'active', 'queued'],
    meaning:
      "The run queue is full (or this client's share of it), or a slot the request needs is running; `retry_after` says when to try again (seconds).",
    messages: {
      queue_full: 'Server busy: {active} runs active and {queued} queued (the limit); retry later',
      client_queue_full:
        'Server busy for this client: it has {queued} runs queued, its share of the queue (setting engine.queue_limit_per_client); retry later',
      no_free_slot: 'Every slot is running; load the prompt cache when one is free',
      kv_cache_in_use: 'The KV cache cannot be cleared while a generation runs; abort it or retry when it ends',
      models_busy:
        'Model "{model}" needs room, but the {loaded} loaded models (setting models.max_loaded, or the memory budget) all have runs; retry later',
    },
  },
  STREAM_NOT_FOUND: {
    code: -32001,
    data: ['stream_id', 'request_id', 'reason'],
    meaning:
      'The stream is unknown, has expired or was released (`reason` says which); a stream another API key started is reported as unknown.',
    messages: {
      unknown: 'Unknown stream {stream_id}',
      expired: 'Stream {stream_id} has expired: it was not polled for {seconds} s and its buffer was dropped',
      released: 'Stream {stream_id} has ended and its buffer was released after the final chunk was acknowledged',
      unknown_request:
        'No live stream was started by request id {request_id}: it never existed, expired, or its final chunk was already acknowledged',
    },
  },
  TOO_MANY_STREAMS: {
    code: -32002,
    status: 429,
    data: ['max_buffers', 'retry_after'],
    meaning: '`streams.max_buffers` live stream buffers exist; a new stream is refused, never evicting a live one.',
    messages: {
      local: 'Too many live streams: the limit of {max_buffers} buffers is reached; poll or abort existing streams first',
      fleet: 'Too many live streams: the limit of {max_buffers} buffers is reached across the fleet; poll or abort existing streams first',
    },
  },
  AMBIGUOUS_REQUEST_ID: {
    code: -32003,
    data: ['stream_ids'],
    meaning: 'Several live streams share the JSON-RPC id given as `request_id`: name one by `stream_id`.',
    messages: {
      poll: '{count} live streams were started with request id {request_id}; poll by "stream_id" instead',
      abort: '{count} live streams share request id {request_id}; abort by "stream_id" instead',
    },
  },
  ENGINE_UNAVAILABLE: {
    code: -32004,
    status: 503,
    data: ['engine', 'state', 'retry_after'],
    meaning: 'No model is loaded (after `rkllm_destroy`), it is still loading, or the runtime is restarting or failed.',
    messages: {
      server_loading: 'The model is loading; retry once GET /health answers 200',
      load_wait: 'The model is still loading after {load_wait_ms} ms (setting engine.load_wait_ms); retry once GET /health answers 200',
      model_loading: 'Model "{model}" is still loading after {load_wait_ms} ms (setting engine.load_wait_ms); retry shortly',
      unloaded: 'No model is loaded; call rkllm_init first',
      loading: 'The model is still loading; retry when rkllm_init has answered',
      not_running: 'The RKLLM runtime is not running',
      restarting: 'The RKLLM runtime is restarting after a crash; retry shortly',
      failed: 'The RKLLM runtime could not be restarted ({reason}); call rkllm_destroy, then rkllm_init',
    },
  },
  NOT_SUPPORTED: {
    code: -32005,
    status: 400,
    data: ['engine', 'feature', 'reason'],
    meaning: 'The active engine cannot do this feature; `data` names the engine, the feature and, when known, why.',
    messages: {
      feature: '{feature} is not supported by the {engine} engine',
      feature_because: '{feature} is not supported by the {engine} engine: {reason}',
    },
  },
  ENGINE_ERROR: {
    code: -32006,
    data: ['engine', 'function', 'code', 'library', 'reason'],
    meaning:
      'The engine failed while running or loading (a final chunk, or `rkllm_init`); a runtime call that returned a status names the ' +
      'function and its `code`.',
    messages: {
      detail: '{detail}',
      refused: '{function} failed with code {code}: {reason}',
      runtime_failed: 'The RKLLM runtime failed: {reason}',
      runtime_start: 'The RKLLM runtime could not start: {reason}',
      layout_mismatch:
        '{library} says it is RKLLM runtime {version}, but the {layout} struct layout is in use: set engine.rkllm.runtime_version (--rkllm-version) to {version}',
      llama_load: 'llama.cpp cannot load "{path}": {reason}',
      too_much_memory:
        'The model with a context of {context} tokens for each of {parallel} slots needs about {needed} of memory, more than the {limit} allowed ({source}); this machine has {total}. Lower max_context_len (--context) or engine.parallel (--parallel), or raise engine.max_memory',
      no_probabilities: 'llama.cpp returned no probabilities for the last input token',
    },
  },
  BUFFER_FULL: {
    code: -32007,
    data: ['max_buffer_bytes'],
    meaning: "A stream's buffer reached `streams.max_buffer_bytes` because nobody polled it (final chunk).",
    messages: {
      full: 'The stream buffer reached its cap of {max_buffer_bytes} bytes because it was not polled; generation stopped. Everything buffered before this chunk was kept.',
    },
  },
  MODEL_LOADED: {
    code: -32008,
    data: ['engine'],
    meaning: '`rkllm_init` while a model is loaded or loading: the server holds one model; call `rkllm_destroy` first.',
    messages: { loaded: 'A model is already {state}; the server holds one model at a time: call rkllm_destroy first' },
  },
  ABORTED: {
    code: -32009,
    data: ['engine'],
    meaning: 'The stream was stopped because its model went away (`rkllm_destroy`); appears in final chunks.',
    messages: { destroyed: 'The model was unloaded by rkllm_destroy; this stream was stopped' },
  },
  SEND_BUFFER_FULL: {
    code: -32010,
    data: ['stream_id', 'last_seq', 'max_send_buffer_bytes'],
    meaning: "A live connection's send buffer passed its cap because the client does not read (final chunk or notice).",
    messages: {
      stopped:
        "The connection's send buffer passed its cap of {bytes} bytes (setting {setting}) because the client is not reading; the stream was stopped.",
      detached:
        "The connection's send buffer passed its cap of {bytes} bytes (setting {setting}) because the client is not reading; live delivery stopped after seq {last_seq}. The stream goes on buffering: resume it with rkllm_stream_attach or poll.",
    },
  },
  TOO_MANY_CONNECTIONS: {
    code: -32011,
    status: 429,
    data: ['max_connections', 'retry_after'],
    meaning: "A transport's `connections.max_connections` is reached; the new connection is told so and closed (WebSocket: close 1013).",
    messages: {
      transport:
        'Too many connections: the limit of {max_connections} {transport} connections (setting connections.max_connections) is reached; try again later',
    },
  },
  CONNECTION_IDLE: {
    code: -32012,
    data: ['idle_timeout_s'],
    meaning: 'The connection was closed after `connections.idle_timeout_s` with nothing received and nothing in progress.',
    messages: {
      idle: 'Closing the connection: nothing was received and nothing was in progress for {idle_timeout_s} s (setting connections.idle_timeout_s)',
    },
  },
  STORE_UNAVAILABLE: {
    code: -32013,
    data: ['first_lost_seq', 'last_lost_seq'],
    meaning: 'The shared stream store (Redis) cannot be reached; retry once it is back (replies, or a final chunk naming the lost seqs).',
    messages: {
      unreachable: 'The stream store (Redis at {where}) is unreachable: {reason}. Retry shortly.',
      lost: 'The stream store (Redis) was unreachable or full for more than {retry_ms} ms, so chunks {seqs} could not be stored; generation was stopped',
    },
  },
  STORE_FULL: {
    code: -32030,
    status: 503,
    data: ['retry_after'],
    meaning:
      'The shared stream store (Redis) is full (its `maxmemory` is reached) and refuses writes: new runs, polls and chunks are refused until it has room; retry later.',
    messages: {
      full: 'The stream store (Redis at {where}) is full (out of memory: maxmemory reached) and refuses writes. Retry later.',
    },
  },
  STORE_DATA_LOST: {
    code: -32031,
    data: ['stream_id', 'first_lost_seq', 'last_lost_seq'],
    meaning:
      'The shared stream store (Redis) lost its data (restarted without persistence, flushed, or failed over to a replica that lagged) while the stream or run was live; appears in final chunks and replies.',
    messages: {
      stream:
        'The stream store (Redis) lost its data while this stream was live: its buffer is gone (seqs {seqs} were lost); the stream was ended',
      run: 'The stream store (Redis) lost its data while this run was live: its queue entry is gone; the run was ended',
      gone: 'Stream {stream_id} is unknown: the stream store (Redis) lost its data; if it was live, its final chunk (naming the lost seqs) follows once the instance generating it reports the loss',
    },
  },
  STREAM_OWNER_LOST: {
    code: -32014,
    data: [],
    meaning: 'The instance generating the stream stopped renewing its lease (it died or lost Redis); appears in final chunks.',
    messages: {
      lease:
        'The instance generating this stream stopped renewing its lease for more than {lease_ms} ms (it died, or lost Redis); the stream was ended',
    },
  },
  FLEET_EXECUTOR_LOST: {
    code: -32019,
    data: ['stream_id', 'executor', 'attempts'],
    meaning:
      'With a fleet (`--redis`): the instance executing a run from the shared queue stopped renewing its lease after the run had produced tokens (a run that had produced none is retried once elsewhere); appears in final chunks.',
    messages: {
      lost: 'The instance executing this run ({executor}) stopped renewing its lease for more than {lease_ms} ms after {what}; the run was ended',
    },
  },
  UNAUTHORIZED: {
    code: -32015,
    status: 401,
    refusal: true,
    data: [],
    meaning: 'A missing or wrong API key, on every transport. It says nothing more.',
    messages: {
      key: 'Unauthorized: a valid API key is required',
      timeout: 'Closing the connection: no valid API key was presented within {timeout_s} s (setting auth.timeout_s)',
    },
  },
  RATE_LIMITED: {
    code: -32016,
    status: 429,
    refusal: true,
    data: ['limit', 'retry_after'],
    meaning:
      'A per-client limit is reached (request rate, streams, connections); `limit` names the setting, `retry_after` the seconds to wait.',
    messages: {
      requests: 'Too many requests: at most {max} per second per client (setting {limit}); retry after {retry_after} s',
      streams: 'Too many streams: at most {max} queued or running per client (setting {limit}); retry after {retry_after} s',
      connections: 'Too many {what}: at most {max} per client (setting {limit}); retry after {retry_after} s',
    },
  },
  SHUTTING_DOWN: {
    code: -32017,
    status: 503,
    data: [],
    meaning: 'The server is draining: it starts no new runs; a stream cut short ends with `finish_reason: "shutdown"` and this error.',
    messages: {
      no_new_runs: 'The server is shutting down and starts no new runs',
      cut_short: 'The server shut down before this stream finished',
    },
  },
  FORBIDDEN: {
    code: -32018,
    refusal: true,
    status: 403,
    data: ['origin', 'host', 'model'],
    meaning:
      'The request is understood and the key is valid, but not enough: a method that changes the engine for everyone needs an admin key ' +
      '(`auth.admin_keys`); a browser page from another origin (`http.allowed_origins`), or, on `/mcp`, a Host that is not loopback on a server bound to loopback; a stream started by an unauthenticated datagram on UDP bound beyond loopback.',
    messages: {
      admin: 'Forbidden: {method} changes the engine for every client and needs an admin key (setting auth.admin_keys)',
      admin_view: "Forbidden: {what} shows every client's state and needs an admin key (setting auth.admin_keys)",
      model_load:
        'Forbidden: the model {model} is not loaded, and loading it needs an admin key (setting auth.admin_keys), or the setting models.user_loads',
      origin: 'Forbidden: requests from origin {origin} are refused (setting http.allowed_origins)',
      host: 'Forbidden: the server listens on loopback only, and Host {host} does not name loopback (DNS rebinding)',
      udp_stream:
        'Forbidden: over UDP on an address beyond loopback, only a request carrying a valid "api_key" may start a stream (replies to others never exceed their size)',
    },
  },
} as const satisfies Record<string, ErrorSpec>;

/** One entry of the table. */
export interface ErrorSpec {
  /** The number clients see (JSON-RPC's `error.code`). */
  code: number;
  /** The HTTP status of an HTTP answer carrying this error; absent: 500. */
  status?: number;
  /** It refuses the request itself (key, rate, origin): JSON-RPC over HTTP answers it with `status` too, not a 200. */
  refusal?: true;
  /** Names of the fields its `data` may hold. */
  data: readonly string[];
  /** What it means, for the docs. */
  meaning: string;
  /** Message templates by name; `{field}` is replaced by that parameter. One string literal each: `fault` reads the placeholders from its type. */
  messages: Readonly<Record<string, string>>;
}
