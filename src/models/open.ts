/** Opens a model of the folder: an engine with its file loaded, and its sidecar applied. */
import { startParam, type EngineKind, type EngineOptions } from '../engine/start.js';
import type { Engine } from '../engine/types.js';
import type { ConfinedFolder } from '../paths.js';
import type { ModelEntry } from './catalog.js';

/** Builds an engine with `entry` loaded, then applies its sidecar's chat template and LoRA adapters. */
export async function openModel(entry: ModelEntry, kind: EngineKind, base: EngineOptions, lora: ConfinedFolder): Promise<Engine> {
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
