import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Logger } from 'pino';
import { ApiKeys, exposesBeyondLoopback, type Peer } from './auth.js';
import { ClientGate, type Client } from './clients.js';
import { startEngine, type EngineOptions } from './engine/start.js';
import type { Engine } from './engine/types.js';
import { errorObject, fault, type ServerError } from './errors.js';
import { FACE_METHODS, faceRoutes, loadingRoute } from './faces/routes.js';
import { playgroundRoute } from './faces/playground/route.js';
import { Health } from './health.js';
import type { McpBackend } from './faces/mcp/backend.js';
import { McpFace } from './faces/mcp/face.js';
import { MCP_TOOL_METHODS } from './faces/mcp/tools.js';
import { Dispatcher, type Method } from './jsonrpc/dispatcher.js';
import { errorResponse, parseMessage, salvageId, type JsonRpcResponse } from './jsonrpc/message.js';
import { ClientLimits } from './limits.js';
import { LoadGate } from './load-gate.js';
import { authenticateMethod } from './methods/auth.js';
import { adminOnly, coreMethods, listFunctionsMethod } from './methods/core.js';
import { diagnosticMethods } from './methods/diagnostics.js';
import { engineStatusMethod } from './methods/engine-status.js';
import { liveMethods } from './methods/live.js';
import { rkllmMethods } from './methods/rkllm.js';
import { Metrics } from './metrics.js';
import { parseKeepAlive } from './models/keep-alive.js';
import type { LoadedModels } from './models/loaded.js';
import { modelSet } from './models/model-set.js';
import { modelsMethods } from './methods/models.js';
import { clientFolders, type ClientFolders } from './paths.js';
import type { Settings } from './settings.js';
import { drain, type Drainable } from './shutdown.js';
import type { BufferStore } from './streams/buffer-store.js';
import { openStore, type OpenStore, type StoreOptions } from './streams/open-store.js';
import { Fleet, type FleetOptions } from './streams/fleet/fleet.js';
import { StreamHub, type StreamObserver } from './streams/hub.js';
import { Scheduler } from './streams/scheduler.js';
import { createTransports, type TransportOptions } from './transports/create.js';
import type { HttpRoute } from './transports/http-route.js';
import type { HttpEndpoint } from './transports/http.js';
import type { MessageHandler, Transport } from './transports/transport.js';

/** A running server: its transports' bound addresses and a way to stop it. */
export interface RunningServer {
  readonly addresses: Record<string, string>;
  /** The readiness message, `listening for connections: …`, as logged at info level once serving. */
  readonly readyLine: string;
  readonly dispatcher: Dispatcher<Peer, Client>;
  /** Resolves once the server has closed itself because stdio's input ended; the process should then exit 0. */
  readonly ended: Promise<void>;
  /** Shuts down gracefully (settings `shutdown.*`): stops accepting, drains the streams, then closes. Idempotent. */
  shutdown(): Promise<void>;
  /** Closes at once, aborting every stream. Idempotent. */
  close(): Promise<void>;
}

export interface ServerOptions {
  /** Sees every chunk as it is produced (benchmarks). */
  observer?: StreamObserver;
}

/** Answers a message that waited for the model longer than `engine.load_wait_ms` with `error` (notifications get nothing). */
async function whileLoading(raw: Uint8Array | string, error: ServerError): Promise<JsonRpcResponse | undefined> {
  let message: unknown;
  try {
    message = parseMessage(raw);
  } catch (err) {
    return errorResponse(null, err as ServerError);
  }
  if (typeof message === 'object' && message !== null && !Array.isArray(message) && !('id' in message)) return undefined;
  return errorResponse(Array.isArray(message) ? null : salvageId(message), error);
}

