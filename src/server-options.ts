/**
 * The composition root's reading of the settings: what each part of the server gets from them, as
 * plain options (engine, models, store, folders, transports, client gate, fleet). With
 * src/server.ts and src/cli.ts, the only file that reads Settings.
 */
import { totalmem } from 'node:os';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { ApiKeys, exposesBeyondLoopback } from './auth.js';
import { ClientGate } from './clients.js';
import { DEFAULT_MEMORY_SHARE } from './engine/llama/memory-budget.js';
import type { EngineKind, EngineOptions } from './engine/start.js';
import { errorObject } from './errors.js';
import { ensureBuiltinModel } from './gguf/builtin.js';
import { ClientLimits } from './limits.js';
import type { Metrics } from './metrics.js';
import { parseKeepAlive } from './models/keep-alive.js';
import { ModelCatalog } from './models/catalog.js';
import { LoadedModels } from './models/loaded.js';
import { openModel } from './models/open.js';
import { clientFolders, type ClientFolders } from './paths.js';
import { parallelOf, type Settings } from './settings.js';
import type { SharedQueueOptions } from './streams/fleet/fleet.js';
import { SharedQueue } from './streams/fleet/shared-queue.js';
import type { OpenStore, StoreOptions } from './streams/open-store.js';
import { Scheduler } from './streams/scheduler.js';
import type { TransportOptions } from './transports/create.js';

export function engineOptions(settings: Settings): EngineOptions {
  const e = settings.engine;
  const r = e.rkllm;
  const v = r.vision;
  return {
    kind: e.kind,
    modelPath: e.model_path,
    threads: e.threads,
    parallel: parallelOf(e.kind, e.parallel),
    maxContextLen: e.max_context_len,
    maxMemory: e.max_memory,
    rkllm: {
      library: r.library,
      layout: r.runtime_version,
      extendParam: r.extend_param,
      restart: { initialDelayMs: r.restart_delay_ms, maxDelayMs: r.restart_max_delay_ms, maxAttempts: r.max_restarts },
      timeouts: { initMs: r.init_timeout_ms },
      vision: {
        encoder: v.encoder,
        model: e.model_path,
        lib: v.rknn_lib,
        coreMask: v.core_mask,
        family: v.image_tags,
        limits: { maxBytes: v.max_image_bytes, maxPixels: v.max_image_pixels },
      },
    },
  };
}

/** The models folder and the loaded set, from the settings `models.*` (see docs/models.md). */
export function models(settings: Settings, kind: EngineKind, log: Logger): LoadedModels {
  const m = settings.models;
  const keepAliveMs = parseKeepAlive(m.keep_alive);
  if (keepAliveMs === undefined)
    throw new Error(`setting "models.keep_alive" must be a duration ("5m", "30s", "0", "-1"); got "${m.keep_alive}"`);
  const e = settings.engine;
  const engine = engineOptions(settings);
  const llama = engine.kind === 'llama.cpp';
  const lora = folders(settings).loraAdapters;
  return new LoadedModels({
    catalog: new ModelCatalog({
      dir: resolve(m.dir ?? settings.folders.models),
      engine: engine.kind,
      ...(llama ? { builtin: () => ensureBuiltinModel('tiny') } : {}),
    }),
    kind,
    open: (entry) => openModel(entry, kind, engine, lora),
    scheduler: () => new Scheduler(kind.slots, e.queue_limit, e.queue_limit_per_client),
    // RKLLM holds one model at a time.
    maxLoaded: llama ? m.max_loaded : 1,
    memoryBudget: engine.maxMemory > 0 ? engine.maxMemory : Math.floor(totalmem() * DEFAULT_MEMORY_SHARE),
    keepAliveMs,
    userLoads: m.user_loads,
    waitMs: e.load_wait_ms,
    contextSize: engine.maxContextLen,
    slots: engine.parallel,
    log,
  });
}

export function storeOptions(settings: Settings): StoreOptions {
  const { streams: s, redis: r } = settings;
  return {
    kind: s.store,
    limits: { maxBuffers: s.max_buffers, maxBufferBytes: s.max_buffer_bytes, bufferTimeoutMs: s.buffer_timeout_s * 1000 },
    redis: {
      ...{ url: r.url, keyPrefix: r.key_prefix, leaseMs: r.lease_ms, retryMs: r.retry_ms, maxBlockingReads: r.max_blocking_connections },
      commandTimeoutMs: r.command_timeout_ms,
    },
  };
}

/** The folders client-given file names resolve in (relative ones from the working directory). */
export function folders(settings: Settings): ClientFolders {
  const f = settings.folders;
  return clientFolders({ models: f.models, promptCaches: f.prompt_caches, loraAdapters: f.lora_adapters, images: f.images });
}

/** What the transports get from the settings: the enabled ones, with their limits. */
export function transportOptions(settings: Settings): TransportOptions {
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
export function clientGate(settings: Settings, metrics: Metrics, log: Logger): ClientGate {
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

/** With `--redis` and `fleet.shared_queue`: this instance's part in the fleet's one run queue. */
export async function startFleet(
  settings: Settings,
  opened: OpenStore,
  local: Pick<SharedQueueOptions, 'engine' | 'scheduler' | 'hold'>,
  log: Logger,
): Promise<SharedQueue | undefined> {
  if (!opened.redis || !settings.fleet.shared_queue) return undefined;
  const { engine: e, redis, limits } = settings;
  return SharedQueue.start({
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
