import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { RpcError } from '../../jsonrpc/errors.js';
import type { EngineFeature } from '../capabilities.js';
import type { EngineState, EngineStatus } from '../status.js';
import type {
  ChatTemplate,
  Engine,
  FunctionTools,
  KvCacheClear,
  KvCacheSize,
  LLMResultCallback,
  RKLLMCrossAttnParam,
  RKLLMLoraAdapter,
  RKLLMParam,
  RunHandle,
  RunOutcome,
  RunRequest,
} from '../types.js';
import type { LayoutVersion } from './abi.js';
import { toKvPositions, toNativeCrossAttn, toNativeParam, toNativeRun } from './marshal.js';
import type { Call, KvCacheSizes, LayoutSetting, Opened, ResultMessage, RunEnd } from './protocol.js';
import { RunRelay, judge } from './run-relay.js';
import { RuntimeExitError, RuntimeProcess, describeExit, explain, type Reply, type RuntimeExit } from './runtime-process.js';

/** How the engine restarts a crashed runtime: exponential backoff from `initialDelayMs`, up to `maxDelayMs`. */
export interface RestartPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
  /** Failed restarts in a row before the engine gives up (state "failed"). */
  maxAttempts: number;
}

/** How long the engine waits for the runtime before it stops the worker. */
export interface RkllmTimeouts {
  /** Loading the library and the model (`rkllm_init`). */
  initMs: number;
  /** Any other call that does not generate. */
  callMs: number;
  /** A run to end after `rkllm_abort`; past it the worker is killed and restarted. */
  abortMs: number;
}

export interface RkllmEngineOptions {
  /** librkllmrt.so (a path, or a name the dynamic loader finds). */
  library: string;
  /** The struct layout: the runtime version, or `auto` to tell it from the library. */
  layout: LayoutSetting;
  restart?: Partial<RestartPolicy>;
  timeouts?: Partial<RkllmTimeouts>;
  /** Receives the runtime's output and the engine's restarts. */
  log?: Logger;
}

const DEFAULT_RESTART: RestartPolicy = { initialDelayMs: 250, maxDelayMs: 30_000, maxAttempts: 5 };
const DEFAULT_TIMEOUTS: RkllmTimeouts = { initMs: 10 * 60_000, callMs: 60_000, abortMs: 10_000 };

/** "rkllm-runtime version: 1.2.1", as the runtime prints it while loading. */
const VERSION_LINE = /rkllm-runtime version:?\s*v?(\d+)\.(\d+)(?:\.\d+)?/i;

const ENGINE = 'rkllm';

/** The loaded model: what it was loaded with, and the calls that configure its handle. */
interface Model {
  param: RKLLMParam;
  layout: LayoutVersion;
  source: Opened['source'];
  /** The version the runtime printed while loading, if it did. */
  reported: string | null;
  /** Adapters, prompt cache, template, tools and cross-attention, replayed in order after a restart. */
  replay: Call[];
}

/** A run from the moment it is asked for until it has ended. */
interface Ticket {
  relay: RunRelay;
  aborted: boolean;
  runtime?: RuntimeProcess;
  abortTimer?: NodeJS.Timeout;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The runtime answered a non-zero status code. `data` carries the code and the runtime's reason. */
function refused(fn: string, code: number, log: string[]): RpcError {
  const reason = explain(log);
  return new RpcError('ENGINE_ERROR', `${fn} failed with code ${code}: ${reason}`, { engine: ENGINE, function: fn, code, reason });
}

/** Replaces the replayed call to `fn`, or appends it: setters keep only their last value. */
function replacing(replay: Call[], call: Call): Call[] {
  return [...replay.filter((c) => c.fn !== call.fn), call];
}

/**
 * The engine on Rockchip's RKLLM runtime (librkllmrt.so) through koffi. The runtime lives in a
 * worker process that owns the handle (runtime-process.ts, worker.ts): a segfault or abort in it
 * ends that process only. The engine then ends the runs it was serving with an error, restarts the
 * worker with backoff, reloads the model and replays its configuration; `status()` shows where it
 * is. One handle runs one generation at a time, so runs take turns.
 */
export class RkllmEngine implements Engine {
  readonly name = ENGINE;
  readonly slots = 1;
  readonly #options: RkllmEngineOptions;
  readonly #restart: RestartPolicy;
  readonly #timeouts: RkllmTimeouts;
  #state: EngineState = 'unloaded';
  #model: Model | undefined;
  #runtime: RuntimeProcess | undefined;
  #loading: Promise<void> | undefined;
  #recovery: Promise<void> | undefined;
  #recoveryAbort: AbortController | undefined;
  #nextRestartAt: number | undefined;
  /** Crashes and failed restarts since the last run that ended normally: the backoff exponent. */
  #failures = 0;
  #restarts = 0;
  #lastError: { message: string; at: string } | undefined;
  /** Runs asked for and not yet ended; they take turns on the handle. */
  readonly #tickets = new Set<Ticket>();
  #turn: Promise<void> = Promise.resolve();
  #nextRun = 1;
  readonly #relays = new Map<number, { relay: RunRelay; runtime: RuntimeProcess }>();

