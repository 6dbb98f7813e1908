import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Logger } from 'pino';
import { exposesBeyondLoopback, type ClientEnd } from './auth.js';
import { ClientGate, type Client } from './clients.js';
import { engineKind, startParam } from './engine/start.js';
import { fault, type ServerError } from './errors.js';
import { FACE_METHODS, faceRoutes, loadingRoute } from './faces/routes.js';
import { playgroundRoute } from './faces/playground/route.js';
import { Health } from './health.js';
import type { McpBackend } from './faces/mcp/backend.js';
import { McpFace } from './faces/mcp/face.js';
import { MCP_TOOL_METHODS } from './faces/mcp/tools.js';
import { Dispatcher, type Method } from './jsonrpc/dispatcher.js';
import { errorResponse, parseMessage, salvageId, type JsonRpcResponse } from './jsonrpc/message.js';
import { LoadGate } from './load-gate.js';
import { authenticateMethod } from './methods/auth.js';
import { adminOnly, coreMethods, listFunctionsMethod } from './methods/core.js';
import { diagnosticMethods } from './methods/diagnostics.js';
import { engineStatusMethod } from './methods/engine-status.js';
import { liveMethods } from './methods/live.js';
import { rkllmMethods } from './methods/rkllm.js';
import { Metrics } from './metrics.js';
import { modelsMethods } from './methods/models.js';
import { defaultEngine } from './models/default-engine.js';
import type { Settings } from './settings.js';
import { clientGate, engineOptions, folders, models, startFleet, storeOptions, transportOptions } from './server-options.js';
import { drain, type Drainable } from './shutdown.js';
import { openStore } from './streams/open-store.js';
import { StreamHub, type StreamObserver } from './streams/hub.js';
import { createTransports } from './transports/create.js';
import type { HttpRoute } from './transports/http-route.js';
import type { HttpEndpoint } from './transports/http.js';
import type { MessageHandler } from './transports/transport.js';

