/**
 * The engine contract, in the RKLLM C API's own vocabulary (rkllm.h). Both engines implement it:
 * the llama.cpp engine (node-llama-cpp) and, on Rockchip boards, the RKLLM runtime through FFI.
 * The structs it speaks are in params.ts (what goes in) and results.ts (what comes out); this file
 * re-exports them, and the defaults, so callers import the whole vocabulary from one place.
 */
import type { EngineFeature } from './capabilities.js';
import type {
  ChatTemplate,
  FunctionTools,
  KvCacheClear,
  KvCacheSize,
  RKLLMCrossAttnParam,
  RKLLMInferParam,
  RKLLMInput,
  RKLLMLoraAdapter,
  RKLLMParam,
} from './params.js';
import type { LLMResultCallback, RunOutcome } from './results.js';

export * from './params.js';
export * from './results.js';
export { createDefaultParam, emptyPerf, overParam, type InitParam } from './defaults.js';

export interface RunRequest {
  input: RKLLMInput;
  infer: RKLLMInferParam;
  /** Aborting it stops this run (the per-run equivalent of `rkllm_abort`). */
  signal?: AbortSignal;
  /**
   * Whose `keep_history` conversation the run continues (an API key's id, or a client address
   * without keys); no client continues or sees another's. Runs without one share one conversation.
   */
  owner?: string;
}

/** A run started with `runAsync`. */
export interface RunHandle {
  /** Settles when the run has ended; never rejects (failures arrive as `finish_reason: "error"`). */
  readonly done: Promise<RunOutcome>;
}

/**
 * The engine contract. One instance holds one loaded model (one RKLLM handle) for its whole life:
 * an async factory loads it (`LlamaEngine.load`, `RkllmEngine.load`; see `start.ts`), and
 * `dispose` frees it once; after that, every method that needs the model throws
 * ENGINE_UNAVAILABLE (-32004). A feature the engine cannot do throws NOT_SUPPORTED (-32005)
 * naming the engine and the feature (see `capabilities.ts`).
 */
export interface Engine extends AsyncDisposable {
  /** A short name, e.g. "llama.cpp" or "rkllm", used in messages. */
  readonly name: string;
  /** How many runs can execute at the same time. The scheduler queues the rest. */
  readonly slots: number;
  /** The parameters the model was loaded with (defaults filled in). */
  readonly param: RKLLMParam;
  /** Whether the engine can do `feature` at all (with any model). */
  supports(feature: EngineFeature): boolean;
  /** `rkllm_createDefaultParam()`: what the engine starts from. RKLLM: what the loaded library returns. */
  defaultParam(): Promise<RKLLMParam>;
  /**
   * Checks an input before it is queued, where the engine can (e.g. a prompt longer than the
   * context). Rejects with a ServerError. Engines that cannot check ahead accept everything.
   */
  validate(request: RunRequest): Promise<void>;
  /** Runs to the end, invoking `callback` for every token. Resolves when generation ends. */
  run(request: RunRequest, callback: LLMResultCallback): Promise<RunOutcome>;
  /** Starts a run and returns at once. */
  runAsync(request: RunRequest, callback: LLMResultCallback): RunHandle;
  /** Stops every running generation (`rkllm_abort`). */
  abort(): void;
  /** True while at least one generation runs (`rkllm_is_running`). */
  isRunning(): boolean;
  /** `rkllm_load_lora`: loads an adapter that runs can then name in `lora_params`. */
  loadLora(adapter: RKLLMLoraAdapter): Promise<void>;
  /** The names of the LoRA adapters loaded into the model now (none without a model). */
  loraAdapters(): string[];
  /** `rkllm_load_prompt_cache`: later runs whose input starts with the cached prefix reuse it. */
  loadPromptCache(path: string): Promise<void>;
  /** `rkllm_release_prompt_cache`. */
  releasePromptCache(): Promise<void>;
  /** `rkllm_clear_kv_cache`. */
  clearKvCache(request: KvCacheClear): Promise<void>;
  /** `rkllm_get_kv_cache_size`; with `owner`, what that owner's conversation holds (0 where another's is). */
  getKvCacheSize(owner?: string): Promise<KvCacheSize>;
  /** `rkllm_set_chat_template`. */
  setChatTemplate(template: ChatTemplate): Promise<void>;
  /** `rkllm_set_function_tools`. */
  setFunctionTools(tools: FunctionTools): Promise<void>;
  /** `rkllm_set_cross_attn_params`. */
  setCrossAttnParams(params: RKLLMCrossAttnParam): Promise<void>;
  /** Frees the model (`rkllm_destroy`) after aborting its runs, and everything else the engine holds (the runtime itself). Idempotent. */
  dispose(): Promise<void>;
  /** `await using`: {@link dispose}. Idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
  /** The engine's state for `engine_status` and `GET /health`: ready, or restarting or failed when it supervises a runtime; unloaded once disposed. */
  status(): EngineStatus;
}

/**
 * Where an engine is in its life: no model; loading one; serving; restarting its runtime after a
 * crash; or failed (the runtime could not be restarted, or is not usable until rkllm_destroy).
 */
export type EngineState = 'unloaded' | 'loading' | 'ready' | 'restarting' | 'failed';

/** What the status method reports about the engine. */
export interface EngineStatus {
  engine: string;
  state: EngineState;
  /** The loaded model, also while restarting or failed. */
  model_path: string | null;
  /** How many times the runtime was restarted after a crash. */
  restarts: number;
  /** The last runtime failure (a crash, a failed restart), with when it happened (ISO 8601). */
  last_error: { message: string; at: string } | null;
  /** Engine-specific details, e.g. the runtime library and its version. */
  runtime?: Record<string, unknown>;
}