  constructor(options: RkllmEngineOptions) {
    this.#options = options;
    this.#restart = { ...DEFAULT_RESTART, ...options.restart };
    this.#timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  }

  get param(): RKLLMParam {
    if (!this.#model) throw this.#unavailable();
    return this.#model.param;
  }

  /** The runtime has every RKLLM feature; whether a model uses one is the runtime's call. */
  supports(_feature: EngineFeature): boolean {
    return true;
  }

  async init(param: RKLLMParam): Promise<void> {
    if (this.#state !== 'unloaded') {
      const what = this.#state === 'loading' ? 'loading' : `loaded (${this.#model?.param.model_path})`;
      throw new RpcError('MODEL_LOADED', `A model is already ${what}; the server holds one model at a time: call rkllm_destroy first`, {
        engine: ENGINE,
      });
    }
    this.#state = 'loading';
    this.#loading = this.#launch(param, []).then(
      ({ runtime, model }) => {
        this.#runtime = runtime;
        this.#model = model;
        this.#failures = 0;
        this.#state = 'ready';
      },
      (err: unknown) => {
        this.#state = 'unloaded';
        throw err;
      },
    );
    try {
      await this.#loading;
    } finally {
      this.#loading = undefined;
    }
  }

  async validate(request: RunRequest): Promise<void> {
    if (!this.#model) throw this.#unavailable();
    toNativeRun(request, this.#model.param, this.#model.layout);
  }

  run(request: RunRequest, callback: LLMResultCallback): Promise<RunOutcome> {
    return this.#schedule(request, callback, false);
  }

  /** Runs through `rkllm_run_async`: the worker learns the end from `rkllm_is_running`. */
  runAsync(request: RunRequest, callback: LLMResultCallback): RunHandle {
    return { done: this.#schedule(request, callback, true) };
  }

  abort(): void {
    for (const ticket of this.#tickets) this.#abortTicket(ticket);
  }

  isRunning(): boolean {
    return this.#tickets.size > 0;
  }

  async loadLora(adapter: RKLLMLoraAdapter): Promise<void> {
    await this.#configure({ fn: 'rkllm_load_lora', adapter: { ...adapter } }, (replay, call) => [...replay, call]);
  }

  async loadPromptCache(path: string): Promise<void> {
    await this.#configure({ fn: 'rkllm_load_prompt_cache', path }, replacing);
  }

  async releasePromptCache(): Promise<void> {
    await this.#configure({ fn: 'rkllm_release_prompt_cache' }, (replay) => replay.filter((c) => c.fn !== 'rkllm_load_prompt_cache'));
  }

  async clearKvCache(request: KvCacheClear): Promise<void> {
    const positions = toKvPositions(request.start_pos, request.end_pos, this.#nBatch());
    await this.#invoke(await this.#ready(), {
      fn: 'rkllm_clear_kv_cache',
      keep_system_prompt: request.keep_system_prompt ? 1 : 0,
      start_pos: positions?.[0] ?? null,
      end_pos: positions?.[1] ?? null,
    });
  }

  async getKvCacheSize(): Promise<KvCacheSize> {
    const nBatch = this.#nBatch();
    const { value, log } = await this.#request<KvCacheSizes>(await this.#ready(), { op: 'kv_cache_size', n_batch: nBatch });
    if (value.code !== 0) throw refused('rkllm_get_kv_cache_size', value.code, log);
    return { cache_sizes: value.sizes };
  }

  async setChatTemplate(template: ChatTemplate): Promise<void> {
    await this.#configure({ fn: 'rkllm_set_chat_template', ...template }, replacing);
  }

  async setFunctionTools(tools: FunctionTools): Promise<void> {
    const { system_prompt, tools: json, tool_response_str } = tools;
    await this.#configure({ fn: 'rkllm_set_function_tools', system_prompt, tools: json, tool_response_str }, replacing);
  }

  async setCrossAttnParams(params: RKLLMCrossAttnParam): Promise<void> {
    await this.#configure({ fn: 'rkllm_set_cross_attn_params', params: toNativeCrossAttn(params) }, replacing);
  }

  /** Aborts every run and waits for them to end, then destroys the handle: the runtime must not free what a run still uses. */
  async destroy(): Promise<void> {
    await this.#loading?.catch(() => undefined);
    this.#recoveryAbort?.abort();
    // From here on a crash is not restarted: `#onExit` only acts for the adopted runtime.
    const runtime = this.#runtime;
    this.#runtime = undefined;
    this.abort();
    await this.#turn;
    await this.#recovery;
    if (runtime) {
      await this.#invoke(runtime, { fn: 'rkllm_destroy' }).catch((err: unknown) =>
        this.#options.log?.warn({ err }, 'rkllm_destroy failed'),
      );
      await runtime.close();
    }
    this.#recovery = undefined;
    this.#model = undefined;
    this.#lastError = undefined;
    this.#failures = 0;
    this.#restarts = 0;
    this.#state = 'unloaded';
  }

  async dispose(): Promise<void> {
    await this.destroy();
  }

  status(): EngineStatus {
    const model = this.#model;
    const restartIn =
      this.#state === 'restarting' && this.#nextRestartAt !== undefined ? Math.max(0, this.#nextRestartAt - Date.now()) : null;
    return {
      engine: ENGINE,
      state: this.#state,
      model_path: model?.param.model_path ?? null,
      restarts: this.#restarts,
      last_error: this.#lastError ?? null,
      runtime: {
        library: this.#options.library,
        layout: model?.layout ?? null,
        layout_source: model?.source ?? null,
        reported_version: model?.reported ?? null,
        pid: this.#runtime?.pid ?? null,
        next_restart_in_ms: restartIn,
      },
    };
  }

  #unavailable(): RpcError {
    const reasons: Record<EngineState, string> = {
      unloaded: 'No model is loaded; call rkllm_init first',
      loading: 'The model is still loading; retry when rkllm_init has answered',
      ready: 'The RKLLM runtime is not running',
      restarting: 'The RKLLM runtime is restarting after a crash; retry shortly',
      failed: `The RKLLM runtime could not be restarted (${this.#lastError?.message ?? 'unknown error'}); call rkllm_destroy, then rkllm_init`,
    };
    return new RpcError('ENGINE_UNAVAILABLE', reasons[this.#state], { engine: ENGINE, state: this.#state });
  }

  #nBatch(): number {
    return Math.max(1, this.param.extend_param.n_batch);
  }

  /** The running worker, after waiting out a restart. */
  async #ready(): Promise<RuntimeProcess> {
    if (this.#state === 'restarting') await this.#recovery;
    if (this.#state === 'ready' && this.#runtime) return this.#runtime;
    throw this.#unavailable();
  }

  async #request<T>(
    runtime: RuntimeProcess,
    command: Parameters<RuntimeProcess['request']>[0],
    timeoutMs = this.#timeouts.callMs,
  ): Promise<Reply<T>> {
    try {
      return await runtime.request<T>(command, timeoutMs);
    } catch (err) {
      throw new RpcError('ENGINE_ERROR', `The RKLLM runtime failed: ${message(err)}`, { engine: ENGINE, reason: message(err) });
    }
  }

  /** Makes one runtime call; a non-zero status code becomes ENGINE_ERROR with the runtime's reason. */
  async #invoke(runtime: RuntimeProcess, call: Call, timeoutMs?: number): Promise<void> {
    const { value, log } = await this.#request<number>(runtime, { op: 'call', call }, timeoutMs);
    if (value !== 0) throw refused(call.fn, value, log);
  }

  /** Makes a call that configures the handle, and records it for replay after a restart. */
  async #configure(call: Call, record: (replay: Call[], call: Call) => Call[]): Promise<void> {
    const runtime = await this.#ready();
    await this.#invoke(runtime, call);
    if (this.#model) this.#model.replay = record(this.#model.replay, call);
  }

  #spawn(reported: { version: string | null }): RuntimeProcess {
    const log = this.#options.log;
    const runtime: RuntimeProcess = new RuntimeProcess({
      onResult: (message) => this.#onResult(message),
      onOutput: (line, stream) => {
        const version = VERSION_LINE.exec(line);
        if (version) reported.version = `${version[1]}.${version[2]}`;
        if (stream === 'stderr') log?.warn({ engine: ENGINE, worker_pid: runtime.pid }, line);
        else log?.info({ engine: ENGINE, worker_pid: runtime.pid }, line);
      },
      onExit: (exit) => this.#onExit(runtime, exit),
    });
    return runtime;
  }

  /**
   * Starts a worker, loads the library and the model, and replays `replay`. Every failure is an
   * RpcError that says what went wrong; the worker is stopped.
   */
  async #launch(param: RKLLMParam, replay: Call[]): Promise<{ runtime: RuntimeProcess; model: Model }> {
    const reported: { version: string | null } = { version: null };
    const runtime = this.#spawn(reported);
    try {
      const opened = await this.#opened(runtime);
      const native = toNativeParam(param, opened.layout);
      const init = await this.#request<number>(runtime, { op: 'init', param: native }, this.#timeouts.initMs);
      if (init.value !== 0) throw refused('rkllm_init', init.value, init.log);
      if (reported.version !== null && reported.version !== opened.layout) {
        throw new RpcError(
          'ENGINE_ERROR',
          `${this.#options.library} says it is RKLLM runtime ${reported.version}, but the ${opened.layout} struct layout is in use: ` +
            `set engine.rkllm.runtime_version (--rkllm-version) to ${reported.version}`,
          { engine: ENGINE, reason: 'layout_mismatch' },
        );
      }
      for (const call of replay) await this.#invoke(runtime, call);
      return { runtime, model: { param, layout: opened.layout, source: opened.source, reported: reported.version, replay } };
    } catch (err) {
      runtime.kill();
      await runtime.close();
      throw err instanceof RpcError ? err : new RpcError('ENGINE_ERROR', message(err), { engine: ENGINE });
    }
  }

