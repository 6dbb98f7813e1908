import { basename } from 'node:path';
import type { Logger } from 'pino';
import { startEngine } from './engine/select.js';
import { Dispatcher, type Method } from './jsonrpc/dispatcher.js';
import { coreMethods, listFunctionsMethod } from './methods/core.js';
import { diagnosticMethods } from './methods/diagnostics.js';
import { engineStatusMethod } from './methods/engine-status.js';
import { liveMethods } from './methods/live.js';
import { rkllmMethods } from './methods/rkllm.js';
import type { Settings } from './settings.js';
import { openStore, type OpenStore } from './streams/open-store.js';
import { StreamHub, type StreamObserver } from './streams/hub.js';
import { Scheduler } from './streams/scheduler.js';
import { createTransports } from './transports/create.js';

/** A running server: its transports' bound addresses and a way to stop it. */
export interface RunningServer {
  readonly addresses: Record<string, string>;
  readonly dispatcher: Dispatcher;
  /** Resolves once the server has closed itself because stdio's input ended; the process should then exit 0. */
  readonly ended: Promise<void>;
  close(): Promise<void>;
}

/**
 * Builds and starts one server from settings: loads the model, then binds every enabled
 * transport. Everything is owned by the returned object; nothing is global, so several servers
 * can run in one process.
 */
export interface ServerOptions {
  /** Sees every chunk as it is produced (benchmarks, metrics). */
  observer?: StreamObserver;
}

export async function startServer(settings: Settings, log: Logger, options: ServerOptions = {}): Promise<RunningServer> {
  const engine = await startEngine(settings.engine, log);
  const modelPath = engine.param.model_path;

  const s = settings.streams;
  let opened: OpenStore;
  try {
    opened = await openStore(settings, log);
  } catch (err) {
    await engine.dispose();
    throw err;
  }
  const { store, cluster } = opened;
  const hub = new StreamHub({
    engine,
    scheduler: new Scheduler(engine.slots, settings.engine.queue_limit),
    store,
    ...(cluster ? { cluster } : {}),
    log,
    ...(options.observer ? { observer: options.observer } : {}),
  });
  const table: Map<string, Method> = new Map([
    ...coreMethods({ engine, hub, maxWaitMs: s.max_wait_ms, cleanupIntervalS: s.cleanup_interval, bufferTimeoutS: s.buffer_timeout }),
    ...rkllmMethods({ engine, hub }),
    ...liveMethods(hub),
    engineStatusMethod(engine),
    listFunctionsMethod((): ReadonlyMap<string, Method> => table, engine),
    ...(settings.diagnostics ? diagnosticMethods(store, () => hub.sweep()) : []),
  ]);
  const dispatcher = new Dispatcher({ methods: table, log, maxBatch: settings.jsonrpc.max_batch });
  const sweeper = setInterval(() => {
    hub.sweep().catch((err: unknown) => log.error({ err }, 'buffer sweep failed'));
  }, s.cleanup_interval * 1000);
  sweeper.unref();

  let endedByInput = (): void => {};
  const ended = new Promise<void>((resolve) => (endedByInput = resolve));
  const transports = createTransports(settings, {
    handle: dispatcher.handle.bind(dispatcher),
    log,
    onStdioEnd: () => {
      log.info('stdin ended; shutting down');
      void close()
        .catch((err: unknown) => log.error({ err }, 'shutdown failed'))
        .finally(endedByInput);
    },
  });
  const addresses: Record<string, string> = {};
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      clearInterval(sweeper);
      await Promise.all(transports.map((t) => t.close()));
      await hub.close();
      await opened.close();
      await engine.dispose();
    })());
  try {
    for (const transport of transports) addresses[transport.name] = await transport.start();
  } catch (err) {
    await close();
    throw err;
  }
  const names = Object.entries(addresses).map(([name, address]) => `${name}=${address}`);
  log.info({ addresses }, `listening for connections: ${names.join(' ')} (engine ${engine.name}, model ${basename(modelPath)})`);
  return { addresses, dispatcher, ended, close };
}
