import type { Logger } from 'pino';
import type { EngineFeature } from '../capabilities.js';
import { checkModelFile } from '../../gguf/model-file.js';
import { errorText } from '../messages.js';
import { RunReporter } from '../run-reporter.js';
import type {
  InitParam,
  ChatTemplate,
  Engine,
  EngineStatus,
  FinishReason,
  FunctionTools,
  KvCacheClear,
  KvCacheSize,
  LLMResultCallback,
  RKLLMCrossAttnParam,
  RKLLMLoraAdapter,
  RKLLMParam,
  RKLLMResult,
  RunHandle,
  RunOutcome,
  RunRequest,
} from '../types.js';
import { toKvPositions, toNativeCrossAttn, toNativeRun } from './marshal.js';
import type { Call, KvCacheSizes, LayoutSetting, ResultMessage, RunEnd } from './protocol.js';
import { RKLLM, RuntimeExitError, describeExit, explain, invoke, refused, request, type RuntimeProcess } from './runtime-process.js';
import { RuntimeSupervisor, type Model, type RestartPolicy } from './supervisor.js';

export type { RestartPolicy } from './supervisor.js';

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

/** A run from the moment it is asked for until it has ended. */
interface Ticket {
  reporter: RunReporter;
  aborted: boolean;
  runtime?: RuntimeProcess;
  abortTimer?: NodeJS.Timeout;
}

/** The runtime has every RKLLM feature (whether a model uses one is the runtime's call), and none of the server's extensions. */
export function rkllmSupports(feature: EngineFeature): boolean {
  return feature !== 'json_schema' && feature !== 'run_tools' && feature !== 'run_template' && feature !== 'seed';
}

function supervisor(options: RkllmEngineOptions, onResult: (message: ResultMessage) => void): RuntimeSupervisor {
  return new RuntimeSupervisor({
    library: options.library,
    layout: options.layout,
    restart: { ...DEFAULT_RESTART, ...options.restart },
    timeouts: { ...DEFAULT_TIMEOUTS, ...options.timeouts },
    ...(options.log ? { log: options.log } : {}),
    onResult,
  });
}

/** Replaces the replayed call to `fn`, or appends it: setters keep only their last value. */
function replacing(replay: Call[], call: Call): Call[] {
  return [...replay.filter((c) => c.fn !== call.fn), call];
}

/** One callback of the worker as the consumer's RKLLMResult: the runtime's typed arrays become plain arrays, its logits raw. */
function resultOf(message: ResultMessage): RKLLMResult {
  const result: RKLLMResult = { text: message.text, token_id: message.token_id, perf: message.perf };
  if (message.last_hidden_layer) {
    const { hidden_states, embd_size, num_tokens } = message.last_hidden_layer;
    result.last_hidden_layer = { hidden_states: [...hidden_states], embd_size, num_tokens };
  }
  if (message.logits) {
    const { logits, vocab_size, num_tokens } = message.logits;
    result.logits = { logits: [...logits], vocab_size, num_tokens, normalization: 'none' };
  }
  return result;
}

/** What the engine knows about a run when judging how it ended. */
interface RunVerdictContext {
  /** Aborted (rkllm_abort or the run's signal) or stopped by its consumer. */
  stopped: boolean;
  /** The most tokens it could generate, when bounded. */
  maxNewTokens: number | null;
  maxContextLen: number;
  /** The runtime's output lines that explain a refusal. */
  log: string[];
}

/** Why a run ended, from the worker's account of it, or the error to report. */
function judge(end: RunEnd, context: RunVerdictContext): { reason: FinishReason; error?: string } {
  const why = explain(context.log);
  if (end.code !== 0) return { reason: 'error', error: `rkllm_run failed with code ${end.code}: ${why}` };
  if (end.final === 'error') return { reason: 'error', error: `the RKLLM runtime reported RKLLM_RUN_ERROR: ${why}` };
  if (context.stopped) return { reason: 'abort' };
  const generated = end.perf?.generate_tokens ?? 0;
  const filled = (end.perf?.prefill_tokens ?? 0) + generated >= context.maxContextLen;
  if (end.limited || filled || (context.maxNewTokens !== null && generated >= context.maxNewTokens)) return { reason: 'length' };
  return { reason: 'stop' };
}

