/**
 * The models loaded at a time, by name. A request names a model; `use` loads it when it is not
 * loaded (requests for a model that is loading wait for it, bounded), making room first by
 * unloading the least recently used idle model when `maxLoaded` or the memory budget is reached.
 * A model held by a lease (a queued or running stream, a face's request) is never unloaded. Once
 * idle, a model stays loaded for its keep_alive, then unloads.
 *
 * The default model (the one given at start, or by `rkllm_init`) lives in the server's own engine,
 * which `rkllm_init` and `rkllm_destroy` act on: unloading it to make room destroys its model and
 * the next request for it loads it again with the same parameters; it never expires by time
 * unless a request gives it a keep_alive.
 */
import type { Logger } from 'pino';
import type { Engine, RKLLMParam } from '../engine/types.js';
import { fault, ServerError } from '../errors.js';
import type { RunTarget } from '../streams/run-target.js';
import type { Scheduler } from '../streams/scheduler.js';
import { bareName, type ModelCatalog, type ModelEntry } from './catalog.js';
import { bounded } from './bounded.js';
import { expiresAt, FOREVER, type KeepAliveMs } from './keep-alive.js';

export interface LoadedModelsOptions {
  catalog: ModelCatalog;
  /** The server's engine: the default model. */
  defaultEngine: Engine;
  defaultScheduler: Scheduler;
  /** Builds an engine with `entry` loaded (its sidecar applied). */
  open(entry: ModelEntry): Promise<Engine>;
  /** A slot pool for a newly loaded engine. */
  scheduler(engine: Engine): Scheduler;
  /** Models loaded at once at most; 0: as many as `memoryBudget` holds. */
  maxLoaded: number;
  /** Bytes all loaded models may take, with maxLoaded 0. */
  memoryBudget: number;
  /** How long an idle model stays loaded unless a request says otherwise. */
  keepAliveMs: KeepAliveMs;
  /** Whether a caller that is not an admin may load a model (see `use`). */
  userLoads: boolean;
  /** How long a request waits for a model to load, or for room, in ms. */
  waitMs: number;
  /** Context and slots a model loads with, for its memory estimate. */
  contextSize: number;
  slots: number;
  log: Logger;
}

/** A loaded (or loading) model. */
interface Resident {
  name: string;
  engine: Engine;
  scheduler: Scheduler;
  state: 'loading' | 'ready';
  ready: Promise<void>;
  /** Leases held: streams queued or running, requests in progress. */
  uses: number;
  lastUsed: number;
  keepAliveMs: KeepAliveMs;
  /** When the idle model unloads (ms since the epoch); undefined while in use or kept for good. */
  expires: number | undefined;
  timer: NodeJS.Timeout | undefined;
  memory: number;
  entry: ModelEntry | undefined;
  isDefault: boolean;
}

/** A hold on a loaded model; `release` once done (idempotent). */
export interface ModelLease extends RunTarget {
  readonly name: string;
}

/** A loaded model as `/api/ps` and `models_loaded` show it. */
export interface LoadedView {
  name: string;
  path: string;
  state: 'loading' | 'ready';
  default: boolean;
  /** Leases held: queued or running streams, requests in progress. */
  in_use: number;
  /** Estimated bytes (model and context). */
  memory: number;
  /** ISO 8601; far ahead when kept for good; null while in use. */
  expires_at: string | null;
  entry: ModelEntry | undefined;
}

function hasModel(engine: Engine): boolean {
  try {
    return engine.param.model_path !== '';
  } catch {
    return false;
  }
}

export class LoadedModels implements AsyncDisposable {
  readonly #o: LoadedModelsOptions;
  readonly #residents = new Map<string, Resident>();
  readonly #default: Resident;
  /** The default model's parameters while it is unloaded to make room (undefined: it is loaded, or destroyed by rkllm_destroy). */
  #defaultParked: RKLLMParam | undefined;
  readonly #unloading = new Set<Promise<void>>();
  /** Woken whenever a lease is released or a model unloaded: a request waiting for room looks again. */
  #changed: Array<() => void> = [];
  #closed = false;
  /** The default model's entry and memory estimate are read: the budget counts it from then on. */
  readonly #described: Promise<void>;