  async #opened(runtime: RuntimeProcess): Promise<Opened> {
    const { library, layout } = this.#options;
    try {
      return (await runtime.request<Opened>({ op: 'open', library, layout }, this.#timeouts.callMs)).value;
    } catch (err) {
      throw new RpcError('ENGINE_ERROR', `The RKLLM runtime could not start: ${message(err)}`, {
        engine: ENGINE,
        library,
        reason: message(err),
      });
    }
  }

  #onResult(result: ResultMessage): void {
    const entry = this.#relays.get(result.run);
    if (!entry?.relay.deliver(result)) return;
    // The consumer asked to stop: the run's next callback returns 1 (pause) to the runtime.
    entry.runtime.request({ op: 'stop', run: result.run }).catch(() => undefined);
  }

  #onExit(runtime: RuntimeProcess, exit: RuntimeExit): void {
    if (runtime !== this.#runtime) return;
    this.#runtime = undefined;
    this.#lastError = { message: describeExit(exit), at: new Date().toISOString() };
    this.#failures++;
    this.#state = 'restarting';
    this.#options.log?.error(
      { engine: ENGINE, code: exit.code, signal: exit.signal, output: exit.lastLines },
      'the RKLLM runtime crashed; restarting it',
    );
    this.#recovery = this.#recover();
  }

