import type { Logger } from 'pino';
import type { Engine, LLMResultCallback, RunOutcome, RunRequest } from '../../engine/types.js';
import type { ServerError } from '../../errors.js';
import type { BufferLimits } from '../buffer-store.js';
import type { BlockingReads } from '../redis/blocking-reads.js';
import type { RedisLink } from '../redis/link.js';
import type { Scheduler } from '../scheduler.js';
import type { Stream } from '../stream.js';
import type { Capability, ServedModel } from './needs.js';

/**
 * How the hub reaches the rest of its fleet (the instances that share its Redis): the one interface
 * between them. A server on the in-memory store has no fleet.
 */
export interface Fleet {
  /**
   * Takes the lease of a buffered stream generated here: it is renewed until the stream has ended
   * in the store, and the stream is aborted when a peer asks for it or its buffer is dropped.
   */
  own(stream: Stream): void;
  /**
   * Asks whichever instance generates `streamId` to abort it. Resolves true when the request was
   * made, false when there is nothing to abort (the stream has ended). Throws STREAM_NOT_FOUND for
   * an unknown or dropped stream, and STORE_UNAVAILABLE when Redis is away.
   */
  abort(streamId: string): Promise<boolean>;
  /** The run queue the fleet shares; absent with `fleet.shared_queue: false`. */
  readonly runs?: SharedRuns;
}

/** A run the hub hands to the shared queue. */
export interface SharedRunRequest {
  streamId: string;
  params: Omit<RunRequest, 'signal'>;
  /** Whose line it waits in (the owner's `queueKey`). */
  client: string;
  /** From `check`: the receiver lacks the LoRA adapter the run names (see `SharedRuns.check`). */
  refusal?: ServerError;
  /**
   * A buffered run (polled, not pushed live), whose stream's buffer, under these limits, exists
   * already: its executor writes its text there itself, and the receiver appends only its final chunk.
   */
  buffer?: BufferLimits;
}

/** What a shared run tells the receiver's stream besides its text. */
export interface SharedRunEvents {
  /** An instance has started it. */
  running(): void;
  /** The next chunk is numbered `seq`, as its executor numbered it (a buffered run's chunks are in the buffer already, and a poll may have trimmed some unseen). */
  seqFrom(seq: number): void;
  /** Its buffer is full (a buffered run): it was stopped, and its final chunk says so. */
  full(): void;
}

/** A run admitted into the shared queue: it executes on whichever instance claims it. */
export interface SharedRun {
  /**
   * Waits until the run has executed wherever it was claimed, passing its results to `callback`
   * as the engine would (a buffered run's text as its executor wrote it into the buffer), and the
   * rest to `events`. Aborting `request.signal` takes it out of the queue, or stops it where it
   * runs. Never rejects: failures end it with `finish_reason: "error"`.
   */
  run(request: RunRequest, callback: LLMResultCallback, events: SharedRunEvents): Promise<RunOutcome>;
  /** Takes the run out of the queue if `run` was never called (its stream could not open). */
  cancel(): void;
}

/**
 * The queue a fleet shares. The hub puts each run there, after its own checks; when the queue
 * cannot be reached it runs the run itself, through its own scheduler.
 */
export interface SharedRuns {
  /**
   * The receiver's checks of a run (`engine.validate`), where a LoRA adapter this instance has not
   * loaded may still be loaded on another: every other check runs all the same, and the refusal
   * this instance would give for the adapter is returned, for `enqueue` to give if no live instance
   * has it either. Any other refusal is thrown.
   */
  check(engine: Engine, params: Omit<RunRequest, 'signal'>): Promise<ServerError | undefined>;
  /**
   * Admits a run: resolves with it once queued, or undefined when the shared queue is unreachable
   * (the caller serves it locally). Throws the refusal when a fleet-wide limit is reached, or once
   * closed.
   */
  enqueue(request: SharedRunRequest): Promise<SharedRun | undefined>;
}

export interface SharedQueueOptions {
  link: RedisLink;
  /** This instance's peers: the shared queue reaches them for the hub. */
  peers: Fleet;
  instanceId: string;
  engine: Engine;
  /**
   * Holds the engine a claimed run executes on until `release` (the server's default model, loaded
   * again when it was unloaded to make room for another). Default: `engine`, as it is.
   */
  hold?: () => Promise<{ engine: Engine; release(): void }>;
  /** This instance's slots: the executor takes one per run it claims. */
  scheduler: Scheduler;
  limits: FleetLimits;
  leaseMs: number;
  /** How long the fleet's reads and writes are retried while Redis is unreachable (`redis.retry_ms`). */
  retryMs: number;
  checkIntervalMs: number;
  /** Connections for the receivers' blocking reads at most. */
  maxBlockingReads: number;
  log: Logger;
  /** What this instance can serve; by default, its engine's one model. */
  capability?: Capability;
}

/** What the queue and the executor of a shared queue get: its options, and what it made for them. */
export interface FleetParts extends SharedQueueOptions {
  capability: Capability;
  reads: BlockingReads;
  /** Told whether Redis answered (runs go through the shared queue) or not (they are served here). */
  onReachable(reachable: boolean, reason?: string): void;
}

/** One instance of the fleet, as `engine_status` and `model_info` show it. */
export interface FleetInstance {
  id: string;
  free_slots: number;
  slots?: number;
  engine?: string;
  models?: ServedModel[];
}

/** The fleet as this instance sees it. */
export interface FleetStatus {
  /** "shared": runs go through the shared queue; "local": Redis is unreachable, this instance serves its own queue. */
  mode: 'shared' | 'local';
  reason?: string;
  instance: string;
  queued?: number;
  running?: number;
  instances?: FleetInstance[];
}

/** How long a run's queue data stays in Redis once done (and at most, for one never finished). */
export const JOB_TTL_MS = 600_000;

/** The fleet-wide limits the enqueue script checks. */
export interface FleetLimits {
  queueLimit: number;
  clientQueueLimit: number;
  maxStreams: number;
}
