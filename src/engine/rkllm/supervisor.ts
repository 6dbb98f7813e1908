import type { Logger } from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { fault, ServerError, type ERRORS } from '../../errors.js';
import { errorText } from '../messages.js';
import { overParam, type EngineState, type EngineStatus, type InitParam, type RKLLMParam } from '../types.js';
import type { LayoutVersion } from './abi.js';
import { toNativeParam } from './marshal.js';
import type { Call, LayoutSetting, Opened, ResultMessage } from './protocol.js';
import { describeExit, type WorkerExit } from '../worker-process.js';
import { RKLLM, RuntimeProcess, invoke, refused, request } from './runtime-process.js';
import type { VisionOptions } from './vision.js';

/** How the engine restarts a crashed runtime: exponential backoff from `initialDelayMs`, up to `maxDelayMs`. */
export interface RestartPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
  /** Failed restarts in a row before the engine gives up (state "failed"). */
  maxAttempts: number;
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
  /** Runtime instances of the model (engine.parallel), each a worker with its own handle and KV cache: the engine's slots. Default 1. */
  instances?: number;
  /** Images: the vision encoder of the model, if it has one (vision.ts). */
  vision?: VisionOptions;
}

/** The engine's options for one instance; `log` also receives the runtime's crashes and the restarts. */
interface SupervisorOptions extends Pick<RkllmEngineOptions, 'library' | 'layout' | 'log'> {
  restart: RestartPolicy;
  timeouts: RkllmTimeouts;
  /** Each callback of a run, from whichever worker serves it. */
  onResult(message: ResultMessage): void;
  /** The image tags of a vision encoder's family: 1.2 takes them in RKLLMParam (where not given), 1.3 per run. */
  imageTags?: Pick<RKLLMParam, 'img_start' | 'img_end' | 'img_content'>;
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

const DEFAULT_RESTART: RestartPolicy = { initialDelayMs: 250, maxDelayMs: 30_000, maxAttempts: 5 };
export const DEFAULT_TIMEOUTS: RkllmTimeouts = { initMs: 10 * 60_000, callMs: 60_000, abortMs: 10_000 };

/** The loaded model: what it was loaded with, and the calls that configure its handle. */
export interface Model {
  /** What rkllm_init was given: the fields the caller gave, laid over the library's defaults. */
  param: RKLLMParam;
  /** What the library's rkllm_createDefaultParam() returned. */
  defaults: RKLLMParam;
  layout: LayoutVersion;
  source: Opened['source'];
  /** The version the runtime printed while loading, if it did. */
  reported: string | null;
  /** Adapters, prompt cache, template, tools and cross-attention, replayed in order after a restart. */
  replay: Call[];
}

/** "rkllm-runtime version: 1.2.1", as the runtime prints it while loading. */
const VERSION_LINE = /rkllm-runtime version:?\s*v?(\d+)\.(\d+)(?:\.\d+)?/i;

/** The ENGINE_UNAVAILABLE message for each state the runtime cannot serve in. */
const UNAVAILABLE = {
  unloaded: 'unloaded',
  loading: 'loading',
  ready: 'not_running',
  restarting: 'restarting',
  failed: 'failed',
} as const satisfies Record<EngineState, keyof (typeof ERRORS)['ENGINE_UNAVAILABLE']['messages']>;

/**
 * Keeps one runtime worker serving the loaded model. A crash (a segfault or abort in the runtime
 * ends the worker only) makes it restart the worker with backoff, reload the model and replay its
 * configuration, until it runs again, {@link stop} cancels, or `maxAttempts` restarts in a row
 * fail (state "failed"). Its state is the engine's, from "unloaded" to "ready".
 */
export class RuntimeSupervisor {
  readonly #options: SupervisorOptions;
  #state: EngineState = 'unloaded';
  #model: Model | undefined;
  #runtime: RuntimeProcess | undefined;
  #recovery: Promise<void> | undefined;
  #recoveryAbort: AbortController | undefined;
  #nextRestartAt: number | undefined;
  /** Crashes and failed restarts since the last run that ended normally: the backoff exponent. */
  #failures = 0;
  #restarts = 0;
  #lastError: { message: string; at: string } | undefined;

