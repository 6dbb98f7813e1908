import type { ServerError } from '../errors.js';
import type { LLMResultCallback, RunOutcome, RunRequest } from '../engine/types.js';

/** A run the hub hands to a queue shared by several instances (a fleet on Redis). */
export interface SharedRunRequest {
  streamId: string;
  params: Omit<RunRequest, 'signal'>;
  /** Whose line it waits in (the owner's `queueKey`). */
  client: string;
  /**
   * Set when the receiver lacks the LoRA adapter the run names: the run is admitted only if a live
   * instance serving the same model has it, and refused with this otherwise, or when the shared
   * queue is unreachable (the receiver cannot serve it itself).
   */
  refusal?: ServerError;
}

/** A run admitted into the shared queue: it executes on whichever instance claims it. */
export interface SharedRun {
  /**
   * Waits until the run has executed wherever it was claimed, passing its results to `callback`
   * as the engine would, and `running()` once an instance has started it. Aborting
   * `request.signal` takes it out of the queue, or stops it where it runs. Never rejects: failures
   * end it with `finish_reason: "error"`.
   */
  run(request: RunRequest, callback: LLMResultCallback, running: () => void): Promise<RunOutcome>;
  /** Takes the run out of the queue if `run` was never called (its stream could not open). */
  cancel(): void;
}

/**
 * The queue a fleet shares. The hub puts each run there, after its own checks; when the queue
 * cannot be reached it runs the run itself, through its own scheduler.
 */
export interface SharedRuns {
  /**
   * Admits a run: resolves with it once queued, or undefined when the shared queue is unreachable
   * (the caller serves it locally). Throws the refusal when a fleet-wide limit is reached, or once
   * closed.
   */
  enqueue(request: SharedRunRequest): Promise<SharedRun | undefined>;
}