/** The package's version, which MCP's `initialize` reports. */
function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/** The MCP face, built before the model loads: `initialize` answers at once, its tools wait for `backend`. */
function mcpFace(
  settings: Settings,
  gate: ClientGate,
  backend: (signal: AbortSignal) => Promise<McpBackend>,
  metrics: Metrics,
  log: Logger,
): McpFace {
  const { mcp, connections } = settings;
  return new McpFace({
    backend,
    gate,
    answered: (tool, seconds, code) => {
      metrics.answered(`mcp/${tool}`, 'mcp', seconds);
      if (code !== undefined) metrics.error(code);
    },
    name: 'rkllm-mcp',
    version: packageVersion(),
    maxChatSessions: mcp.max_chat_sessions,
    http: {
      loopbackOnly: !exposesBeyondLoopback(settings.host),
      maxSessions: mcp.max_sessions,
      idleTimeoutMs: connections.idle_timeout_s * 1000,
      maxBodyBytes: settings.http.max_body_bytes,
    },
    log,
  });
}

/** `GET /health` (for load balancers: no key needed) and `GET /metrics` (needs an admin key when keys are set: it shows every client). */
function endpoints(health: Health, metrics: Metrics): Map<string, HttpEndpoint> {
  return new Map<string, HttpEndpoint>([
    [
      '/health',
      {
        keyed: false,
        serve: async () => {
          const { ok, ...report } = health.report();
          return { status: ok ? 200 : 503, type: 'application/json', body: JSON.stringify(report) };
        },
      },
    ],
    ['/metrics', { keyed: true, admin: true, serve: async () => ({ status: 200, ...(await metrics.render()) }) }],
  ]);
}

/** Sends chunks to every observer: metrics, and the caller's own. */
function observeAll(observers: StreamObserver[]): StreamObserver {
  return {
    chunk: (streamId, chunk) => observers.forEach((o) => o.chunk(streamId, chunk)),
    started: (streamId) => observers.forEach((o) => o.started?.(streamId)),
    running: (streamId) => observers.forEach((o) => o.running?.(streamId)),
  };
}

/** What the engine layer gets from the settings. */
function engineOptions(settings: Settings): EngineOptions {
  const e = settings.engine;
  const r = e.rkllm;
  return {
    kind: e.kind,
    modelPath: e.model_path,
    threads: e.threads,
    parallel: e.parallel,
    maxContextLen: e.max_context_len,
    maxMemory: e.max_memory,
    rkllm: {
      library: r.library,
      runtimeVersion: r.runtime_version,
      extendParam: r.extend_param,
      restartDelayMs: r.restart_delay_ms,
      restartMaxDelayMs: r.restart_max_delay_ms,
      maxRestarts: r.max_restarts,
      initTimeoutMs: r.init_timeout_ms,
    },
  };
}

/** The models folder and the loaded set, from the settings `models.*` (see docs/models.md). */
function models(settings: Settings, engine: Engine, scheduler: Scheduler, log: Logger): LoadedModels {
  const m = settings.models;
  const keepAliveMs = parseKeepAlive(m.keep_alive);
  if (keepAliveMs === undefined)
    throw new Error(`setting "models.keep_alive" must be a duration ("5m", "30s", "0", "-1"); got "${m.keep_alive}"`);
  const e = settings.engine;
  const options = {
    dir: m.dir ?? settings.folders.models,
    engine: engineOptions(settings),
    maxLoaded: m.max_loaded,
    keepAliveMs,
    waitMs: e.load_wait_ms,
    queueLimit: e.queue_limit,
    queueLimitPerClient: e.queue_limit_per_client,
    loraAdapters: folders(settings).loraAdapters,
  };
  return modelSet(options, engine, scheduler, log);
}

/** What the buffer store gets from the settings. */
function storeOptions(settings: Settings): StoreOptions {
  const { streams: s, redis: r } = settings;
  return {
    kind: s.store,
    limits: { maxBuffers: s.max_buffers, maxBufferBytes: s.max_buffer_bytes, bufferTimeoutMs: s.buffer_timeout_s * 1000 },
    redis: { url: r.url, keyPrefix: r.key_prefix, leaseMs: r.lease_ms, retryMs: r.retry_ms, maxBlockingReads: r.max_blocking_connections },
  };
}

/** The folders client-given file names resolve in (relative ones from the working directory). */
function folders(settings: Settings): ClientFolders {
  const f = settings.folders;
  return clientFolders({ models: f.models, promptCaches: f.prompt_caches, loraAdapters: f.lora_adapters });
}

