/** The shapes of the loaded set (loaded.ts): its options, a resident model, a lease and the view of what is loaded. */
import type { Logger } from 'pino';
import type { EngineKind } from '../engine/start.js';
import type { Engine } from '../engine/types.js';
import type { ServerError } from '../errors.js';
import type { RunTarget } from '../streams/hub.js';
import type { Scheduler } from '../streams/scheduler.js';
import type { ModelCatalog, ModelEntry } from './catalog.js';
import type { KeepAliveMs } from './keep-alive.js';

export interface LoadedModelsOptions {
  catalog: ModelCatalog;
  /** The engine of the settings: the default model loads through it. */
  kind: EngineKind;
  /** Builds an engine with `entry` loaded (its sidecar applied). */
  open(entry: ModelEntry): Promise<Engine>;
  /** A slot pool for a loaded model. */
  scheduler(): Scheduler;
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

/** A loaded model's engine and slot pool. */
export interface Loaded {
  engine: Engine;
  scheduler: Scheduler;
}

/** How a model loads, and what it takes. */
export interface LoadPlan {
  entry: ModelEntry | undefined;
  memory: number;
  load: () => Promise<Engine>;
}

/** A loaded (or loading) model. */
export interface Resident {
  readonly name: string;
  /** The default model (see loaded.ts). */
  readonly pinned: boolean;
  /** Settles once loaded. */
  readonly ready: Promise<Loaded>;
  /** Undefined while loading. */
  loaded: Loaded | undefined;
  /** Leases held: streams queued or running, requests in progress. */
  uses: number;
  lastUsed: number;
  keepAliveMs: KeepAliveMs;
  timer: NodeJS.Timeout | undefined;
  memory: number;
  entry: ModelEntry | undefined;
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

/** Waits for `promise`, refusing with `refusal()` past `deadline` (ms since the epoch; Infinity: none) or when `signal` aborts. */
export async function bounded<T>(promise: Promise<T>, deadline: number, signal: AbortSignal | undefined, refusal: () => ServerError): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        if (Number.isFinite(deadline)) timer = setTimeout(() => reject(refusal()), Math.max(0, deadline - Date.now()));
        onAbort = () => reject(refusal());
        signal?.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}
