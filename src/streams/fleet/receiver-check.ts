import type { Engine, RunRequest } from '../../engine/types.js';
import { unknownAdapter } from '../../engine/unknown-adapter.js';
import type { ServerError } from '../../errors.js';
import { pinned } from './needs.js';

/**
 * The receiving instance's checks of a run bound for the fleet's shared queue. A run naming a LoRA
 * adapter this instance has not loaded may still run on another instance that has: every other
 * check (prompt, parameters) runs here all the same, and the refusal this instance would give for
 * the adapter is returned, for the queue to give if no live instance of the fleet has it either
 * (or if the queue cannot be reached). Any other refusal is thrown, as `engine.validate` throws it.
 */
export async function checkForFleet(engine: Engine, params: Omit<RunRequest, 'signal'>): Promise<ServerError | undefined> {
  const name = params.infer.lora_params?.lora_adapter_name;
  if (name === undefined || engine.loraAdapters().includes(name)) {
    await engine.validate(params);
    return undefined;
  }
  const refusal = await engine.validate(params).then(
    () => unknownAdapter(name, engine.loraAdapters()),
    (err: unknown) => err as ServerError,
  );
  // A run kept on this instance (its conversation, its saved prompt cache) cannot go elsewhere.
  if (pinned(params)) throw refusal;
  const infer = { ...params.infer };
  delete infer.lora_params;
  await engine.validate({ ...params, infer });
  return refusal;
}
