/**
 * The messages both engines send word for word. An engine names itself (`engine`), and the
 * refusal carries that name in `data`.
 */
import { RpcError } from '../jsonrpc/errors.js';

export const NO_MODEL = 'No model is loaded; call rkllm_init first';
export const STILL_LOADING = 'The model is still loading; retry when rkllm_init has answered';

/** `rkllm_init` while a model is loaded or loading; `what` is "loading" or "loaded (<model path>)". */
export function modelLoaded(engine: string, what: string): RpcError {
  return new RpcError('MODEL_LOADED', `A model is already ${what}; the server holds one model at a time: call rkllm_destroy first`, {
    engine,
  });
}

/** The engine cannot serve: `reason` is {@link NO_MODEL}, {@link STILL_LOADING} or the engine's own. */
export function engineUnavailable(engine: string, reason: string, data: Record<string, unknown> = {}): RpcError {
  return new RpcError('ENGINE_UNAVAILABLE', reason, { engine, ...data });
}

/** The text of anything thrown. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
