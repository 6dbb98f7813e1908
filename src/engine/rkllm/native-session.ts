/**
 * The runtime worker's side of the RKLLM engine: it loads the library, owns the handle, makes the
 * calls and turns every callback into a message. It runs in its own process (see worker.ts), so a
 * fault inside the runtime ends that process and nothing else.
 */
import koffi, { type LibraryHandle } from 'koffi';
import { LLMCallState, type RKLLMPerfStat } from '../types.js';
import {
  defineTypes,
  plausibleLayouts,
  type LayoutVersion,
  type NativeHandle,
  type NativeParam,
  type NativePointer,
  type NativeResult,
  type RkllmTypes,
} from './abi.js';
import { bindFunctions, isRunningValue, type RkllmFunctions } from './functions.js';
import { fromNativeParam } from './marshal.js';
import type { Outcome } from '../worker-process.js';
import type { Call, Command, KvCacheSizes, LayoutSetting, Opened, ResultMessage, RunEnd } from './protocol.js';

/** How often the worker asks `rkllm_is_running` while waiting for an asynchronous run to end. */
const IDLE_POLL_MS = { settled: 2, running: 50 } as const;

/** One generation as the worker sees it: counts tokens, joins UTF-8, decides each callback's return value. */
class NativeRun {
  readonly #decoder = new TextDecoder('utf-8');
  #tokens = 0;
  stopRequested = false;
  stopped = false;
  limited = false;
  settled = false;
  final: RunEnd['final'] = null;
  perf: RKLLMPerfStat | null = null;

  constructor(
    readonly id: number,
    readonly limit: number | null,
  ) {}

  /** The message for the engine (none for FINISH/ERROR, which the run's reply carries). */
  message(
    state: number,
    bytes: Uint8Array,
    result: NativeResult,
    outputs: Pick<ResultMessage, 'last_hidden_layer' | 'logits'>,
  ): ResultMessage | null {
    this.perf = { ...result.perf };
    if (state === LLMCallState.RKLLM_RUN_FINISH || state === LLMCallState.RKLLM_RUN_ERROR) {
      this.final = state === LLMCallState.RKLLM_RUN_FINISH ? 'finish' : 'error';
      this.settled = true;
      // Bytes of a character the runtime never completed cannot be shown; drop them.
      this.#decoder.decode();
      return null;
    }
    this.#tokens++;
    // WAITING carries an incomplete character; the NORMAL callback after it carries it whole.
    const text = state === LLMCallState.RKLLM_RUN_NORMAL ? this.#decoder.decode(bytes, { stream: true }) : '';
    const complete = state === LLMCallState.RKLLM_RUN_NORMAL && (text !== '' || bytes.length === 0);
    return {
      type: 'result',
      run: this.id,
      state: complete ? LLMCallState.RKLLM_RUN_NORMAL : LLMCallState.RKLLM_RUN_WAITING,
      text,
      token_id: result.token_id,
      perf: this.perf,
      ...outputs,
    };
  }

  /** The callback's return value: 1 pauses the runtime once the engine asked to stop or the limit is reached. */
  verdict(state: number): number {
    if (state === LLMCallState.RKLLM_RUN_FINISH || state === LLMCallState.RKLLM_RUN_ERROR) return 0;
    if (this.stopRequested) this.stopped = true;
    else if (this.limit !== null && this.#tokens >= this.limit) this.limited = true;
    else return 0;
    this.settled = true;
    return 1;
  }

  end(code: number): RunEnd {
    return { code, final: this.final, stopped: this.stopped, limited: this.limited, perf: this.perf };
  }
}

interface Loaded {
  path: string;
  layout: LayoutVersion;
  types: RkllmTypes;
  fns: RkllmFunctions;
}

/** Owns one library and at most one handle; serves the engine's commands. */
export class NativeSession {
  readonly #send: (message: ResultMessage) => void;
  #loaded: Loaded | undefined;
  #handle: NativeHandle | undefined;
  #callback: bigint | undefined;
  readonly #runs = new Map<number, NativeRun>();

  constructor(send: (message: ResultMessage) => void) {
    this.#send = send;
  }