  /** The supervisor of one instance of an engine of `options`. */
  constructor(options: RkllmEngineOptions, onResult: SupervisorOptions['onResult'], imageTags?: SupervisorOptions['imageTags']) {
    const restart = { ...DEFAULT_RESTART, ...options.restart };
    const timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.#options = { library: options.library, layout: options.layout, log: options.log, restart, timeouts, onResult, imageTags };
  }

  get state(): EngineState {
    return this.#state;
  }

  /** The loaded model, also while restarting or failed. */
  get model(): Model | undefined {
    return this.#model;
  }

  /** Starts a worker and loads the model (`rkllm_init`); called once. */
  async start(param: InitParam): Promise<void> {
    this.#state = 'loading';
    try {
      ({ runtime: this.#runtime, model: this.#model } = await this.#launch(param, []));
      this.#state = 'ready';
    } catch (err) {
      this.#state = 'unloaded';
      throw err;
    }
  }

  /** The running worker, after waiting out a restart. Throws ENGINE_UNAVAILABLE. */
  async ready(): Promise<RuntimeProcess> {
    if (this.#state === 'restarting') await this.#recovery;
    if (this.#state === 'ready' && this.#runtime) return this.#runtime;
    throw this.unavailable();
  }

  /** A run ended normally: the runtime is healthy again, and the backoff starts over. */
  succeeded(): void {
    this.#failures = 0;
  }

  unavailable(): ServerError {
    const reason = this.#lastError?.message ?? 'unknown error';
    return fault('ENGINE_UNAVAILABLE', UNAVAILABLE[this.#state], { reason }, { engine: RKLLM, state: this.#state });
  }

  /**
   * Frees the model (`rkllm_destroy`) and stops the worker. From its start a crash is not restarted;
   * `drain` ends the runs before the handle is destroyed (the runtime must not free what a run
   * still uses).
   */
  async stop(drain: () => Promise<void>): Promise<void> {
    this.#recoveryAbort?.abort();
    // From here on a crash is not restarted: `#onExit` only acts for the adopted runtime.
    const runtime = this.#runtime;
    this.#runtime = undefined;
    await drain();
    await this.#recovery;
    if (runtime) {
      await invoke(runtime, { fn: 'rkllm_destroy' }, this.#options.timeouts.callMs).catch((err: unknown) =>
        this.#options.log?.warn({ err }, 'rkllm_destroy failed'),
      );
      await runtime.close();
    }
    this.#recovery = undefined;
    this.#model = undefined;
    this.#state = 'unloaded';
  }

  /**
   * Restarts the worker and reloads the model with its recorded configuration, undoing the calls
   * made since (one that another instance refused). A failure is handled as a crash.
   */
  async relaunch(): Promise<void> {
    const runtime = this.#runtime;
    const model = this.#model;
    if (!runtime || !model || this.#state !== 'ready') return;
    this.#runtime = undefined;
    this.#state = 'restarting';
    runtime.kill();
    await runtime.close();
    try {
      ({ runtime: this.#runtime, model: this.#model } = await this.#launch(model.param, model.replay));
      this.#state = 'ready';
    } catch (err) {
      this.#lastError = { message: `reloading failed: ${errorText(err)}`, at: new Date().toISOString() };
      this.#failures++;
      this.#recovery = this.#recover();
    }
  }

  status(): EngineStatus {
    const model = this.#model;
    const restartIn =
      this.#state === 'restarting' && this.#nextRestartAt !== undefined ? Math.max(0, this.#nextRestartAt - Date.now()) : null;
    return {
      engine: RKLLM,
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

  #spawn(reported: { version: string | null }): RuntimeProcess {
    const log = this.#options.log;
    const runtime: RuntimeProcess = new RuntimeProcess({
      onResult: (message) => this.#options.onResult(message),
      onOutput: (line, stream) => {
        const version = VERSION_LINE.exec(line);
        if (version) reported.version = `${version[1]}.${version[2]}`;
        log?.[stream === 'stderr' ? 'warn' : 'info']({ engine: RKLLM, worker_pid: runtime.pid }, line);
      },
      onExit: (exit) => this.#onExit(runtime, exit),
    });
    return runtime;
  }

  /**
   * Starts a worker, loads the library and the model, and replays `replay`. Every failure is an
   * ServerError that says what went wrong; the worker is stopped.
   */
  async #launch(given: InitParam, replay: Call[]): Promise<{ runtime: RuntimeProcess; model: Model }> {
    const { library, timeouts } = this.#options;
    const reported: { version: string | null } = { version: null };
    const runtime = this.#spawn(reported);
    try {
      const opened = await this.#opened(runtime);
      const tags = opened.layout === '1.2' && !given.img_start && !given.img_end && !given.img_content ? this.#options.imageTags : {};
      const param = overParam(opened.defaults, { ...given, ...tags });
      const native = toNativeParam(param, opened.layout);
      const init = await request<number>(runtime, { op: 'init', param: native }, timeouts.initMs);
      if (init.value !== 0) throw refused('rkllm_init', init.value, init.log);
      if (reported.version !== null && reported.version !== opened.layout) {
        const vars = { library, version: reported.version, layout: opened.layout };
        throw fault('ENGINE_ERROR', 'layout_mismatch', vars, { engine: RKLLM, reason: 'layout_mismatch' });
      }
      for (const call of replay) await invoke(runtime, call, timeouts.callMs);
      return {
        runtime,
        model: { param, defaults: opened.defaults, layout: opened.layout, source: opened.source, reported: reported.version, replay },
      };
    } catch (err) {
      runtime.kill();
      await runtime.close();
      throw err instanceof ServerError ? err : fault('ENGINE_ERROR', 'detail', { detail: errorText(err) }, { engine: RKLLM });
    }
  }

  /** What the library's rkllm_createDefaultParam() returns, from a worker started for the question and stopped. */
  async libraryDefaults(): Promise<RKLLMParam> {
    const runtime = this.#spawn({ version: null });
    try {
      return (await this.#opened(runtime)).defaults;
    } finally {
      runtime.kill();
      await runtime.close();
    }
  }

  async #opened(runtime: RuntimeProcess): Promise<Opened> {
    const { library, layout } = this.#options;
    try {
      return (await runtime.request<Opened>({ op: 'open', library, layout }, this.#options.timeouts.callMs)).value;
    } catch (err) {
      const reason = errorText(err);
      throw fault('ENGINE_ERROR', 'runtime_start', { reason }, { engine: RKLLM, library, reason });
    }
  }

  #onExit(runtime: RuntimeProcess, exit: WorkerExit): void {
    if (runtime !== this.#runtime) return;
    this.#runtime = undefined;
    this.#lastError = { message: describeExit(exit), at: new Date().toISOString() };
    this.#failures++;
    this.#state = 'restarting';
    this.#options.log?.error(
      { engine: RKLLM, code: exit.code, signal: exit.signal, output: exit.lastLines },
      'the RKLLM runtime crashed; restarting it',
    );
    this.#recovery = this.#recover();
  }

  /** Restarts the runtime with backoff until it runs again, `stop` cancels, or too many attempts fail. */
  async #recover(): Promise<void> {
    const { restart, log } = this.#options;
    const model = this.#model!;
    const controller = new AbortController();
    this.#recoveryAbort = controller;
    for (let attempt = 1; attempt <= restart.maxAttempts; attempt++) {
      const delay = Math.min(restart.initialDelayMs * 2 ** (this.#failures - 1), restart.maxDelayMs);
      this.#nextRestartAt = Date.now() + delay;
      const waited = await sleep(delay, true, { signal: controller.signal }).catch(() => false);
      if (!waited) return;
      try {
        const launched = await this.#launch(model.param, model.replay);
        if (controller.signal.aborted) {
          await launched.runtime.close();
          return;
        }
        ({ runtime: this.#runtime, model: this.#model } = launched);
        this.#state = 'ready';
        this.#restarts++;
        log?.info({ engine: RKLLM, worker_pid: launched.runtime.pid, attempt }, 'the RKLLM runtime was restarted and the model reloaded');
        return;
      } catch (err) {
        this.#failures++;
        this.#lastError = { message: `restart ${attempt} failed: ${errorText(err)}`, at: new Date().toISOString() };
        log?.warn({ engine: RKLLM, attempt, err }, 'restarting the RKLLM runtime failed');
      }
    }
    this.#state = 'failed';
  }
}