/**
 * The engine on Rockchip's RKLLM runtime (librkllmrt.so) through koffi. The runtime lives in a
 * worker process that owns the handle (runtime-process.ts, worker.ts): a segfault or abort in it
 * ends that process only. The engine then ends the runs it was serving with an error, and its
 * supervisor (supervisor.ts) restarts the worker, reloads the model and replays its configuration;
 * `status()` shows where it is. One handle runs one generation at a time, so runs take turns.
 */
export class RkllmEngine implements Engine {
  readonly name = RKLLM;
  readonly slots = 1;
  readonly #options: RkllmEngineOptions;
  readonly #timeouts: RkllmTimeouts;
  readonly #supervisor: RuntimeSupervisor;
  /** Runs asked for and not yet ended; they take turns on the handle. */
  readonly #tickets = new Set<Ticket>();
  #turn: Promise<void> = Promise.resolve();
  #nextRun = 1;
  /** Whose conversation the runtime's one history holds (`RunRequest.owner`); undefined when the last run kept none. */
  #historyOwner: string | undefined;
  readonly #reporters = new Map<number, { reporter: RunReporter; runtime: RuntimeProcess }>();
  #disposed: Promise<void> | undefined;

  private constructor(options: RkllmEngineOptions) {
    this.#options = options;
    this.#timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.#supervisor = supervisor(options, (message) => this.#onResult(message));
  }

  /** Starts a runtime worker and loads the model (`rkllm_init`): an engine that holds it until disposed. */
  static async load(options: RkllmEngineOptions, param: InitParam): Promise<RkllmEngine> {
    checkModelFile(param.model_path, RKLLM, false);
    const engine = new RkllmEngine(options);
    await engine.#supervisor.start(param);
    return engine;
  }

  /** What the library's `rkllm_createDefaultParam()` returns, from a worker started to ask. */
  static defaultParam(options: RkllmEngineOptions): Promise<RKLLMParam> {
    return supervisor(options, () => {}).libraryDefaults();
  }

  /** The status of an engine of `options` without a model (or loading one). */
  static idleStatus(options: RkllmEngineOptions, state: 'unloaded' | 'loading'): EngineStatus {
    return { ...supervisor(options, () => {}).status(), state };
  }

  get param(): RKLLMParam {
    return this.#model().param;
  }

  supports(feature: EngineFeature): boolean {
    return rkllmSupports(feature);
  }

  /** What the library's `rkllm_createDefaultParam()` returned to the loaded model's worker. */
  async defaultParam(): Promise<RKLLMParam> {
    return this.#model().defaults;
  }

