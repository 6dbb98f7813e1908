import type { Logger } from 'pino';
import type { Engine, LLMResultCallback, RunOutcome, RunRequest } from '../../engine/types.js';
import type { ServerError } from '../../errors.js';
import { BlockingReads } from '../redis/blocking-reads.js';
import type { RedisLink } from '../redis/link.js';
import type { Scheduler } from '../scheduler.js';
import type { Stream } from '../stream.js';
import { FleetExecutor } from './executor.js';
import { engineCapability, modelHash, type Capability, type ServedModel } from './needs.js';
import { FleetQueue, type FleetLimits } from './queue.js';
import { STATUS } from './scripts.js';

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

/**
 * This instance's part in the fleet's shared run queue: the queue it admits runs into (`runs`) and
 * the executor that claims runs for its free slots; for the hub, the peers besides. When Redis
 * cannot be reached it says so (`degraded`), and the hub serves runs through its own scheduler
 * until Redis answers again.
 */
export class SharedQueue implements Fleet {
  readonly runs: SharedRuns;
  readonly #queue: FleetQueue;
  readonly #executor: FleetExecutor;
  readonly #reads: BlockingReads;
  readonly #o: SharedQueueOptions;
  #unreachable: string | undefined;
  #closed: Promise<void> | undefined;

  private constructor(options: SharedQueueOptions, queue: FleetQueue, executor: FleetExecutor, reads: BlockingReads) {
    this.#o = options;
    this.#queue = queue;
    this.runs = queue;
    this.#executor = executor;
    this.#reads = reads;
  }

  /** Hashes the model, registers this instance and starts claiming. */
  static async start(options: SharedQueueOptions): Promise<SharedQueue> {
    const { link, engine, instanceId, log } = options;
    const capability = options.capability ?? engineCapability(engine, instanceId, modelHash);
    await capability.model();
    // The queue and executor report reachability from their first call; the fleet exists only after them.
    const made: { fleet?: SharedQueue } = {};
    const onReachable = (reachable: boolean, reason?: string): void => {
      if (made.fleet) made.fleet.#reachable(reachable, reason);
    };
    const reads = new BlockingReads(link, options.maxBlockingReads);
    const parts: FleetParts = { ...options, reads, capability, onReachable };
    const queue = new FleetQueue(parts);
    const executor = await FleetExecutor.start(parts);
    const fleet = new SharedQueue(options, queue, executor, reads);
    made.fleet = fleet;
    log.info({ instance: instanceId, models: capability.models() }, 'fleet: runs go through the shared queue in Redis');
    return fleet;
  }

  own(stream: Stream): void {
    this.#o.peers.own(stream);
  }

  abort(streamId: string): Promise<boolean> {
    return this.#o.peers.abort(streamId);
  }

  /** Why this instance serves its own queue, or Redis is in trouble (full, not answering); undefined while all is well. */
  get degraded(): string | undefined {
    const { problem, trouble } = this.#o.link;
    if (this.#unreachable || !problem) return this.#unreachable;
    return problem.startsWith('full') ? trouble : `the shared run queue (Redis) is ${problem}; this instance serves its own queue`;
  }

  /** Runs of any instance executing here. */
  get executing(): number {
    return this.#executor.executing;
  }

  /** Publishes at once what this instance serves, after a LoRA adapter was loaded (also done at each renewal). */
  refresh(): Promise<void> {
    return this.#executor.refresh();
  }

  /** A graceful shutdown: refuses new runs with `refusal`, and stops claiming at once. */
  stopAccepting(refusal: ServerError): void {
    this.#queue.close(refusal);
    void this.#executor.stopClaiming();
  }

  /** Ends the runs executing here with `finish_reason: "shutdown"`. */
  stopAll(): Promise<void> {
    return this.#executor.stopAll();
  }

  async status(): Promise<FleetStatus> {
    const { link, instanceId } = this.#o;
    const local = (reason: string): FleetStatus => ({ mode: 'local', reason, instance: instanceId });
    if (this.#unreachable) return local(this.#unreachable);
    let reply: [number, number, ...Array<[string, number, string]>];
    try {
      reply = (await link.run(STATUS, [link.now()])) as typeof reply;
    } catch (err) {
      return local((err as Error).message);
    }
    const [queued, running, ...rows] = reply;
    const instances = rows.map(([id, free, info]) => ({
      id,
      free_slots: free,
      ...(JSON.parse(info) as Omit<FleetInstance, 'id' | 'free_slots'>),
    }));
    return { mode: 'shared', instance: instanceId, queued, running, instances };
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.#executor.close();
      await this.#reads.close();
    })();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #reachable(reachable: boolean, reason?: string): void {
    if (reachable === (this.#unreachable === undefined)) return;
    if (reachable) {
      this.#o.log.info('fleet: Redis answers again; runs go through the shared queue');
      this.#unreachable = undefined;
      this.#executor.kick();
      return;
    }
    this.#unreachable = `the shared run queue (Redis) is unreachable (${reason ?? 'unknown'}); this instance serves its own queue`;
    this.#o.log.warn(this.#unreachable);
  }
}
