import type { Logger } from 'pino';
import type { Engine } from '../../engine/types.js';
import type { ServerError } from '../../errors.js';
import { BlockingReads } from '../redis/blocking-reads.js';
import type { RedisLink } from '../redis/link.js';
import type { Scheduler } from '../scheduler.js';
import type { SharedRuns } from '../shared-runs.js';
import { FleetExecutor, type FleetExecutorOptions } from './executor.js';
import { modelHash } from './model-hash.js';
import { engineCapability, type Capability, type ServedModel } from './needs.js';
import { FleetQueue, type FleetLimits } from './queue.js';
import { STATUS } from './scripts.js';

export interface FleetOptions {
  link: RedisLink;
  instanceId: string;
  engine: Engine;
  /** Holds the engine a claimed run executes on (see FleetExecutorOptions.hold). */
  hold?: FleetExecutorOptions['hold'];
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
 * This instance's part in a fleet: the shared queue it admits runs into (`runs`, for the hub) and
 * the executor that claims runs for its free slots. When Redis cannot be reached it says so
 * (`health`), and the hub serves runs through its own scheduler until Redis answers again.
 */
export class Fleet {
  readonly runs: SharedRuns;
  readonly #queue: FleetQueue;
  readonly #executor: FleetExecutor;
  readonly #reads: BlockingReads;
  readonly #o: FleetOptions;
  #unreachable: string | undefined;
  #closed: Promise<void> | undefined;

  private constructor(options: FleetOptions, queue: FleetQueue, executor: FleetExecutor, reads: BlockingReads) {
    this.#o = options;
    this.#queue = queue;
    this.runs = queue;
    this.#executor = executor;
    this.#reads = reads;
  }

  /** Hashes the model, registers this instance and starts claiming. */
  static async start(options: FleetOptions): Promise<Fleet> {
    const { link, engine, instanceId, log } = options;
    const capability = options.capability ?? engineCapability(engine, instanceId, modelHash);
    await capability.model();
    // The queue and executor report reachability from their first call; the fleet exists only after them.
    const made: { fleet?: Fleet } = {};
    const onReachable = (reachable: boolean, reason?: string): void => {
      if (made.fleet) made.fleet.#reachable(reachable, reason);
    };
    const reads = new BlockingReads(link, options.maxBlockingReads);
    const queue = new FleetQueue({ ...options, reads, capability, onReachable });
    const executor = await FleetExecutor.start({ ...options, capability, onReachable });
    const fleet = new Fleet(options, queue, executor, reads);
    made.fleet = fleet;
    log.info({ instance: instanceId, models: capability.models() }, 'fleet: runs go through the shared queue in Redis');
    return fleet;
  }

  /** Why this instance serves its own queue, or undefined while the shared queue is reachable. */
  get degraded(): string | undefined {
    return this.#unreachable;
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
