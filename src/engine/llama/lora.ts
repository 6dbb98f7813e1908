import { fault } from '../../errors.js';
import { notSupported } from '../capabilities.js';
import { unknownAdapter } from '../unknown-adapter.js';
import { errorText } from '../messages.js';
import { RKLLMInferMode, type RKLLMLoraAdapter, type RunRequest } from '../types.js';
import { LLAMA, invalidFile, type LoadedModel } from './model.js';
import { SlotPool } from './slot-pool.js';

/**
 * A context for `adapter`: llama.cpp applies adapters per context, so each adapter gets its own
 * slots. Throws -32602 for a taken name or a file llama.cpp cannot apply to this model.
 */
export async function createAdapterPool(loaded: LoadedModel, adapter: RKLLMLoraAdapter, slots: number): Promise<SlotPool> {
  if (loaded.adapters.has(adapter.lora_adapter_name)) {
    throw fault('INVALID_PARAMS', 'detail', {
      detail: `a LoRA adapter named "${adapter.lora_adapter_name}" is already loaded; names must be unique`,
    });
  }
  try {
    return await SlotPool.create(loaded.model, loaded.param.max_context_len, loaded.threads, slots, adapter);
  } catch (err) {
    throw invalidFile(`llama.cpp cannot apply "${adapter.lora_adapter_path}" to this model: ${errorText(err)}`);
  }
}

/** The slots a run takes: the base model's, or those of the adapter its `lora_params` names. */
export function poolFor(loaded: LoadedModel, request: RunRequest): SlotPool {
  const name = request.infer.lora_params?.lora_adapter_name;
  if (name === undefined) return loaded.base;
  if (request.infer.mode === RKLLMInferMode.RKLLM_INFER_GET_LAST_HIDDEN_LAYER) {
    throw notSupported(LLAMA, 'lora', 'GET_LAST_HIDDEN_LAYER runs on an embedding context, which takes no adapters');
  }
  const pool = loaded.adapters.get(name);
  if (!pool) throw unknownAdapter(name, [...loaded.adapters.keys()]);
  return pool;
}