  /** Restarts the runtime with backoff until it runs again, `destroy` cancels, or too many attempts fail. */
  async #recover(): Promise<void> {
    const model = this.#model!;
    const controller = new AbortController();
    this.#recoveryAbort = controller;
    for (let attempt = 1; attempt <= this.#restart.maxAttempts; attempt++) {
      const delay = Math.min(this.#restart.initialDelayMs * 2 ** (this.#failures - 1), this.#restart.maxDelayMs);
      this.#nextRestartAt = Date.now() + delay;
      const waited = await sleep(delay, true, { signal: controller.signal }).catch(() => false);
      if (!waited) return;
      try {
        const { runtime, model: reloaded } = await this.#launch(model.param, model.replay);
        if (controller.signal.aborted) {
          await runtime.close();
          return;
        }
        this.#runtime = runtime;
        this.#model = reloaded;
        this.#state = 'ready';
        this.#restarts++;
        this.#options.log?.info(
          { engine: ENGINE, worker_pid: runtime.pid, attempt },
          'the RKLLM runtime was restarted and the model reloaded',
        );
        return;
      } catch (err) {
        this.#failures++;
        this.#lastError = { message: `restart ${attempt} failed: ${message(err)}`, at: new Date().toISOString() };
        this.#options.log?.warn({ engine: ENGINE, attempt, err }, 'restarting the RKLLM runtime failed');
      }
    }
    this.#state = 'failed';
  }

  async #schedule(request: RunRequest, callback: LLMResultCallback, nativeAsync: boolean): Promise<RunOutcome> {
    const ticket: Ticket = { relay: new RunRelay(callback), aborted: request.signal?.aborted ?? false };
    this.#tickets.add(ticket);
    const onAbort = (): void => this.#abortTicket(ticket);
    request.signal?.addEventListener('abort', onAbort, { once: true });
    const previous = this.#turn;
    let release!: () => void;
    this.#turn = new Promise((resolve) => (release = resolve));
    try {
      await previous;
      return await this.#execute(ticket, request, nativeAsync);
    } finally {
      clearTimeout(ticket.abortTimer);
      request.signal?.removeEventListener('abort', onAbort);
      this.#tickets.delete(ticket);
      release();
    }
  }

  async #execute(ticket: Ticket, request: RunRequest, nativeAsync: boolean): Promise<RunOutcome> {
    const { relay } = ticket;
    if (ticket.aborted) return relay.end('abort');
    let runtime: RuntimeProcess;
    let model: Model;
    let native: ReturnType<typeof toNativeRun>;
    try {
      runtime = await this.#ready();
      model = this.#model!;
      native = toNativeRun(request, model.param, model.layout);
    } catch (err) {
      return relay.fail(message(err));
    }
    if (ticket.aborted) return relay.end('abort');
    const id = this.#nextRun++;
    ticket.runtime = runtime;
    this.#relays.set(id, { relay, runtime });
    try {
      const { input, infer, limit } = native;
      const { value: end, log } = await runtime.request<RunEnd>({ op: 'run', run: id, async: nativeAsync, input, infer, limit });
      this.#failures = 0;
      const verdict = judge(end, {
        stopped: ticket.aborted || relay.stopRequested,
        maxNewTokens: native.maxNewTokens,
        maxContextLen: model.param.max_context_len,
        log,
      });
      return relay.end(verdict.reason, end.perf, verdict.error);
    } catch (err) {
      const why =
        err instanceof RuntimeExitError
          ? `${describeExit(err.exit)} during this run; the engine restarts it and reloads the model`
          : `the RKLLM runtime failed during this run: ${message(err)}`;
      return relay.fail(why);
    } finally {
      this.#relays.delete(id);
    }
  }

  /** Aborts a run: at once if it has not started; through `rkllm_abort` if it runs, killing the worker if that does not end it in time. */
  #abortTicket(ticket: Ticket): void {
    ticket.aborted = true;
    const runtime = ticket.runtime;
    if (!runtime || ticket.abortTimer) return;
    this.#invoke(runtime, { fn: 'rkllm_abort' }).catch((err: unknown) => this.#options.log?.warn({ err }, 'rkllm_abort failed'));
    ticket.abortTimer = setTimeout(() => {
      this.#options.log?.error(
        { engine: ENGINE, timeout_ms: this.#timeouts.abortMs },
        'a run did not end after rkllm_abort; stopping the runtime',
      );
      runtime.kill();
    }, this.#timeouts.abortMs);
  }
}