  /** Carries out one command. Throws for a request that cannot be made (no library, no handle, bad layout). */
  async handle(command: Command): Promise<Outcome> {
    switch (command.op) {
      case 'open':
        return { value: this.#open(command.library, command.layout), failed: false };
      case 'init':
        return this.#status(await this.#init(command.param));
      case 'run': {
        const end = await this.#run(command);
        return { value: end, failed: end.code !== 0 || end.final === 'error' };
      }
      case 'stop': {
        const run = this.#runs.get(command.run);
        if (run) run.stopRequested = true;
        return { value: null, failed: false };
      }
      case 'kv_cache_size': {
        const sizes = new Int32Array(command.n_batch);
        const code = await this.#require().fns.getKvCacheSize(this.#requireHandle(), sizes);
        const reply: KvCacheSizes = { code, sizes: [...sizes] };
        return { value: reply, failed: reply.code !== 0 };
      }
      case 'call':
        return this.#status(await this.#call(command.call));
    }
  }

  #status(code: number): Outcome {
    return { value: code, failed: code !== 0 };
  }

  #require(): Loaded {
    if (!this.#loaded) throw new Error('The runtime library is not loaded');
    return this.#loaded;
  }

  #requireHandle(): NativeHandle {
    if (this.#handle === undefined) throw new Error('rkllm_init has not succeeded: there is no handle');
    return this.#handle;
  }

