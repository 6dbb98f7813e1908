import type { ServerError } from '../../errors.js';
import { BlockingReads } from '../redis/blocking-reads.js';
import type { Stream } from '../stream.js';
import { FleetExecutor } from './executor.js';
import type { Fleet, FleetInstance, FleetParts, FleetStatus, SharedQueueOptions, SharedRuns } from './fleet.js';
import { engineCapability, modelHash } from './needs.js';
import { FleetQueue } from './queue.js';
import { STATUS } from './scripts.js';

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