  async validate(request: RunRequest): Promise<void> {
    const model = this.#model();
    toNativeRun(request, model.param, model.layout);
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

  /** The adapters loaded into the model, as recorded for replay after a restart. */
  loraAdapters(): string[] {
    const replay = this.#supervisor.model?.replay ?? [];
    return replay.flatMap((call) => (call.fn === 'rkllm_load_lora' ? [call.adapter.lora_adapter_name] : []));
  }

  async loadPromptCache(path: string): Promise<void> {
    await this.#configure({ fn: 'rkllm_load_prompt_cache', path }, replacing);
  }

  async releasePromptCache(): Promise<void> {
    await this.#configure({ fn: 'rkllm_release_prompt_cache' }, (replay) => replay.filter((c) => c.fn !== 'rkllm_load_prompt_cache'));
  }

  async clearKvCache(request: KvCacheClear): Promise<void> {
    const positions = toKvPositions(request.start_pos, request.end_pos, this.#nBatch());
    await invoke(
      await this.#supervisor.ready(),
      {
        fn: 'rkllm_clear_kv_cache',
        keep_system_prompt: request.keep_system_prompt ? 1 : 0,
        start_pos: positions?.[0] ?? null,
        end_pos: positions?.[1] ?? null,
      },
      this.#timeouts.callMs,
    );
  }

  async getKvCacheSize(owner?: string): Promise<KvCacheSize> {
    const nBatch = this.#nBatch();
    const runtime = await this.#supervisor.ready();
    const { value, log } = await request<KvCacheSizes>(runtime, { op: 'kv_cache_size', n_batch: nBatch }, this.#timeouts.callMs);
    if (value.code !== 0) throw refused('rkllm_get_kv_cache_size', value.code, log);
    // The runtime holds one conversation: only its owner sees what it holds.
    const visible = owner === undefined || owner === this.#historyOwner;
    return { cache_sizes: visible ? value.sizes : value.sizes.map(() => 0) };
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

  /** Aborts every run and waits for them to end, then destroys the handle (the runtime must not free what a run still uses) and stops the worker. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= this.#supervisor.stop(async () => {
      this.abort();
      await this.#turn;
    });
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  status(): EngineStatus {
    return this.#supervisor.status();
  }

  #model(): Model {
    const model = this.#supervisor.model;
    if (!model) throw this.#supervisor.unavailable();
    return model;
  }

  #nBatch(): number {
    return Math.max(1, this.param.extend_param.n_batch);
  }

  /** Makes a call that configures the handle, and records it for replay after a restart. */
  async #configure(call: Call, record: (replay: Call[], call: Call) => Call[]): Promise<void> {
    const runtime = await this.#supervisor.ready();
    await invoke(runtime, call, this.#timeouts.callMs);
    const model = this.#supervisor.model;
    if (model) model.replay = record(model.replay, call);
  }

  #onResult(message: ResultMessage): void {
    const entry = this.#reporters.get(message.run);
    if (!entry?.reporter.deliver(resultOf(message), message.state)) return;
    // The consumer asked to stop: the run's next callback returns 1 (pause) to the runtime.
    entry.runtime.request({ op: 'stop', run: message.run }).catch(() => undefined);
  }

  async #schedule(request: RunRequest, callback: LLMResultCallback, nativeAsync: boolean): Promise<RunOutcome> {
    const ticket: Ticket = { reporter: new RunReporter(callback), aborted: request.signal?.aborted ?? false };
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
    const { reporter } = ticket;
    if (ticket.aborted) return reporter.end('abort');
    let runtime: RuntimeProcess;
    let model: Model;
    let native: ReturnType<typeof toNativeRun>;
    try {
      runtime = await this.#supervisor.ready();
      model = this.#supervisor.model!;
      native = toNativeRun(request, model.param, model.layout);
    } catch (err) {
      return reporter.fail(errorText(err));
    }
    if (ticket.aborted) return reporter.end('abort');
    const owner = request.owner ?? '';
    if (request.infer.keep_history && this.#historyOwner !== undefined && this.#historyOwner !== owner) {
      // The runtime keeps one history: another owner's conversation is cleared before this one continues its own.
      try {
        await invoke(runtime, { fn: 'rkllm_clear_kv_cache', keep_system_prompt: 1, start_pos: null, end_pos: null }, this.#timeouts.callMs);
      } catch (err) {
        return reporter.fail(errorText(err));
      }
    }
    this.#historyOwner = request.infer.keep_history ? owner : undefined;
    const id = this.#nextRun++;
    ticket.runtime = runtime;
    this.#reporters.set(id, { reporter, runtime });
    try {
      const { input, infer, limit } = native;
      const { value: end, log } = await runtime.request<RunEnd>({ op: 'run', run: id, async: nativeAsync, input, infer, limit });
      this.#supervisor.succeeded();
      const verdict = judge(end, {
        stopped: ticket.aborted || reporter.stopRequested,
        maxNewTokens: native.maxNewTokens,
        maxContextLen: model.param.max_context_len,
        log,
      });
      return reporter.end(verdict.reason, end.perf, verdict.error);
    } catch (err) {
      const why =
        err instanceof RuntimeExitError
          ? `${describeExit(err.exit)} during this run; the engine restarts it and reloads the model`
          : `the RKLLM runtime failed during this run: ${errorText(err)}`;
      return reporter.fail(why);
    } finally {
      this.#reporters.delete(id);
    }
  }

  /** Aborts a run: at once if it has not started; through `rkllm_abort` if it runs, killing the worker if that does not end it in time. */
  #abortTicket(ticket: Ticket): void {
    ticket.aborted = true;
    const runtime = ticket.runtime;
    if (!runtime || ticket.abortTimer) return;
    invoke(runtime, { fn: 'rkllm_abort' }, this.#timeouts.callMs).catch((err: unknown) =>
      this.#options.log?.warn({ err }, 'rkllm_abort failed'),
    );
    ticket.abortTimer = setTimeout(() => {
      this.#options.log?.error(
        { engine: RKLLM, timeout_ms: this.#timeouts.abortMs },
        'a run did not end after rkllm_abort; stopping the runtime',
      );
      runtime.kill();
    }, this.#timeouts.abortMs);
  }
}
