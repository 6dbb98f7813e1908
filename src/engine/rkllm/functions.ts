/**
 * The runtime's exported functions, bound through koffi with the struct layouts of abi.ts: their
 * names, their TypeScript signatures, and the check that a library exports every one.
 */
import koffi, { type LibraryHandle } from 'koffi';
import type {
  LayoutVersion,
  NativeCrossAttnParam,
  NativeHandle,
  NativeInferParam,
  NativeInput,
  NativeLoraAdapter,
  NativeParam,
  RkllmTypes,
  KoffiFunction,
  TypeSpec,
} from './abi.js';

/** Every function of the runtime, by its exported name. */
export const RKLLM_SYMBOLS = [
  'rkllm_createDefaultParam',
  'rkllm_init',
  'rkllm_load_lora',
  'rkllm_load_prompt_cache',
  'rkllm_release_prompt_cache',
  'rkllm_destroy',
  'rkllm_run',
  'rkllm_run_async',
  'rkllm_abort',
  'rkllm_is_running',
  'rkllm_clear_kv_cache',
  'rkllm_get_kv_cache_size',
  'rkllm_set_chat_template',
  'rkllm_set_function_tools',
  'rkllm_set_cross_attn_params',
] as const;

export type RkllmSymbol = (typeof RKLLM_SYMBOLS)[number];

/**
 * The runtime's functions with TypeScript signatures, each named as its function in camelCase. Every call but `createDefaultParamBytes`
 * runs on a koffi worker thread and returns a promise: the runtime may wait for its own thread
 * (rkllm_abort, rkllm_destroy, rkllm_run), and that thread may be waiting for a callback, which
 * only runs when the main thread is free. Every function resolves with the runtime's status code
 * (0 for success) unless noted.
 */
export interface RkllmFunctions {
  /** `rkllm_createDefaultParam`, returned as raw bytes (more than either layout's size) for {@link plausibleLayouts}. */
  createDefaultParamBytes(): Uint8Array;
  /** `rkllm_init`. `callback` is a registered `LLMResultCallback` (1.2) or an RKLLMCallback struct holding one (1.3). */
  init(handle: [NativeHandle | null], param: NativeParam, callback: bigint | Record<string, unknown>): Promise<number>;
  loadLora(handle: NativeHandle, adapter: NativeLoraAdapter): Promise<number>;
  loadPromptCache(handle: NativeHandle, path: string): Promise<number>;
  releasePromptCache(handle: NativeHandle): Promise<number>;
  destroy(handle: NativeHandle): Promise<number>;
  /** `rkllm_run`: resolves when the generation has ended; callbacks arrive meanwhile. */
  run(handle: NativeHandle, input: NativeInput, infer: NativeInferParam, userdata: number): Promise<number>;
  /** `rkllm_run_async`: resolves once the runtime has taken the input. */
  runAsync(handle: NativeHandle, input: NativeInput, infer: NativeInferParam, userdata: number): Promise<number>;
  abort(handle: NativeHandle): Promise<number>;
  /** `rkllm_is_running`: the raw value, whose meaning depends on the layout (see {@link isRunningValue}). */
  isRunning(handle: NativeHandle): Promise<number>;
  clearKvCache(handle: NativeHandle, keepSystemPrompt: number, startPos: Int32Array | null, endPos: Int32Array | null): Promise<number>;
  /** `rkllm_get_kv_cache_size`: fills `sizes` (one entry per batch slot). */
  getKvCacheSize(handle: NativeHandle, sizes: Int32Array): Promise<number>;
  setChatTemplate(handle: NativeHandle, systemPrompt: string, promptPrefix: string, promptPostfix: string): Promise<number>;
  setFunctionTools(handle: NativeHandle, systemPrompt: string, tools: string, toolResponseStr: string): Promise<number>;
  setCrossAttnParams(handle: NativeHandle, params: NativeCrossAttnParam): Promise<number>;
}

function promised(fn: KoffiFunction): (...args: unknown[]) => Promise<number> {
  return (...args) =>
    new Promise((resolve, reject) => {
      fn.async(...args, (err: Error | null, result: number) => (err ? reject(err) : resolve(result)));
    });
}

/** Binds every runtime function of `lib` with the layout of `types`; throws listing all that are absent. */
export function bindFunctions(lib: LibraryHandle, path: string, types: RkllmTypes): RkllmFunctions {
  const handle = koffi.pointer(koffi.opaque());
  const callbackArg = types.callbackStruct ? koffi.pointer(types.callbackStruct) : koffi.pointer(types.resultCallback);
  const probe = koffi.struct({ bytes: koffi.array('uint8_t', 256) });
  const signatures: Record<RkllmSymbol, [TypeSpec, TypeSpec[]]> = {
    rkllm_createDefaultParam: [probe, []],
    rkllm_init: ['int', [koffi.out(koffi.pointer(handle)), koffi.pointer(types.param), callbackArg]],
    rkllm_load_lora: ['int', [handle, koffi.pointer(types.loraAdapter)]],
    rkllm_load_prompt_cache: ['int', [handle, 'const char *']],
    rkllm_release_prompt_cache: ['int', [handle]],
    rkllm_destroy: ['int', [handle]],
    rkllm_run: ['int', [handle, koffi.pointer(types.input), koffi.pointer(types.inferParam), 'intptr_t']],
    rkllm_run_async: ['int', [handle, koffi.pointer(types.input), koffi.pointer(types.inferParam), 'intptr_t']],
    rkllm_abort: ['int', [handle]],
    rkllm_is_running: ['int', [handle]],
    rkllm_clear_kv_cache: ['int', [handle, 'int', 'int32_t *', 'int32_t *']],
    rkllm_get_kv_cache_size: ['int', [handle, 'int32_t *']],
    rkllm_set_chat_template: ['int', [handle, 'const char *', 'const char *', 'const char *']],
    rkllm_set_function_tools: ['int', [handle, 'const char *', 'const char *', 'const char *']],
    rkllm_set_cross_attn_params: ['int', [handle, koffi.pointer(types.crossAttnParam)]],
  };
  const bound = new Map<RkllmSymbol, KoffiFunction>();
  const missing: string[] = [];
  for (const name of RKLLM_SYMBOLS) {
    const [result, args] = signatures[name];
    try {
      bound.set(name, lib.func(name, result, args));
    } catch {
      missing.push(name);
    }
  }
  if (missing.length > 0) {
    throw new Error(`${path} does not export ${missing.join(', ')}: it is not an RKLLM runtime (librkllmrt.so) of version 1.2 or later`);
  }
  // Each method is its function's name in camelCase without `rkllm_`: rkllm_load_lora is loadLora.
  const methods = RKLLM_SYMBOLS.map((name) => [
    name.slice(6).replace(/_(\w)/g, (_, c: string) => c.toUpperCase()),
    promised(bound.get(name)!),
  ]);
  return {
    ...Object.fromEntries(methods),
    createDefaultParamBytes: () => (bound.get('rkllm_createDefaultParam')!() as { bytes: Uint8Array }).bytes,
  } as RkllmFunctions;
}

/** Whether a raw `rkllm_is_running` value means "a task is running" under `version`. */
export function isRunningValue(version: LayoutVersion, value: number): boolean {
  return version === '1.2' ? value === 0 : value === 1;
}
