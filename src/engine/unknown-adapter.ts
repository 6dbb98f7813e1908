import { fault, type ServerError } from '../errors.js';

/** The refusal of a run whose `lora_params` names an adapter that is not loaded (`loaded`: the names that are). */
export function unknownAdapter(name: string, loaded: readonly string[]): ServerError {
  const names = loaded.map((n) => JSON.stringify(n)).join(', ') || 'none';
  return fault('INVALID_PARAMS', 'detail', {
    detail: `"lora_params.lora_adapter_name" is "${name}", which names no loaded adapter (loaded: ${names})`,
  });
}