  #open(path: string, setting: LayoutSetting): Opened {
    let lib: LibraryHandle;
    try {
      lib = koffi.load(path);
    } catch (err) {
      throw new Error(`Cannot load the RKLLM runtime library ${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
    const provisional = defineTypes(setting === 'auto' ? '1.2' : setting);
    const bytes = bindFunctions(lib, path, provisional).createDefaultParamBytes();
    const { layout, source } = chooseLayout(path, setting, plausibleLayouts(bytes));
    const types = layout === provisional.version ? provisional : defineTypes(layout);
    this.#loaded = { path, layout, types, fns: bindFunctions(lib, path, types) };
    return { layout, source, defaults: fromNativeParam(readDefaults(bytes, types)) };
  }

  async #init(param: NativeParam): Promise<number> {
    const { types, fns, layout } = this.#require();
    if (this.#handle !== undefined) throw new Error('rkllm_init was already called; the worker holds one handle');
    const callback = koffi.register(
      (result: bigint, userdata: number, state: number) => this.#onResult(result, userdata, state),
      koffi.pointer(types.resultCallback),
    );
    const argument =
      layout === '1.2'
        ? callback
        : {
            result_callback: callback,
            result_userdata: 0,
            tokenizer_callback: null,
            tokenizer_userdata: 0,
            embed_callback: null,
            embed_userdata: 0,
          };
    const handle: [NativeHandle | null] = [null];
    const code = await fns.init(handle, param, argument);
    if (code !== 0 || handle[0] === null) {
      koffi.unregister(callback);
      return code === 0 ? -1 : code;
    }
    this.#handle = handle[0];
    this.#callback = callback;
    return code;
  }

  async #run(command: Extract<Command, { op: 'run' }>): Promise<RunEnd> {
    const { fns, layout } = this.#require();
    const handle = this.#requireHandle();
    const run = new NativeRun(command.run, command.limit);
    this.#runs.set(run.id, run);
    try {
      if (!command.async) return run.end(await fns.run(handle, command.input, command.infer, run.id));
      const code = await fns.runAsync(handle, command.input, command.infer, run.id);
      if (code === 0) await this.#idle(handle, layout, run);
      return run.end(code);
    } finally {
      this.#runs.delete(run.id);
    }
  }

  /** Waits until `rkllm_is_running` says no task runs: how an asynchronous run is known to be over. */
  async #idle(handle: NativeHandle, layout: LayoutVersion, run: NativeRun): Promise<void> {
    const { fns } = this.#require();
    while (this.#handle === handle && isRunningValue(layout, await fns.isRunning(handle))) {
      await new Promise((resolve) => setTimeout(resolve, run.settled ? IDLE_POLL_MS.settled : IDLE_POLL_MS.running));
    }
  }

  async #call(call: Call): Promise<number> {
    const { fns } = this.#require();
    const handle = this.#requireHandle();
    switch (call.fn) {
      case 'rkllm_load_lora':
        return fns.loadLora(handle, call.adapter);
      case 'rkllm_load_prompt_cache':
        return fns.loadPromptCache(handle, call.path);
      case 'rkllm_release_prompt_cache':
        return fns.releasePromptCache(handle);
      case 'rkllm_clear_kv_cache':
        return fns.clearKvCache(handle, call.keep_system_prompt, call.start_pos, call.end_pos);
      case 'rkllm_set_chat_template':
        return fns.setChatTemplate(handle, call.system_prompt, call.prompt_prefix, call.prompt_postfix);
      case 'rkllm_set_function_tools':
        return fns.setFunctionTools(handle, call.system_prompt, call.tools, call.tool_response_str);
      case 'rkllm_set_cross_attn_params':
        return fns.setCrossAttnParams(handle, call.params);
      case 'rkllm_abort':
        // Also pause at the next token, in case the runtime took the abort before the run had started.
        for (const run of this.#runs.values()) run.stopRequested = true;
        return fns.abort(handle);
      case 'rkllm_destroy':
        return this.#destroy(handle);
    }
  }

  async #destroy(handle: NativeHandle): Promise<number> {
    if (this.#runs.size > 0) throw new Error('rkllm_destroy while a run is in progress would free what the run uses; abort it first');
    const code = await this.#require().fns.destroy(handle);
    this.#handle = undefined;
    if (this.#callback !== undefined) koffi.unregister(this.#callback);
    this.#callback = undefined;
    return code;
  }

  /** The callback, on the main thread while the runtime's thread waits: copy everything, return quickly. */
  #onResult(pointer: bigint, userdata: number, state: number): number {
    const run = this.#runs.get(userdata);
    if (!run) return 0;
    try {
      const { types } = this.#require();
      const result = koffi.decode(pointer, types.result) as NativeResult;
      // Up to the NUL, as bytes: a character may be split across callbacks.
      const text = result.text ? (koffi.decode(result.text, 'uint8_t', -1) as Uint8Array) : new Uint8Array(0);
      const message = run.message(state, text, result, this.#outputs(result));
      if (message) this.#send(message);
      return run.verdict(state);
    } catch (err) {
      process.stderr.write(`rkllm-mcp worker: a callback failed: ${err instanceof Error ? err.stack : String(err)}\n`);
      run.stopRequested = true;
      return run.verdict(state);
    }
  }

  #outputs({ last_hidden_layer: hidden, logits }: NativeResult): Pick<ResultMessage, 'last_hidden_layer' | 'logits'> {
    const outputs: Pick<ResultMessage, 'last_hidden_layer' | 'logits'> = {};
    const states = floats(hidden.hidden_states, hidden.num_tokens, hidden.embd_size);
    if (states) outputs.last_hidden_layer = { hidden_states: states, embd_size: hidden.embd_size, num_tokens: hidden.num_tokens };
    const values = floats(logits.logits, logits.num_tokens, logits.vocab_size);
    if (values) outputs.logits = { logits: values, vocab_size: logits.vocab_size, num_tokens: logits.num_tokens };
    return outputs;
  }
}

/** Copies rows x columns floats out of the runtime's memory; undefined when there are none. */
function floats(pointer: NativePointer, rows: number, columns: number): Float32Array | undefined {
  if (!pointer || rows <= 0 || columns <= 0) return undefined;
  return Float32Array.from(koffi.decode(pointer, 'float', rows * columns) as ArrayLike<number>);
}

/**
 * The RKLLMParam in `bytes` under `types`, its pointers (strings) zeroed first so they decode as
 * null, never followed: under a wrong layout they would be garbage.
 */
function readDefaults(bytes: Uint8Array, types: RkllmTypes): NativeParam {
  const copy = bytes.slice();
  const members = (koffi.type(types.param) as { members: Record<string, { type: { primitive: string }; offset: number }> }).members;
  for (const { type, offset } of Object.values(members)) if (type.primitive === 'String') copy.fill(0, offset, offset + 8);
  return koffi.decode(copy, types.param) as NativeParam;
}

/** Decides the layout from the setting and what the library's defaults look like; refuses a contradiction. */
export function chooseLayout(path: string, setting: LayoutSetting, plausible: LayoutVersion[]): Omit<Opened, 'defaults'> {
  const told = plausible.length === 1 ? plausible[0] : undefined;
  if (setting === 'auto') {
    if (told) return { layout: told, source: 'library' };
    throw new Error(
      `Cannot tell whether ${path} uses the RKLLM 1.2 or 1.3 struct layout from its rkllm_createDefaultParam(); ` +
        'set engine.rkllm.runtime_version (--rkllm-version) to the runtime version of the library',
    );
  }
  if (told && told !== setting) {
    throw new Error(
      `${path} returns its default parameters in the RKLLM ${told} layout, but the runtime version is set to ${setting}: ` +
        `the structs would not match and the runtime would read garbage. Set engine.rkllm.runtime_version (--rkllm-version) to ${told} or auto`,
    );
  }
  return { layout: setting, source: 'setting' };
}
