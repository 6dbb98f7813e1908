/**
 * The models loaded at a time, by name. A request names a model; `use` loads it when it is not
 * loaded (requests for a model that is loading wait for it, bounded), making room first by
 * unloading the least recently used idle model when `maxLoaded` or the memory budget is reached.
 * A model held by a lease (a queued or running stream, a face's request) is never unloaded. Once
 * idle, a model stays loaded for its keep_alive, then unloads.
 *
 * The default model (the one given at start, or by `rkllm_init`) is a resident like the others,
 * pinned: it never expires by time unless a request gives it a keep_alive, its slot pool outlives
 * its loads (a fleet executor takes slots in it), and unloading it to make room keeps its
 * parameters, so the next request for it loads it again. `loadDefault` (`rkllm_init`) and
 * `unloadDefault` (`rkllm_destroy`) load and unload it through the same code as a request.
 */
import type { Engine, InitParam } from '../engine/types.js';
import { fault, ServerError } from '../errors.js';
import type { Scheduler } from '../streams/scheduler.js';
import { bareName, type ModelEntry } from './catalog.js';
import { expiresAt, FOREVER, type KeepAliveMs } from './keep-alive.js';
import { bounded, type Loaded, type LoadedModelsOptions, type LoadedView, type LoadPlan, type ModelLease, type Resident } from './resident.js';

export type { LoadedModelsOptions, LoadedView, ModelLease } from './resident.js';

export class LoadedModels implements AsyncDisposable {
  readonly #o: LoadedModelsOptions;
  readonly #residents = new Map<string, Resident>();
  /** The default model's slot pool, kept across its loads. */
  readonly defaultScheduler: Scheduler;
  /** The default model's name, kept after rkllm_destroy. */
  #defaultName = '';
  /** What the default model loads with (once loaded, its engine's parameters); undefined after rkllm_destroy. */
  #defaultParam: InitParam | undefined;
  /** The default model's next load is its first with `#defaultParam` (at start, or rkllm_init), not a load again after making room. */
  #defaultFirst = false;
  readonly #unloading = new Set<Promise<void>>();
  /** Woken whenever a lease is released or a model unloaded: a request waiting for room looks again. */
  #changed: Array<() => void> = [];
  /** Told when a model starts loading, has loaded, failed to load or has unloaded (MCP's rkllm://model subscribers). */
  readonly #watchers = new Set<() => void>();
  #closed = false;

  constructor(options: LoadedModelsOptions) {
    this.#o = options;
    this.defaultScheduler = options.scheduler();
  }

  /** Calls `listener` whenever a model starts loading, has loaded, failed to load or has unloaded; returns the stop. */
  watch(listener: () => void): () => void {
    this.#watchers.add(listener);
    return () => void this.#watchers.delete(listener);
  }

  /** The default model's name (its file's, or the built-in's fixed name). */
  get defaultName(): string {
    return this.#defaultName;
  }

  /** The default model's engine, or why there is none now. */
  get defaultEngine(): Engine | 'loading' | 'unloaded' {
    const pinned = this.#pinned();
    return pinned ? (pinned.loaded?.engine ?? 'loading') : 'unloaded';
  }

