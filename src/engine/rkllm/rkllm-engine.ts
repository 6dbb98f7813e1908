import type { EngineFeature } from '../capabilities.js';
import { checkModelFile } from '../../gguf/model-file.js';
import { errorText } from '../messages.js';
import { RunReporter } from '../run-reporter.js';
import type {
  InitParam,
  ChatTemplate,
  Engine,
  EngineStatus,
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
import { toKvPositions, toNativeCrossAttn } from './marshal.js';
import { fault } from '../../errors.js';
import { Instance, checkMemory, combinedStatus, judge, pick, replacing, resultOf, startAll } from './instance.js';
import type { Call, KvCacheSizes, ResultMessage, RunEnd } from './protocol.js';
import { WorkerExitError, describeExit } from '../worker-process.js';
import { RKLLM, invoke, refused, request, type RuntimeProcess } from './runtime-process.js';
import { DEFAULT_TIMEOUTS, RuntimeSupervisor, type Model, type RkllmEngineOptions, type RkllmTimeouts } from './supervisor.js';
import { Vision, planVision, visionRun, type VisionPlan } from './vision.js';

export type { RestartPolicy, RkllmEngineOptions, RkllmTimeouts } from './supervisor.js';

/** A run from the moment it is asked for until it has ended. */
interface Ticket {
  reporter: RunReporter;
  aborted: boolean;
  runtime?: RuntimeProcess;
  abortTimer?: NodeJS.Timeout;
  /** The time its images took to encode, added to each result's perf. */
  imageMs?: number;
}

/** The runtime has every RKLLM feature (whether a model uses one is the runtime's call), images with a vision encoder, and none of the server's extensions. */
export function rkllmSupports(feature: EngineFeature, images: boolean): boolean {
  return feature === 'images' ? images : !['json_schema', 'run_tools', 'run_template', 'seed'].includes(feature);
}

/**
 * The engine on Rockchip's RKLLM runtime (librkllmrt.so) through koffi. Each instance of the
 * model (a slot; `instances`, engine.parallel) lives in a worker process of its own that owns its
 * handle (runtime-process.ts, worker.ts): a segfault or abort in it ends that process only. The
 * engine then ends the runs that instance was serving with an error, and its supervisor
 * (supervisor.ts) restarts that worker, reloads the model and replays its configuration, while the
 * other instances keep generating; `status()` shows where each is. One handle runs one generation
 * at a time: a run takes a free instance (instance.ts), and a kept conversation stays on the
 * instance that holds it.
 */
export class RkllmEngine implements Engine {
  readonly name = RKLLM;
  readonly slots: number;
  readonly #options: RkllmEngineOptions;
  readonly #timeouts: RkllmTimeouts;
  readonly #instances: Instance[];
  /** Runs asked for and not yet ended. */
  readonly #tickets = new Set<Ticket>();
  #nextRun = 1;
  readonly #running = new Map<number, Ticket>();
  #disposed: Promise<void> | undefined;
  #vision: Vision | undefined;

  private constructor(options: RkllmEngineOptions, instances: number, tags?: VisionPlan['tags']) {
    this.#options = options;
    this.slots = instances;
    this.#timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    const onResult = (message: ResultMessage): void => this.#onResult(message);
    this.#instances = Array.from({ length: instances }, (_, i) => new Instance(i, new RuntimeSupervisor(options, onResult, tags)));
  }

  /**
   * Starts a runtime worker per instance and loads the model in each (`rkllm_init`), one after the
   * other (each load peaks in memory), then the model's vision encoder if it has one (vision.ts):
   * an engine that holds them until disposed.
   */
  static async load(options: RkllmEngineOptions, param: InitParam): Promise<RkllmEngine> {
    const instances = options.instances ?? 1;
    if (!Number.isInteger(instances) || instances < 1 || instances > 256) {
      throw fault('INVALID_PARAMS', 'detail', { detail: `engine.parallel must be an integer from 1 to 256 (got ${instances})` });
    }
    checkModelFile(param.model_path, RKLLM, false);
    if (instances > 1) checkMemory(param, instances); // one: the CLI's preflight checks it at start
    const vision = planVision(param.model_path, options.vision);
    const engine = new RkllmEngine(options, instances, vision?.tags);
    await startAll(engine.#instances, param);
    try {
      if (vision) engine.#vision = await Vision.open(engine, vision, param.model_path, options.log);
    } catch (err) {
      await engine.dispose();
      throw err;
    }
    return engine;
  }

  /** What the library's `rkllm_createDefaultParam()` returns, from a worker started to ask. */
  static defaultParam(options: RkllmEngineOptions): Promise<RKLLMParam> {
    return new RuntimeSupervisor(options, () => {}).libraryDefaults();
  }

  /** The status of an engine of `options` without a model (or loading one). */
  static idleStatus(options: RkllmEngineOptions, state: 'unloaded' | 'loading'): EngineStatus {
    return { ...new RuntimeSupervisor(options, () => {}).status(), state };
  }

  get param(): RKLLMParam {
    return this.#model().param;
  }

  supports(feature: EngineFeature): boolean {
    return rkllmSupports(feature, this.#vision !== undefined);
  }

  /** What the library's `rkllm_createDefaultParam()` returned to the loaded model's worker. */
  async defaultParam(): Promise<RKLLMParam> {
    return this.#model().defaults;
  }

  async validate(request: RunRequest): Promise<void> {
    await visionRun(this.#vision, request, this.#model());
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
    const replay = this.#instances[0]!.supervisor.model?.replay ?? [];
    return replay.flatMap((call) => (call.fn === 'rkllm_load_lora' ? [call.adapter.lora_adapter_name] : []));
  }

  async loadPromptCache(path: string): Promise<void> {
    await this.#configure({ fn: 'rkllm_load_prompt_cache', path }, replacing);
  }

  async releasePromptCache(): Promise<void> {
    await this.#configure({ fn: 'rkllm_release_prompt_cache' }, (replay) => replay.filter((c) => c.fn !== 'rkllm_load_prompt_cache'));
  }

  /** Clears every instance; with positions, one per batch slot of each instance in turn (instance i's from i * n_batch). */
  async clearKvCache(request: KvCacheClear): Promise<void> {
    const nBatch = this.#nBatch();
    const positions = toKvPositions(request.start_pos, request.end_pos, nBatch, this.slots);
    const given = request.start_pos?.length ?? 0;
    const targets = this.#instances.filter((i) => positions === null || i.index * nBatch < given);
    for (const instance of targets) {
      const range = (p: Int32Array): Int32Array => p.slice(instance.index * nBatch, (instance.index + 1) * nBatch);
      const call: Call = {
        fn: 'rkllm_clear_kv_cache',
        keep_system_prompt: request.keep_system_prompt ? 1 : 0,
        start_pos: positions ? range(positions[0]) : null,
        end_pos: positions ? range(positions[1]) : null,
      };
      await invoke(await instance.supervisor.ready(), call, this.#timeouts.callMs);
    }
  }

  /** The tokens each batch slot of each instance holds; with `owner`, 0 on the instances that hold another's conversation. */
  async getKvCacheSize(owner?: string): Promise<KvCacheSize> {
    const nBatch = this.#nBatch();
    const sizes = await Promise.all(
      this.#instances.map(async (instance) => {
        const runtime = await instance.supervisor.ready();
        const { value, log } = await request<KvCacheSizes>(runtime, { op: 'kv_cache_size', n_batch: nBatch }, this.#timeouts.callMs);
        if (value.code !== 0) throw refused('rkllm_get_kv_cache_size', value.code, log);
        const visible = owner === undefined || owner === instance.held;
        return visible ? value.sizes : value.sizes.map(() => 0);
      }),
    );
    return { cache_sizes: sizes.flat() };
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

  /** Aborts every run and waits for them to end, then destroys each handle (the runtime must not free what a run still uses) and stops the workers. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= Promise.all(
      this.#instances.map((instance) =>
        instance.supervisor.stop(async () => {
          this.abort();
          await instance.idle();
        }),
      ),
    ).then(() => this.#vision?.close());
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  status(): EngineStatus {
    return combinedStatus(this.#instances.map((i) => i.supervisor.status()));
  }

  #model(): Model {
    const model = this.#instances[0]!.supervisor.model;
    if (!model) throw this.#instances[0]!.supervisor.unavailable();
    return model;
  }

  #nBatch(): number {
    return Math.max(1, this.param.extend_param.n_batch);
  }

  /**
   * Makes a call that configures the handles on every instance, when none runs (each takes its
   * turn), and records it for replay after a restart. When an instance refuses it, those that
   * took it are restarted with their recorded configuration, so none is left half-set.
   */
  async #configure(call: Call, record: (replay: Call[], call: Call) => Call[]): Promise<void> {
    const releases = await Promise.all(this.#instances.map((i) => i.take()));
    const done: Instance[] = [];
    try {
      for (const instance of this.#instances) {
        await invoke(await instance.supervisor.ready(), call, this.#timeouts.callMs);
        done.push(instance);
      }
    } catch (err) {
      if (done.length > 0) {
        this.#options.log?.warn(
          { engine: RKLLM, fn: call.fn, err },
          `instance ${done.length} refused ${call.fn}; undoing it on the others`,
        );
        await Promise.all(done.map((i) => i.supervisor.relaunch().then(() => i.forget())));
      }
      throw err;
    } finally {
      for (const release of releases) release();
    }
    for (const { supervisor } of this.#instances) if (supervisor.model) supervisor.model.replay = record(supervisor.model.replay, call);
  }

  #onResult(message: ResultMessage): void {
    const entry = this.#running.get(message.run);
    const result = resultOf(message);
    if (entry?.imageMs !== undefined) result.perf = { ...result.perf, image_encode_ms: entry.imageMs };
    if (!entry?.reporter.deliver(result, message.state)) return;
    // The consumer asked to stop: the run's next callback returns 1 (pause) to the runtime.
    entry.runtime?.request({ op: 'stop', run: message.run }).catch(() => undefined);
  }

  async #schedule(request: RunRequest, callback: LLMResultCallback, nativeAsync: boolean): Promise<RunOutcome> {
    const ticket: Ticket = { reporter: new RunReporter(callback), aborted: request.signal?.aborted ?? false };
    this.#tickets.add(ticket);
    const onAbort = (): void => this.#abortTicket(ticket);
    request.signal?.addEventListener('abort', onAbort, { once: true });
    const owner = request.owner ?? '';
    const instance = pick(this.#instances, owner, request.infer.keep_history !== 0);
    instance.claimed = request.infer.keep_history ? owner : undefined;
    const release = await instance.take();
    try {
      return await this.#execute(ticket, instance, request, nativeAsync);
    } finally {
      clearTimeout(ticket.abortTimer);
      request.signal?.removeEventListener('abort', onAbort);
      this.#tickets.delete(ticket);
      release();
    }
  }

  async #execute(ticket: Ticket, instance: Instance, request: RunRequest, nativeAsync: boolean): Promise<RunOutcome> {
    const { reporter } = ticket;
    if (ticket.aborted) return reporter.end('abort');
    let runtime: RuntimeProcess;
    let model: Model;
    let plan: Awaited<ReturnType<typeof visionRun>>;
    try {
      runtime = await instance.supervisor.ready();
      model = instance.supervisor.model!;
      plan = await visionRun(this.#vision, request, model, true);
    } catch (err) {
      return reporter.fail(errorText(err));
    }
    if (ticket.aborted) return reporter.end('abort');
    const owner = request.owner ?? '';
    if (request.infer.keep_history && instance.held !== undefined && instance.held !== owner) {
      // A runtime keeps one history: another owner's conversation is cleared before this one continues its own.
      try {
        await invoke(runtime, { fn: 'rkllm_clear_kv_cache', keep_system_prompt: 1, start_pos: null, end_pos: null }, this.#timeouts.callMs);
      } catch (err) {
        return reporter.fail(errorText(err));
      }
    }
    instance.held = request.infer.keep_history ? owner : undefined;
    const { native, imageMs } = plan;
    const id = this.#nextRun++;
    ticket.runtime = runtime;
    if (imageMs !== undefined) ticket.imageMs = imageMs;
    this.#running.set(id, ticket);
    try {
      const { input, infer, limit } = native;
      const { value: end, log } = await runtime.request<RunEnd>({ op: 'run', run: id, async: nativeAsync, input, infer, limit });
      instance.supervisor.succeeded();
      const verdict = judge(end, {
        stopped: ticket.aborted || reporter.stopRequested,
        maxNewTokens: native.maxNewTokens,
        maxContextLen: model.param.max_context_len,
        log,
      });
      return reporter.end(
        verdict.reason,
        imageMs !== undefined && end.perf ? { ...end.perf, image_encode_ms: imageMs } : end.perf,
        verdict.error,
      );
    } catch (err) {
      const crashed = err instanceof WorkerExitError;
      if (crashed) instance.forget();
      const which = this.slots > 1 ? ` (instance ${instance.index}; the others keep running)` : '';
      const why = crashed
        ? `${describeExit(err.exit)} during this run; the engine restarts it${which} and reloads the model`
        : `the RKLLM runtime failed during this run: ${errorText(err)}`;
      return reporter.fail(why);
    } finally {
      this.#running.delete(id);
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