/** What the transports get from the settings: the enabled ones, with their limits. */
function transportOptions(settings: Settings): TransportOptions {
  const { connections: c, http, tcp, udp, ws, stdio } = settings;
  const guard = exposesBeyondLoopback(settings.host);
  return {
    host: settings.host,
    limits: { maxSendBufferBytes: c.max_send_buffer_bytes, maxInflight: c.max_inflight, idleTimeoutMs: c.idle_timeout_s * 1000 },
    maxConnections: c.max_connections,
    authTimeoutMs: settings.auth.timeout_s * 1000,
    allowedOrigins: http.allowed_origins,
    ...(http.enabled
      ? { http: { port: http.port, maxBodyBytes: http.max_body_bytes, requestTimeoutMs: http.request_timeout_s * 1000 } }
      : {}),
    ...(tcp.enabled ? { tcp: { port: tcp.port, maxLineBytes: tcp.max_line_bytes } } : {}),
    ...(udp.enabled ? { udp: { port: udp.port, maxDatagramBytes: udp.max_datagram_bytes, guard } } : {}),
    ...(ws.enabled ? { ws: { port: ws.port, maxMessageBytes: ws.max_message_bytes } } : {}),
    ...(stdio.enabled ? { stdio: { maxLineBytes: stdio.max_line_bytes } } : {}),
  };
}

/** The gate every request passes: API keys and per-client limits. Warns when the server is open to the network without keys. */
function clientGate(settings: Settings, metrics: Metrics, log: Logger): ClientGate {
  const keys = new ApiKeys(settings.auth.api_keys, settings.auth.admin_keys);
  if (!keys.required && exposesBeyondLoopback(settings.host)) {
    log.warn(
      { host: settings.host },
      'listening beyond this machine without API keys: anyone who can reach it can use it (set auth.api_keys)',
    );
  }
  const l = settings.limits;
  const limits = new ClientLimits({
    requestsPerSecond: l.requests_per_second,
    requestBurst: l.request_burst,
    maxStreams: l.max_streams,
    maxConnections: l.max_connections,
  });
  return new ClientGate({ keys, limits, onRefusal: (error) => metrics.error(errorObject(error).code) });
}

/** What a graceful shutdown acts on: health turns 503, the scheduler refuses new runs, the fleet stops claiming, listeners close. */
function drainTarget(server: {
  health: Health;
  hub: StreamHub;
  schedulers: () => Scheduler[];
  fleet: Fleet | undefined;
  store: BufferStore;
  transports: Transport[];
  close: () => Promise<void>;
}): Drainable {
  const { health, hub, schedulers, fleet, store, transports } = server;
  return {
    stopAccepting: () => {
      health.draining();
      for (const scheduler of schedulers()) scheduler.close(fault('SHUTTING_DOWN', 'no_new_runs'));
      fleet?.stopAccepting(fault('SHUTTING_DOWN', 'no_new_runs'));
      for (const transport of transports) transport.stopAccepting();
    },
    pending: async () => ({ streams: hub.liveCount + (fleet?.executing ?? 0), buffers: (await store.status()).active_buffers }),
    endStreams: async () => {
      await Promise.all([hub.stopAll(fault('SHUTTING_DOWN', 'cut_short')), fleet?.stopAll()]);
    },
    close: server.close,
  };
}

/** With `--redis` and `fleet.shared_queue`: this instance's part in the fleet's one run queue. */
async function startFleet(
  settings: Settings,
  opened: OpenStore,
  local: Pick<FleetOptions, 'engine' | 'scheduler' | 'hold'>,
  log: Logger,
): Promise<Fleet | undefined> {
  if (!opened.redis || !settings.fleet.shared_queue) return undefined;
  const { engine: e, redis, limits } = settings;
  return Fleet.start({
    ...opened.redis,
    ...local,
    limits: { queueLimit: e.queue_limit, clientQueueLimit: e.queue_limit_per_client, maxStreams: limits.max_streams },
    leaseMs: redis.lease_ms,
    retryMs: redis.retry_ms,
    checkIntervalMs: settings.fleet.check_interval_ms,
    maxBlockingReads: redis.max_blocking_connections,
    log,
  });
}