  /** Every model requests may name: the catalog's, and the default model wherever its file lies. */
  async list(): Promise<ModelEntry[]> {
    const entries = await this.#o.catalog.list();
    const path = this.#defaultParam?.model_path;
    if (path !== undefined && !entries.some((e) => e.name === this.#defaultName)) {
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
    return [this.defaultScheduler, ...this.#loaded().flatMap((l) => (l.scheduler === this.defaultScheduler ? [] : [l.scheduler]))];
  }

  /** Streams holding a slot, and waiting for one, over every loaded model's pool; `running`: whether any loaded engine generates now. */
  streams(): { active: number; queued: number; running: boolean } {
    const schedulers = this.schedulers;
    return {
      active: schedulers.reduce((n, s) => n + s.active, 0),
      queued: schedulers.reduce((n, s) => n + s.queued, 0),
      running: this.#loaded().some((l) => l.engine.isRunning()),
    };
  }

  /**
   * A lease on the model `name` (absent: the default), loading it first when needed. Throws
   * INVALID_PARAMS "model_not_found" for a name that is neither the default nor in the folder,
   * before anything loads; ENGINE_UNAVAILABLE when the load takes longer than the wait, or after
   * rkllm_destroy for the default; BUSY when no room is freed within it. `keepAliveMs` (a
   * request's keep_alive) replaces the model's own. A caller that is not an admin (`admin` false:
   * a user key) gets FORBIDDEN where a load would be needed, unless users may load; it is served
   * the models already loaded, or loading.
   */
  use(name: string | undefined, keepAliveMs?: KeepAliveMs, signal?: AbortSignal, admin = true): Promise<ModelLease> {
    return this.#use(name, keepAliveMs, signal, admin, false);
  }

  /**
   * `rkllm_init`: loads `param` as the default model, as a request would (making room first),
   * waiting as long as the load takes. MODEL_LOADED while a default model is loaded or loading.
   */
  async loadDefault(param: InitParam): Promise<Engine> {
    const held = this.#pinned() ?? this.#residents.get(this.#o.catalog.nameOf(param.model_path));
    if (held) {
      const state = held.loaded ? `loaded (${held.loaded.engine.param.model_path})` : 'loading';
      throw fault('MODEL_LOADED', 'loaded', { state }, { engine: this.#o.kind.name });
    }
    const before = { name: this.#defaultName, param: this.#defaultParam };
    this.#defaultName = this.#o.catalog.nameOf(param.model_path);
    this.#defaultParam = param;
    this.#defaultFirst = true;
    try {
      const lease = await this.#use(undefined, undefined, undefined, true, true);
      lease.release();
      return lease.engine;
    } catch (err) {
      if (!this.#pinned()) ({ name: this.#defaultName, param: this.#defaultParam } = before);
      throw err;
    }
  }

  /** `rkllm_destroy`: unloads the default model now, in use or loading (the caller ends its streams), and forgets it until `loadDefault`. */
  async unloadDefault(): Promise<void> {
    this.#defaultParam = undefined;
    const pinned = this.#pinned();
    if (pinned) await this.#unload(pinned, 'rkllm_destroy');
  }

  /** Whether a caller that is not an admin may load a model (setting models.user_loads), and so set its keep_alive. */
  get userLoads(): boolean {
    return this.#o.userLoads;
  }

  /** The context length runs of `name` (absent: the default) are checked against before they are admitted. */
  contextOf(name: string | undefined): number {
    const pinned = name === undefined || this.#isDefault(name);
    const resident = this.#residents.get(name === undefined ? this.#defaultName : bareName(name));
    const context = resident?.loaded?.engine.param.max_context_len ?? (pinned ? this.#defaultParam?.max_context_len : undefined);
    return context ?? this.#o.contextSize;
  }

  /** Unloads `name` now when idle; when in use, as soon as it is idle (keep_alive 0). False when it is not loaded. */
  unload(name: string): boolean {
    const resident = this.#residents.get(bareName(name));
    if (!resident) return false;
    resident.keepAliveMs = 0;
    if (resident.uses === 0 && resident.loaded) void this.#unload(resident, 'asked');
    return true;
  }

  /** What is loaded, most recently used first. */
  loaded(): LoadedView[] {
    return [...this.#residents.values()]
      .sort((a, b) => b.lastUsed - a.lastUsed)
      .map((r) => ({
        name: r.name,
        path: r.entry?.path ?? (r.pinned ? (this.#defaultParam?.model_path ?? '') : ''),
        state: r.loaded ? 'ready' : 'loading',
        default: r.pinned,
        in_use: r.uses,
        memory: r.memory,
        expires_at: r.uses > 0 ? null : expiresAt(r.lastUsed, r.keepAliveMs),
        entry: r.entry,
      }));
  }

  /** Unloads every model; idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#residents.values()].map((r) => this.#unload(r, 'close')));
    await Promise.all(this.#unloading);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #use(name: string | undefined, keepAliveMs: KeepAliveMs | undefined, signal: AbortSignal | undefined, admin: boolean, patient: boolean): Promise<ModelLease> {
    if (this.#closed) throw fault('SHUTTING_DOWN', 'no_new_runs');
    const pinned = name === undefined || this.#isDefault(name);
    const entry = pinned ? undefined : await this.#o.catalog.find(name);
    if (!pinned && !entry) {
      throw fault('INVALID_PARAMS', 'no_model', { model: name, builtin: 'rkllm-tiny' }, { path: 'model', reason: 'model_not_found' });
    }
    const deadline = Date.now() + this.#o.waitMs;
    let waiting = false;
    for (;;) {
      signal?.throwIfAborted();
      const label = entry?.name ?? this.#defaultName;
      const resident = this.#residents.get(label);
      if (resident?.loaded) return this.#lease(resident, resident.loaded, keepAliveMs, false);
      if (resident) {
        // A request waiting for a load holds the model already: once loaded, it cannot be chosen to make room before this request runs it.
        resident.uses++;
        try {
          const refusal = () => fault('ENGINE_UNAVAILABLE', 'model_loading', { model: label, load_wait_ms: this.#o.waitMs }, { retry_after: 1 });
          const loaded = await bounded(resident.ready, patient ? Infinity : deadline, signal, refusal);
          return this.#lease(resident, loaded, keepAliveMs, true);
        } catch (err) {
          this.#drop(resident);
          throw err;
        }
      }
      const plan = await this.#plan(entry);
      if (this.#unloading.size > 0) {
        await Promise.all(this.#unloading);
        continue;
      }
      if (!admin && !this.#o.userLoads) throw fault('FORBIDDEN', 'model_load', { model: label }, { model: label });
      if (this.#fits(plan.memory)) {
        this.#startLoad(label, plan);
        continue;
      }
      const victim = this.#leastRecentlyUsedIdle();
      if (victim) {
        void this.#unload(victim, 'room');
        continue;
      }
      if (!waiting) this.#o.log.info({ model: label, loaded: this.#residents.size }, 'models: waiting for room');
      waiting = true;
      const waited = new Promise<void>((resolve) => this.#changed.push(resolve));
      await bounded(waited, deadline, signal, () =>
        fault('BUSY', 'models_busy', { model: label, loaded: this.#residents.size }, { retry_after: 1, active: this.#residents.size, queued: 0 }),
      );
    }
  }

  /** How `entry` (absent: the default model) loads, and its memory estimate; ENGINE_UNAVAILABLE for the default after rkllm_destroy. */
  async #plan(entry: ModelEntry | undefined): Promise<LoadPlan> {
    const { contextSize, slots } = this.#o;
    if (entry) return { entry, memory: entry.memory(entry.sidecar.max_context_len ?? contextSize, slots), load: () => this.#o.open(entry) };
    const param = this.#defaultParam;
    if (!param) throw fault('ENGINE_UNAVAILABLE', 'unloaded', {}, { engine: this.#o.kind.name });
    const described = await this.#o.catalog.describe(param.model_path).catch(() => undefined);
    return { entry: described, memory: described?.memory(param.max_context_len ?? contextSize, slots) ?? 0, load: () => this.#o.kind.load(param) };
  }

  /** The default model's resident, when it is loaded or loading. */
  #pinned(): Resident | undefined {
    const resident = this.#residents.get(this.#defaultName);
    return resident?.pinned ? resident : undefined;
  }

  #loaded(): Loaded[] {
    return [...this.#residents.values()].flatMap((r) => (r.loaded ? [r.loaded] : []));
  }

  #isDefault(name: string): boolean {
    return bareName(name) === this.#defaultName;
  }

  #fits(memory: number): boolean {
    const count = this.#residents.size;
    if (count === 0) return true;
    if (this.#o.maxLoaded > 0) return count < this.#o.maxLoaded;
    const used = [...this.#residents.values()].reduce((sum, r) => sum + r.memory, 0);
    return used + memory <= this.#o.memoryBudget;
  }

  #leastRecentlyUsedIdle(): Resident | undefined {
    const idle = [...this.#residents.values()].filter((r) => r.uses === 0 && r.loaded);
    return idle.sort((a, b) => a.lastUsed - b.lastUsed)[0];
  }

  #startLoad(name: string, { entry, memory, load }: LoadPlan): void {
    const started = performance.now();
    const pinned = name === this.#defaultName;
    const again = pinned && !this.#defaultFirst;
    if (pinned) this.#defaultFirst = false;
    else this.#o.log.info({ model: name }, 'models: loading');
    const ready = load().then(
      (engine) => {
        const loaded = { engine, scheduler: pinned ? this.defaultScheduler : this.#o.scheduler() };
        resident.loaded = loaded;
        if (pinned && this.#residents.get(name) === resident) this.#defaultParam = engine.param;
        if (pinned && entry) resident.memory = entry.memory(engine.param.max_context_len, engine.slots);
        const ms = Math.round(performance.now() - started);
        if (!pinned || again) this.#o.log.info({ model: name, ms }, again ? 'models: default model loaded again' : 'models: loaded');
        if (this.#closed) throw fault('SHUTTING_DOWN', 'no_new_runs');
        this.#told();
        return loaded;
      },
      (err: unknown) => {
        if (this.#residents.get(name) === resident) this.#residents.delete(name);
        this.#o.log.warn({ err, model: name }, 'models: loading failed');
        this.#wake();
        this.#told();
        throw err instanceof ServerError ? err : fault('ENGINE_ERROR', 'detail', { detail: (err as Error).message });
      },
    );
    ready.catch(() => {});
    const keepAliveMs = pinned ? FOREVER : this.#o.keepAliveMs;
    const resident: Resident = { name, pinned, ready, loaded: undefined, uses: 0, lastUsed: Date.now(), keepAliveMs, timer: undefined, memory, entry };
    this.#residents.set(name, resident);
    this.#told();
  }

  /** A lease on `resident`; `held`: the caller's hold (taken while it waited for the load) becomes the lease. */
  #lease(resident: Resident, loaded: Loaded, keepAliveMs: KeepAliveMs | undefined, held: boolean): ModelLease {
    if (!held) resident.uses++;
    resident.lastUsed = Date.now();
    if (keepAliveMs !== undefined) resident.keepAliveMs = keepAliveMs;
    clearTimeout(resident.timer);
    resident.timer = undefined;
    let released = false;
    return {
      name: resident.name,
      shared: resident.pinned,
      ...loaded,
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
    if (resident.uses === 0 && resident.loaded) this.#idle(resident);
    this.#wake();
  }

  /** The model has no lease left: it unloads after its keep_alive. */
  #idle(resident: Resident): void {
    if (this.#closed || resident.keepAliveMs === FOREVER) return;
    if (resident.keepAliveMs <= 0) {
      void this.#unload(resident, 'keep_alive');
      return;
    }
    resident.timer = setTimeout(() => {
      if (resident.uses === 0) void this.#unload(resident, 'keep_alive');
    }, resident.keepAliveMs);
    resident.timer.unref();
  }

  /** Unloads a model: it leaves the set at once; the memory is free once the returned work ends (after its load, if it loads). */
  #unload(resident: Resident, why: string): Promise<void> {
    clearTimeout(resident.timer);
    resident.timer = undefined;
    if (this.#residents.get(resident.name) !== resident) return Promise.resolve();
    this.#residents.delete(resident.name);
    const { name } = resident;
    const done: Promise<void> = resident.ready
      .catch(() => undefined)
      .then(() => resident.loaded?.engine.dispose())
      .catch((err: unknown) => this.#o.log.error({ err, model: name }, 'models: unloading failed'))
      .finally(() => {
        this.#unloading.delete(done);
        if (why !== 'close') this.#o.log.info({ model: name, why }, 'models: unloaded');
        this.#wake();
        this.#told();
      });
    this.#unloading.add(done);
    return done;
  }

  #told(): void {
    for (const listener of this.#watchers) listener();
  }

  #wake(): void {
    const waiters = this.#changed;
    this.#changed = [];
    for (const wake of waiters) wake();
  }
}