  constructor(options: LoadedModelsOptions) {
    this.#o = options;
    const engine = options.defaultEngine;
    this.#default = {
      name: this.#defaultName(),
      engine,
      scheduler: options.defaultScheduler,
      state: 'ready',
      ready: Promise.resolve(),
      uses: 0,
      lastUsed: Date.now(),
      keepAliveMs: FOREVER,
      expires: undefined,
      timer: undefined,
      memory: 0,
      entry: undefined,
      isDefault: true,
    };
    this.#described = options.catalog
      .describe(engine.param.model_path)
      .then((entry) => {
        this.#default.entry = entry;
        this.#default.memory = entry.memory(engine.param.max_context_len, engine.slots);
      })
      .catch(() => {});
  }

  /** The default model's name (its file's, or the built-in's fixed name). */
  get defaultName(): string {
    return this.#defaultName();
  }

  get catalog(): ModelCatalog {
    return this.#o.catalog;
  }

  /** Every model requests may name: the catalog's, and the default model wherever its file lies. */
  async list(): Promise<ModelEntry[]> {
    const entries = await this.#o.catalog.list();
    const name = this.#defaultName();
    const path = this.#defaultParked?.model_path ?? (hasModel(this.#default.engine) ? this.#default.engine.param.model_path : undefined);
    if (path !== undefined && !entries.some((e) => e.name === name)) {
      const entry = await this.#o.catalog.describe(path).catch(() => undefined);
      if (entry) entries.unshift(entry);
    }
    return entries;
  }

  /** The model `name` names (Ollama's `:latest` accepted), or undefined. */
  async find(name: string): Promise<ModelEntry | undefined> {
    const bare = bareName(name);
    return (await this.list()).find((e) => e.name === bare);
  }

  /** Every slot pool of a loaded model (for the metrics, and to refuse new runs on shutdown). */
  get schedulers(): Scheduler[] {
    return this.#loaded().map((r) => r.scheduler);
  }

  /** Streams holding a slot, and waiting for one, over every loaded model's pool; `running`: whether any loaded engine generates now. */
  streams(): { active: number; queued: number; running: boolean } {
    const loaded = this.#loaded();
    return {
      active: loaded.reduce((n, r) => n + r.scheduler.active, 0),
      queued: loaded.reduce((n, r) => n + r.scheduler.queued, 0),
      running: loaded.some((r) => r.engine.isRunning()),
    };
  }

  /**
   * A lease on the model `name` (absent: the default), loading it first when needed. Throws
   * INVALID_PARAMS "model_not_found" for a name that is neither the default nor in the folder,
   * before anything loads; ENGINE_UNAVAILABLE when the load takes longer than the wait; BUSY when
   * no room is freed within it. `keepAliveMs` (a request's keep_alive) replaces the model's own.
   * A caller that is not an admin (`admin` false: a user key) gets FORBIDDEN where a load would be
   * needed, unless users may load; it is served the models already loaded, or loading.
   */
  async use(name: string | undefined, keepAliveMs?: KeepAliveMs, signal?: AbortSignal, admin = true): Promise<ModelLease> {
    if (this.#closed) throw fault('SHUTTING_DOWN', 'no_new_runs');
    const isDefault = name === undefined || this.#isDefault(name);
    const entry = isDefault ? undefined : await this.#o.catalog.find(name);
    if (!isDefault && !entry) {
      throw fault('INVALID_PARAMS', 'no_model', { model: name, builtin: 'rkllm-tiny' }, { path: 'model', reason: 'model_not_found' });
    }
    const deadline = Date.now() + this.#o.waitMs;
    const label = entry?.name ?? this.#defaultName();
    let waiting = false;
    for (;;) {
      signal?.throwIfAborted();
      // The default model without a model of its own (rkllm_destroy) is leased as it is: its engine refuses the run, as before.
      const parked = this.#defaultParked !== undefined && this.#default.state !== 'loading';
      const resident = entry ? this.#residents.get(entry.name) : parked ? undefined : this.#default;
      if (resident?.state === 'loading') {
        // A request waiting for a load holds the model already: once loaded, it cannot be chosen to make room before this request runs it.
        resident.uses++;
        try {
          await bounded(resident.ready, deadline, signal, () => fault('ENGINE_UNAVAILABLE', 'model_loading', { model: label, load_wait_ms: this.#o.waitMs }, { retry_after: 1 }));
        } catch (err) {
          this.#drop(resident);
          throw err;
        }
        return this.#lease(resident, keepAliveMs, true);
      }
      if (resident) return this.#lease(resident, keepAliveMs, false);
      if (this.#unloading.size > 0) {
        await Promise.all(this.#unloading);
        continue;
      }
      if (!admin && !this.#o.userLoads) throw fault('FORBIDDEN', 'model_load', { model: label }, { model: label });
      // Only a load weighs the budget, which counts the default model once its estimate is read (a lease on a loaded model does not wait for it).
      await this.#described;
      const memory = entry ? entry.memory(entry.sidecar.max_context_len ?? this.#o.contextSize, this.#o.slots) : this.#default.memory;
      if (this.#fits(memory)) {
        this.#startLoad(entry, memory);
        continue;
      }
      const victim = this.#leastRecentlyUsedIdle();
      if (victim) {
        this.#unload(victim, 'room');
        continue;
      }
      if (!waiting) this.#o.log.info({ model: label, loaded: this.#count() }, 'models: waiting for room');
      waiting = true;
      const waited = new Promise<void>((resolve) => this.#changed.push(resolve));
      await bounded(waited, deadline, signal, () =>
        fault('BUSY', 'models_busy', { model: label, loaded: this.#count() }, { retry_after: 1, active: this.#count(), queued: 0 }),
      );
    }
  }

  /** Whether a caller that is not an admin may load a model (setting models.user_loads), and so set its keep_alive. */
  get userLoads(): boolean {
    return this.#o.userLoads;
  }

  /** The context length runs of `name` (absent: the default) are checked against before they are admitted. */
  contextOf(name: string | undefined): number {
    const isDefault = name === undefined || this.#isDefault(name);
    if (isDefault && this.#defaultParked) return this.#defaultParked.max_context_len;
    const resident = isDefault ? this.#default : this.#residents.get(bareName(name));
    return resident?.state === 'ready' && hasModel(resident.engine) ? resident.engine.param.max_context_len : this.#o.contextSize;
  }

  /** Unloads `name` now when idle; when in use, as soon as it is idle (keep_alive 0). False when it is not loaded. */
  unload(name: string): boolean {
    const resident = this.#isDefault(name) ? (this.#defaultHeld() ? this.#default : undefined) : this.#residents.get(bareName(name));
    if (!resident) return false;
    resident.keepAliveMs = 0;
    if (resident.uses === 0 && resident.state === 'ready') this.#unload(resident, 'asked');
    return true;
  }

  /** What is loaded, most recently used first. */
  loaded(): LoadedView[] {
    const all = [...(this.#defaultHeld() ? [this.#default] : []), ...this.#residents.values()];
    return all
      .sort((a, b) => b.lastUsed - a.lastUsed)
      .map((r) => ({
        name: r.isDefault ? this.#defaultName() : r.name,
        path: r.entry?.path ?? (r.isDefault && hasModel(r.engine) ? r.engine.param.model_path : ''),
        state: r.state,
        default: r.isDefault,
        in_use: r.uses,
        memory: r.memory,
        expires_at: r.uses > 0 ? null : expiresAt(r.lastUsed, r.keepAliveMs),
        entry: r.entry,
      }));
  }

  /** Unloads every model but the default (the server disposes that engine); idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const r of this.#residents.values()) clearTimeout(r.timer);
    clearTimeout(this.#default.timer);
    const residents = [...this.#residents.values()];
    this.#residents.clear();
    await Promise.all([...this.#unloading, ...residents.map((r) => r.ready.catch(() => {}).then(() => r.engine.dispose()))]);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The default model and every model of the folder that has finished loading. */
  #loaded(): Resident[] {
    return [this.#default, ...[...this.#residents.values()].filter((r) => r.state === 'ready')];
  }

  #isDefault(name: string): boolean {
    const bare = bareName(name);
    return bare === this.#defaultName();
  }

  #defaultName(): string {
    const engine = this.#o.defaultEngine;
    const path = this.#defaultParked?.model_path ?? (hasModel(engine) ? engine.param.model_path : (this.#default?.entry?.path ?? ''));
    return path === '' ? (this.#default?.name ?? '') : this.#o.catalog.nameOf(path);
  }

  /** Whether the default model is loaded (or loading again): not parked to make room, nor destroyed by rkllm_destroy. */
  #defaultHeld(): boolean {
    return this.#default.state === 'loading' || (!this.#defaultParked && hasModel(this.#default.engine));
  }

  #count(): number {
    return this.#residents.size + (this.#defaultHeld() ? 1 : 0);
  }

  #fits(memory: number): boolean {
    const count = this.#count();
    if (count === 0) return true;
    if (this.#o.maxLoaded > 0) return count < this.#o.maxLoaded;
    const used = [...this.#residents.values(), ...(this.#defaultHeld() ? [this.#default] : [])].reduce((sum, r) => sum + r.memory, 0);
    return used + memory <= this.#o.memoryBudget;
  }

  #leastRecentlyUsedIdle(): Resident | undefined {
    const candidates = [...this.#residents.values(), ...(this.#defaultHeld() ? [this.#default] : [])];
    return candidates.filter((r) => r.uses === 0 && r.state === 'ready').sort((a, b) => a.lastUsed - b.lastUsed)[0];
  }

  #startLoad(entry: ModelEntry | undefined, memory: number): void {
    const started = performance.now();
    if (!entry) {
      const param = this.#defaultParked!;
      this.#default.state = 'loading';
      this.#default.ready = this.#o.defaultEngine.init(param).then(
        () => {
          this.#defaultParked = undefined;
          this.#default.state = 'ready';
          this.#o.log.info({ model: this.#defaultName(), ms: Math.round(performance.now() - started) }, 'models: default model loaded again');
        },
        (err: unknown) => {
          this.#default.state = 'ready';
          this.#wake();
          throw err;
        },
      );
      this.#default.ready.catch(() => {});
      return;
    }
    this.#o.log.info({ model: entry.name }, 'models: loading');
    const resident: Resident = {
      name: entry.name,
      engine: undefined as unknown as Engine,
      scheduler: undefined as unknown as Scheduler,
      state: 'loading',
      ready: Promise.resolve(),
      uses: 0,
      lastUsed: Date.now(),
      keepAliveMs: this.#o.keepAliveMs,
      expires: undefined,
      timer: undefined,
      memory,
      entry,
      isDefault: false,
    };
    resident.ready = this.#o.open(entry).then(
      (engine) => {
        if (this.#closed) {
          void engine.dispose();
          throw fault('SHUTTING_DOWN', 'no_new_runs');
        }
        resident.engine = engine;
        resident.scheduler = this.#o.scheduler(engine);
        resident.state = 'ready';
        this.#o.log.info({ model: entry.name, ms: Math.round(performance.now() - started) }, 'models: loaded');
      },
      (err: unknown) => {
        this.#residents.delete(entry.name);
        this.#o.log.warn({ err, model: entry.name }, 'models: loading failed');
        this.#wake();
        throw err instanceof ServerError ? err : fault('ENGINE_ERROR', 'detail', { detail: (err as Error).message });
      },
    );
    resident.ready.catch(() => {});
    this.#residents.set(entry.name, resident);
  }

  /** A lease on `resident`; `held`: the caller's hold (taken while it waited for the load) becomes the lease. */
  #lease(resident: Resident, keepAliveMs: KeepAliveMs | undefined, held: boolean): ModelLease {
    if (!held) resident.uses++;
    resident.lastUsed = Date.now();
    if (keepAliveMs !== undefined) resident.keepAliveMs = keepAliveMs;
    clearTimeout(resident.timer);
    resident.timer = undefined;
    resident.expires = undefined;
    let released = false;
    return {
      name: resident.isDefault ? this.#defaultName() : resident.name,
      isDefault: resident.isDefault,
      engine: resident.engine,
      scheduler: resident.scheduler,
      release: () => {
        if (released) return;
        released = true;
        resident.lastUsed = Date.now();
        this.#drop(resident);
      },
    };
  }

  /** One hold on `resident` ends: when it was the last on a loaded model, the model's keep_alive starts. */
  #drop(resident: Resident): void {
    resident.uses--;
    if (resident.uses === 0 && resident.state === 'ready') this.#idle(resident);
    this.#wake();
  }

  /** The model has no lease left: it unloads after its keep_alive. */
  #idle(resident: Resident): void {
    if (this.#closed || resident.keepAliveMs === FOREVER) return;
    if (resident.keepAliveMs <= 0) {
      this.#unload(resident, 'keep_alive');
      return;
    }
    resident.expires = Date.now() + resident.keepAliveMs;
    resident.timer = setTimeout(() => {
      if (resident.uses === 0) this.#unload(resident, 'keep_alive');
    }, resident.keepAliveMs);
    resident.timer.unref();
  }

  /** Unloads an idle model: it leaves the set at once; the memory is free once the returned work ends. */
  #unload(resident: Resident, why: string): void {
    clearTimeout(resident.timer);
    resident.timer = undefined;
    let work: Promise<void>;
    if (resident.isDefault) {
      if (!hasModel(resident.engine)) return;
      this.#defaultParked = resident.engine.param;
      work = resident.engine.destroy();
    } else {
      if (this.#residents.get(resident.name) !== resident) return;
      this.#residents.delete(resident.name);
      work = resident.engine.dispose();
    }
    const name = resident.isDefault ? this.#defaultName() : resident.name;
    const done = work
      .catch((err: unknown) => this.#o.log.error({ err, model: name }, 'models: unloading failed'))
      .finally(() => {
        this.#unloading.delete(done);
        this.#o.log.info({ model: name, why }, 'models: unloaded');
        this.#wake();
      });
    this.#unloading.add(done);
  }

  #wake(): void {
    const waiters = this.#changed;
    this.#changed = [];
    for (const wake of waiters) wake();
  }
}