/** A running server: its transports' bound addresses and a way to stop it. */
export interface RunningServer {
  readonly addresses: Record<string, string>;
  /** The readiness message, `listening for connections: …`, as logged at info level once serving. */
  readonly readyLine: string;
  readonly dispatcher: Dispatcher<ClientEnd, Client>;
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
      maxSessionsPerKey: mcp.max_sessions_per_key,
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

/** The server once the model is loaded: JSON-RPC, MCP's backend and every HTTP face. */
interface Serving {
  serve: MessageHandler;
  mcp: McpBackend;
  routes: readonly HttpRoute[];
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
  /** What `close` unwinds, last registered first, once (Node 20 may lack `AsyncDisposableStack`); a start-up that fails unwinds through it too. */
  const disposers: Array<() => unknown> = [];
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      for (const dispose of disposers.splice(0).reverse()) await dispose();
    })());

  /** Requests that arrive while the model loads wait for it, at most `engine.load_wait_ms`. */
  const loading = new LoadGate<Serving>(settings.engine.load_wait_ms);
  const mcp = settings.mcp.enabled ? mcpFace(settings, gate, async (signal) => (await loading.wait(signal)).mcp, metrics, log) : undefined;
  let mcpClosed: Promise<void> | undefined;
  const closeMcp = (): Promise<void> => (mcpClosed ??= mcp?.close() ?? Promise.resolve());
  const addresses: Record<string, string> = {};
  const playground = playgroundRoute({ wsAddress: () => addresses.ws, keysRequired: settings.auth.api_keys.length > 0 });
  /** Until the model is loaded: the playground, MCP, and the "loading" answers of the other faces. */
  const whileLoadingRoutes = [playground, ...(mcp ? [mcp.route] : []), loadingRoute()];
  let endedByInput = (): void => {};
  const ended = new Promise<void>((resolve) => (endedByInput = resolve));
  const transports = createTransports(transportOptions(settings), {
    handle: (raw, origin) =>
      loading.wait(origin.signal).then(
        (ready) => ready.serve(raw, origin),
        (error: ServerError) => whileLoading(raw, error),
      ),
    gate,
    endpoints: endpoints(health, metrics),
    routes: () => loading.value?.routes ?? whileLoadingRoutes,
    ...(mcp ? { stdioGuest: mcp.stdio } : {}),
    log,
    onStdioEnd: () => {
      log.info('stdin ended; shutting down');
      void close()
        .catch((err: unknown) => log.error({ err }, 'shutdown failed'))
        .finally(endedByInput);
    },
  });
  disposers.push(async () => {
    await Promise.all(transports.map((t) => t.close()));
    await closeMcp();
  });
  try {
    for (const transport of transports) addresses[transport.name] = await transport.start();
    log.info({ addresses }, 'transports bound; loading the model (GET /health answers 503 until it is loaded)');
    const engineSettings = engineOptions(settings);
    const kind = engineKind(engineSettings, log);
    const loadedModels = models(settings, kind, log);
    disposers.push(() => loadedModels.close());
    await loadedModels.loadDefault(await startParam(engineSettings));
    const opened = await openStore(storeOptions(settings), log);
    disposers.push(() => opened.close());
    const { store } = opened;
    const engine = defaultEngine(loadedModels, kind);
    const scheduler = loadedModels.defaultScheduler;
    const fleet = await startFleet(settings, opened, { engine, scheduler, hold: () => loadedModels.use(undefined) }, log);
    if (fleet) disposers.push(() => fleet.close());

    const s = settings.streams;
    const files = folders(settings);
    const hub = new StreamHub({
      engine,
      scheduler,
      resolve: (model, signal, admin) => loadedModels.use(model, undefined, signal, admin),
      store,
      ...(opened.redis ? { fleet: fleet ?? opened.redis.peers } : {}),
      log,
      observer: observeAll(options.observer ? [metrics, options.observer] : [metrics]),
    });
    const table: Map<string, Method<Client>> = new Map([
      ...coreMethods({
        engine,
        hub,
        store,
        streams: () => loadedModels.streams(),
        maxWaitMs: s.max_wait_ms,
        cleanupIntervalS: s.cleanup_interval_s,
        bufferTimeoutS: s.buffer_timeout_s,
        promptCaches: files.promptCaches,
        images: { folder: files.images, maxBytes: settings.engine.rkllm.vision.max_image_bytes },
        maxContext: (model) => loadedModels.contextOf(model),
      }),
      ...modelsMethods(loadedModels),
      ...rkllmMethods({ engine, models: loadedModels, hub, folders: files, ...(fleet ? { loraLoaded: () => fleet.refresh() } : {}) }),
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
    disposers.push(async () => {
      clearInterval(sweeper);
      fleet?.stopAccepting(fault('SHUTTING_DOWN', 'no_new_runs'));
      // The transports stop accepting at once and let the requests in flight finish: the streams'
      // abort wakes the long polls still waiting, which answer with the final chunks, and MCP ends
      // its sessions' event streams.
      const closing = Promise.all(transports.map((t) => t.close()));
      await hub.close();
      await closeMcp();
      await closing;
    });

    let drained: Promise<void> | undefined;
    const times = { drainMs: settings.shutdown.drain_timeout_s * 1000, finalPollMs: settings.shutdown.final_poll_timeout_s * 1000 };
    /** What a graceful shutdown acts on: health turns 503, the schedulers refuse new runs, the fleet stops claiming, listeners close. */
    const target: Drainable = {
      stopAccepting: () => {
        health.draining();
        for (const scheduler of loadedModels.schedulers) scheduler.close(fault('SHUTTING_DOWN', 'no_new_runs'));
        fleet?.stopAccepting(fault('SHUTTING_DOWN', 'no_new_runs'));
        for (const transport of transports) transport.stopAccepting();
      },
      pending: async () => ({ streams: hub.liveCount + (fleet?.executing ?? 0), buffers: (await store.status()).active_buffers }),
      endStreams: async () => {
        await Promise.all([hub.stopAll(fault('SHUTTING_DOWN', 'cut_short')), fleet?.stopAll()]);
      },
      close,
    };
    const shutdown = (): Promise<void> => (drained ??= drain(target, times, log, opened.redis !== undefined));

    const faces = faceRoutes({
      hub,
      engine,
      models: loadedModels,
      modelAliases: settings.openai.model_aliases,
      gate,
      sendLimit: { bytes: settings.connections.max_send_buffer_bytes, setting: 'connections.max_send_buffer_bytes' },
      refused: (code: number): void => metrics.error(code),
      answered: (method, seconds) => metrics.answered(method, 'http', seconds),
    });
    loading.open({
      serve: async (raw, origin) => {
        const reply = await dispatcher.handle(raw, origin);
        metrics.replied(reply);
        return reply;
      },
      mcp: {
        engine,
        hub,
        store,
        queueLimit: settings.engine.queue_limit,
        models: loadedModels,
        ...(fleet ? { fleet: () => fleet.status() } : {}),
      },
      routes: [playground, ...(mcp ? [mcp.route] : []), ...faces],
    });
    if (opened.redis) health.degradedWhen(() => fleet?.degraded ?? opened.redis?.link.trouble);
    health.serving(engine);
    const names = Object.entries(addresses).map(([name, address]) => `${name}=${address}`);
    const readyLine = `listening for connections: ${names.join(' ')} (engine ${engine.name}, model ${basename(engine.param.model_path)})`;
    log.info({ addresses }, readyLine);
    return { addresses, readyLine, dispatcher, ended, shutdown, close };
  } catch (err) {
    loading.fail();
    await close();
    throw err;
  }
}
