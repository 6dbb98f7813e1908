/** Builds the server's models: the folder's catalog and the loaded set over the engine kind, from plain options. */
import { totalmem } from 'node:os';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { DEFAULT_MEMORY_SHARE } from '../engine/llama/memory-budget.js';
import { startParam, type EngineKind, type EngineOptions } from '../engine/start.js';
import type { Engine } from '../engine/types.js';
import { ensureBuiltinModel } from '../gguf/builtin.js';
import type { ConfinedFolder } from '../paths.js';
import { Scheduler } from '../streams/scheduler.js';
import { ModelCatalog, type ModelEntry } from './catalog.js';
import type { KeepAliveMs } from './keep-alive.js';
import { LoadedModels } from './loaded.js';

export interface ModelSetOptions {
  /** The folder of models (relative: from the working directory). */
  dir: string;
  /** How every model's engine is built (its model path and context come from the model). */
  engine: EngineOptions;
  /** Models loaded at once at most (0: what the memory budget holds); forced to 1 on RKLLM. */
  maxLoaded: number;
  keepAliveMs: KeepAliveMs;
  /** With keys: whether a user key's request may load a model (otherwise only admins load). */
  userLoads: boolean;
  waitMs: number;
  queueLimit: number;
  queueLimitPerClient: number;
  /** Where a sidecar's LoRA adapters are found. */
  loraAdapters: ConfinedFolder;
}

/** Builds an engine with `entry` loaded, then applies its sidecar's chat template and LoRA adapters. */
async function openModel(entry: ModelEntry, kind: EngineKind, base: EngineOptions, lora: ConfinedFolder): Promise<Engine> {
  const side = entry.sidecar;
  const maxContextLen = side.max_context_len ?? base.maxContextLen;
  const engine = await kind.load(await startParam({ ...base, modelPath: entry.path, maxContextLen, initParam: { ...side.sampling } }));
  try {
    if (side.chat_template) await engine.setChatTemplate(side.chat_template);
    for (const adapter of side.lora_adapters ?? []) {
      const path = await lora.file(adapter.path, 'lora_adapters');
      await engine.loadLora({ lora_adapter_path: path, lora_adapter_name: adapter.name, scale: adapter.scale ?? 1 });
    }
  } catch (err) {
    await engine.dispose();
    throw err;
  }
  return engine;
}

export function modelSet(options: ModelSetOptions, kind: EngineKind, log: Logger): LoadedModels {
  const llama = options.engine.kind === 'llama.cpp';
  const catalog = new ModelCatalog({
    dir: resolve(options.dir),
    engine: options.engine.kind,
    ...(llama ? { builtin: () => ensureBuiltinModel('tiny') } : {}),
  });
  const maxMemory = options.engine.maxMemory;
  return new LoadedModels({
    catalog,
    kind,
    open: (entry) => openModel(entry, kind, options.engine, options.loraAdapters),
    scheduler: () => new Scheduler(kind.slots, options.queueLimit, options.queueLimitPerClient),
    maxLoaded: llama ? options.maxLoaded : 1,
    memoryBudget: maxMemory > 0 ? maxMemory : Math.floor(totalmem() * DEFAULT_MEMORY_SHARE),
    keepAliveMs: options.keepAliveMs,
    userLoads: options.userLoads,
    waitMs: options.waitMs,
    contextSize: options.engine.maxContextLen,
    slots: options.engine.parallel,
    log,
  });
}
