import type { Engine, EngineState } from './engine/types.js';

/** What `GET /health` answers: 200 with status "ready", or 503 with the status and the reason. */
export interface HealthReport {
  ok: boolean;
  status: EngineState | 'shutting_down';
  /** Why the server cannot serve runs now (absent when ready). Never names files or internal errors. */
  reason?: string;
  /** Ready, but serving in a lesser mode: a fleet instance that cannot reach Redis serves its own queue (`reason` says so). */
  degraded?: boolean;
}

const REASONS = {
  loading: 'the model is loading',
  unloaded: 'no model is loaded (rkllm_destroy); load one with rkllm_init',
  restarting: 'the engine runtime stopped and is restarting',
  failed: 'the engine failed: its runtime could not be restarted',
  shutting_down: 'the server is shutting down',
} as const;

/**
 * The server's health, for load balancers and supervisors: loading until the engine is up, then the
 * engine's own state (a runtime can crash, restart or fail for good), and shutting down once a
 * drain has begun.
 */
export class Health {
  #engine: Engine | undefined;
  #draining = false;
  #degraded: () => string | undefined = () => undefined;

  /** The model is loaded: from now on the engine's state decides. */
  serving(engine: Engine): void {
    this.#engine = engine;
  }

  /** Reports why the server serves in a lesser mode, when it does (a fleet without Redis). */
  degradedWhen(reason: () => string | undefined): void {
    this.#degraded = reason;
  }

  /** A graceful shutdown has begun: tell load balancers to send no more work. */
  draining(): void {
    this.#draining = true;
  }

  report(): HealthReport {
    if (this.#draining) return { ok: false, status: 'shutting_down', reason: REASONS.shutting_down };
    if (!this.#engine) return { ok: false, status: 'loading', reason: REASONS.loading };
    const { state } = this.#engine.status();
    if (state !== 'ready') return { ok: false, status: state, reason: REASONS[state] };
    const degraded = this.#degraded();
    return degraded === undefined ? { ok: true, status: 'ready' } : { ok: true, status: 'ready', degraded: true, reason: degraded };
  }
}