/** Binds every transport; on failure closes them all and rethrows. */
async function bind(transports: Transport[]): Promise<Record<string, string>> {
  const addresses: Record<string, string> = {};
  try {
    for (const transport of transports) addresses[transport.name] = await transport.start();
  } catch (err) {
    await Promise.all(transports.map((t) => t.close()));
    throw err;
  }
  return addresses;
}

/** Loads the model, then opens the buffer store; on failure frees what was made and rethrows. */
async function loadEngineAndStore(settings: Settings, log: Logger): Promise<{ engine: Engine; opened: OpenStore }> {
  const engine = await startEngine(engineOptions(settings), log);
  try {
    return { engine, opened: await openStore(storeOptions(settings), log) };
  } catch (err) {
    await engine.dispose();
    throw err;
  }
}

/**
 * Builds and starts one server from settings. It binds every enabled transport first, so that
 * `GET /health` answers 503 while the model loads (and everything else an "engine unavailable"
 * error), then loads the model and starts serving. Everything is owned by the returned object;
 * nothing is global, so several servers can run in one process.
 */
export async function startServer(settings: Settings, log: Logger, options: ServerOptions = {}): Promise<RunningServer> {
  const health = new Health();
  const metrics = new Metrics();
  const gate = clientGate(settings, metrics, log);

  /** Requests that arrive while the model loads wait for it, at most `engine.load_wait_ms`. */
  const loading = new LoadGate<{ serve: MessageHandler; mcp: McpBackend }>(settings.engine.load_wait_ms);
  let serve: MessageHandler = (raw, origin) =>
    loading.wait(origin.signal).then(
      (ready) => ready.serve(raw, origin),
      (error: ServerError) => whileLoading(raw, error),
    );
  const mcp = settings.mcp.enabled ? mcpFace(settings, gate, async (signal) => (await loading.wait(signal)).mcp, metrics, log) : undefined;
  /** The faces on the HTTP port beside JSON-RPC (OpenAI, Ollama, MCP, the playground); until the model is loaded, MCP and the "loading" answers of the others. */
  let routes: readonly HttpRoute[] = [...(mcp ? [mcp.route] : []), loadingRoute()];
  let close: () => Promise<void>;
  let endedByInput = (): void => {};
  const ended = new Promise<void>((resolve) => (endedByInput = resolve));
  const transports = createTransports(transportOptions(settings), {
    handle: (raw, origin) => serve(raw, origin),
    gate,
    endpoints: endpoints(health, metrics),
    routes: () => routes,
    ...(mcp ? { stdioGuest: mcp.stdio } : {}),
    log,
    onStdioEnd: () => {
      log.info('stdin ended; shutting down');
      void close()
        .catch((err: unknown) => log.error({ err }, 'shutdown failed'))
        .finally(endedByInput);
    },
  });
  close = async () => {
    await Promise.all(transports.map((t) => t.close()));
    await mcp?.close();
  };
  const addresses = await bind(transports);
  const playground = playgroundRoute({ wsAddress: () => addresses.ws, keysRequired: settings.auth.api_keys.length > 0 });
  routes = [playground, ...routes]; // the page loads while the model does
  log.info({ addresses }, 'transports bound; loading the model (GET /health answers 503 until it is loaded)');
  let loaded: { engine: Engine; opened: OpenStore };
  try {
    loaded = await loadEngineAndStore(settings, log);
  } catch (err) {
    loading.fail();
    await close();
    throw err;
  }
  const { engine, opened } = loaded;
  const { store, cluster } = opened;

  const s = settings.streams;
  const files = folders(settings);
  const scheduler = new Scheduler(engine.slots, settings.engine.queue_limit, settings.engine.queue_limit_per_client);
  const loadedModels = models(settings, engine, scheduler, log);
  let fleet: Fleet | undefined;
  try {
    fleet = await startFleet(settings, opened, { engine, scheduler, hold: () => loadedModels.use(undefined) }, log);
  } catch (err) {
    loading.fail();
    await close();
    await opened.close();
    await engine.dispose();
    throw err;
  }
  const hub = new StreamHub({
    engine,
    scheduler,
    resolve: (model, signal) => loadedModels.use(model, undefined, signal),
    store,
    ...(cluster ? { peers: cluster } : {}),
    ...(fleet ? { shared: fleet.runs } : {}),
    log,
    observer: observeAll(options.observer ? [metrics, options.observer] : [metrics]),
  });
  const table: Map<string, Method<Client>> = new Map([
    ...coreMethods({
      engine,
      hub,
      store,
      scheduler,
      maxWaitMs: s.max_wait_ms,
      cleanupIntervalS: s.cleanup_interval_s,
      bufferTimeoutS: s.buffer_timeout_s,
      promptCaches: files.promptCaches,
      maxContext: (model) => loadedModels.contextOf(model),
    }),
    ...modelsMethods(loadedModels),
    ...rkllmMethods({ engine, hub, folders: files }),
    ...liveMethods(hub),
    authenticateMethod(gate),
    engineStatusMethod(engine, fleet && (() => fleet.status())),
    listFunctionsMethod((): ReadonlyMap<string, Method<Client>> => table, engine),
    ...(settings.diagnostics ? diagnosticMethods(store, () => hub.sweep()).map(adminOnly) : []),
  ]);
  const dispatcher = new Dispatcher({
    methods: table,
    log,
    maxBatch: settings.jsonrpc.max_batch,
    gate,
    onAnswered: (method, transport, seconds) => metrics.answered(method, transport, seconds),
  });
  metrics.watch({
    streams: () => loadedModels.streams(),
    buffers: () => store.status(),
    connections: () => transports.map((t) => [t.name, t.openConnections]),
    methods: new Set([...table.keys(), ...FACE_METHODS, ...MCP_TOOL_METHODS]),
  });
  const sweeper = setInterval(() => {
    hub.sweep().catch((err: unknown) => log.error({ err }, 'buffer sweep failed'));
  }, s.cleanup_interval_s * 1000);
  sweeper.unref();

  let closed: Promise<void> | undefined;
  close = (): Promise<void> =>
    (closed ??= (async () => {
      clearInterval(sweeper);
      fleet?.stopAccepting(fault('SHUTTING_DOWN', 'no_new_runs'));
      await Promise.all(transports.map((t) => t.close()));
      await mcp?.close();
      await hub.close();
      await fleet?.close();
      await opened.close();
      await loadedModels.close();
      await engine.dispose();
    })());
  let drained: Promise<void> | undefined;
  const times = { drainMs: settings.shutdown.drain_timeout_s * 1000, finalPollMs: settings.shutdown.final_poll_timeout_s * 1000 };
  const target = drainTarget({ health, hub, schedulers: () => loadedModels.schedulers, fleet, store, transports, close });
  const shutdown = (): Promise<void> => (drained ??= drain(target, times, log, cluster !== undefined));

  serve = async (raw, origin) => {
    const reply = await dispatcher.handle(raw, origin);
    metrics.replied(reply);
    return reply;
  };
  const sendLimit = { bytes: settings.connections.max_send_buffer_bytes, setting: 'connections.max_send_buffer_bytes' };
  const refused = (code: number): void => metrics.error(code);
  const faces = faceRoutes({
    hub,
    engine,
    models: loadedModels,
    gate,
    sendLimit,
    refused,
    answered: (method, seconds) => metrics.answered(method, 'http', seconds),
  });
  loading.open({
    serve,
    mcp: {
      engine,
      hub,
      store,
      queueLimit: settings.engine.queue_limit,
      models: loadedModels,
      ...(fleet ? { fleet: () => fleet.status() } : {}),
    },
  });
  if (fleet) health.degradedWhen(() => fleet.degraded);
  routes = [playground, ...(mcp ? [mcp.route] : []), ...faces];
  health.serving(engine);
  const names = Object.entries(addresses).map(([name, address]) => `${name}=${address}`);
  const readyLine = `listening for connections: ${names.join(' ')} (engine ${engine.name}, model ${basename(engine.param.model_path)})`;
  log.info({ addresses }, readyLine);
  return { addresses, readyLine, dispatcher, ended, shutdown, close };
}
