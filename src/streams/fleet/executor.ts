import {
  LLMCallState,
  emptyPerf,
  type Engine,
  type RKLLMResultLastHiddenLayer,
  type RKLLMResultLogits,
  type RunOutcome,
  type RunRequest,
} from '../../engine/types.js';
import { chunkBytes } from '../buffer-store.js';
import { JsonEnd } from '../json-end.js';
import { Leases, SKIPPED } from '../redis/leases.js';
import type { Chunk } from '../stream.js';
import { RECONNECT_MAX_MS, retrying, type RedisLink } from '../redis/link.js';
import { JOB_TTL_MS, type FleetParts } from './fleet.js';
import { runFromJob, type RunNeeds } from './needs.js';
import { CLAIM, EMIT, LEAVE, REAP, RENEW } from './scripts.js';

/** Claims taken back per reaper call. */
const REAP_BATCH = 100;
/** How long what this instance decided about a class (can it serve it?) holds: LoRA adapters get loaded. */
const DECISION_MS = 2_000;
/** The scheduler line executed runs take their slot in. */
const FLEET_LINE = '\u0000fleet';

interface Execution {
  controller: AbortController;
  done: Promise<void>;
}

type Claimed = [] | [string, number, string, string];

/**
 * The executing side of the shared queue: whenever this instance has a free slot it claims the
 * next run it can serve (woken by a notification when a run is queued, and every
 * `checkIntervalMs` besides), runs it on its engine, and sends what it produces to the run's
 * receiver. It renews its claims' leases, and takes back the claims of instances that died.
 */
export class FleetExecutor {
  readonly #o: FleetParts;
  readonly #running = new Map<string, Execution>();
  #leases: Leases | undefined;
  readonly #decisions = new Map<string, boolean>();
  #decidedAt = 0;
  #pumping = false;
  #again = false;
  #stopped = false;
  #shutdown = false;

  private constructor(options: FleetParts) {
    this.#o = options;
  }

  /** Registers this instance, listens for wake-ups and for aborts of its runs (see `Leases`), and starts claiming. */
  static async start(options: FleetParts): Promise<FleetExecutor> {
    const { link, instanceId, leaseMs } = options;
    const executor = new FleetExecutor(options);
    const ctl = `${link.prefix}fq:ctl:${instanceId}`;
    const leases = await Leases.start({
      link,
      name: 'rkllm-mcp:fleet',
      channels: [`${link.prefix}fq:wake`, ctl],
      onMessage: (channel, message) => (channel === ctl ? executor.#running.get(message)?.controller.abort() : executor.kick()),
      leaseMs,
      renew: () => executor.#renew(),
      reap: () => executor.#reap(),
      // Instances get a lease to catch up after an outage, plus the longest pause between their reconnection attempts.
      reapAfterMs: leaseMs + RECONNECT_MAX_MS,
      onRound: (_task, err) => options.onReachable(err === undefined, (err as Error | undefined)?.message),
    });
    executor.#leases = leases;
    leases.every(options.checkIntervalMs, 'check', async () => {
      executor.kick();
      return SKIPPED;
    });
    executor.kick();
    return executor;
  }

  /** Runs executing here. */
  get executing(): number {
    return this.#running.size;
  }

  /** Looks for runs to claim while a slot is free. One look at a time; a kick during one looks again after it. */
  kick(): void {
    if (this.#stopped) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    void this.#pump()
      .catch((err: unknown) => this.#o.onReachable(false, (err as Error).message))
      .finally(() => (this.#pumping = false));
  }

  /**
   * Publishes what this instance serves now (a LoRA adapter was loaded), forgets what it decided
   * about the waiting classes, and looks for runs again. Never rejects: an unreachable Redis gets
   * the registration at the next renewal.
   */
  async refresh(): Promise<void> {
    if (this.#stopped) return;
    this.#decisions.clear();
    await this.#renew().catch((err: unknown) => this.#o.log.warn({ err }, 'fleet: could not publish what this instance serves'));
    this.kick();
  }

  /** Stops claiming at once (a graceful shutdown): runs executing here carry on. */
  async stopClaiming(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#o.link.run(LEAVE, [this.#o.instanceId]).catch(() => {});
  }

  /** Stops the runs executing here; they end with `finish_reason: "shutdown"`. Resolves once their ends are sent. */
  async stopAll(): Promise<void> {
    this.#shutdown = true;
    const runs = [...this.#running.values()];
    for (const run of runs) run.controller.abort();
    await Promise.all(runs.map((run) => run.done));
  }

  /** Stops claiming, stops what runs here, and closes its connection. Idempotent. */
  async close(): Promise<void> {
    this.#leases?.close();
    await this.stopClaiming();
    await this.stopAll();
  }

  async #pump(): Promise<void> {
    do {
      this.#again = false;
      const { scheduler } = this.#o;
      while (!this.#stopped && scheduler.active < scheduler.slots && (await this.#claimOne()));
    } while (this.#again && !this.#stopped);
  }

  /** Takes a slot and claims a run for it; gives the slot back when there was none. */
  async #claimOne(): Promise<boolean> {
    const { link, scheduler, instanceId, leaseMs } = this.#o;
    const controller = new AbortController();
    const free = scheduler.slots - scheduler.active;
    // The slot is taken before anything is awaited (a free one is given at once), so nothing takes it meanwhile.
    const release = await scheduler.acquire(controller.signal, FLEET_LINE);
    let claimed: Claimed;
    try {
      const classes = await this.#servable();
      claimed = (await link.run(CLAIM, [link.now(), leaseMs, instanceId, free, ...classes])) as Claimed;
    } catch (err) {
      release();
      throw err;
    }
    if (claimed.length === 0 || this.#stopped) {
      release();
      return false;
    }
    const [id, attempt, params] = claimed;
    const done = this.#execute(id, attempt, runFromJob(params), controller).finally(() => {
      release();
      this.#running.delete(id);
      this.kick();
    });
    this.#running.set(id, { controller, done });
    return true;
  }

  /** The classes with waiting runs that this instance can serve. */
  async #servable(): Promise<string[]> {
    const { link, capability } = this.#o;
    if (Date.now() - this.#decidedAt > DECISION_MS) {
      this.#decisions.clear();
      this.#decidedAt = Date.now();
    }
    const classes = await link.redis.smembers(`${link.prefix}fq:classes`).catch((err: unknown) => {
      throw link.unavailable(err);
    });
    const servable: string[] = [];
    for (const cls of classes) {
      let yes = this.#decisions.get(cls);
      if (yes === undefined) {
        const needs = await link.redis.get(`${link.prefix}fq:need:${cls}`);
        yes = needs !== null && (await capability.canServe(JSON.parse(needs) as RunNeeds));
        this.#decisions.set(cls, yes);
      }
      if (yes) servable.push(cls);
    }
    return servable;
  }

  async #execute(id: string, attempt: number, params: Omit<RunRequest, 'signal'>, controller: AbortController): Promise<void> {
    const { link, instanceId, log } = this.#o;
    const hold = this.#o.hold ?? (async () => ({ engine: this.#o.engine, release: () => {} }));
    const emitter = new Emitter(link, id, attempt, this.#o.retryMs, (why) => {
      if (why !== 'asked' && why !== 'full') log.warn({ run: id, why }, 'fleet: stopping a run whose claim this instance lost');
      controller.abort();
    });
    emitter.start(instanceId);
    // Its text ends with the JSON value, as the hub ends it (a buffered run's text goes from here to its buffer).
    const json = params.infer.json_schema === undefined ? undefined : new JsonEnd();
    let outcome: RunOutcome;
    let held: { engine: Engine; release(): void } | undefined;
    try {
      held = await hold();
      outcome = await held.engine.run({ ...params, signal: controller.signal }, (result, state) => {
        if (json?.done) return 1;
        if (state !== LLMCallState.RKLLM_RUN_NORMAL) return 0;
        emitter.text(json ? result.text.slice(0, json.push(result.text)) : result.text, result.last_hidden_layer, result.logits);
        return json?.done ? 1 : 0;
      });
      if (json) outcome = { ...outcome, finish_reason: json.finish(outcome.finish_reason) };
    } catch (err) {
      log.error({ err, run: id }, 'fleet: a claimed run failed');
      outcome = { finish_reason: 'error', perf: emptyPerf(), error: 'the run failed on the instance executing it' };
    } finally {
      held?.release();
    }
    if (this.#shutdown && outcome.finish_reason === 'abort') outcome = { ...outcome, finish_reason: 'shutdown' };
    await emitter.end(outcome);
  }

  /** Renews this instance's registration and its claims; stops the runs it has lost or was asked to stop. */
  async #renew(): Promise<void> {
    const { link, scheduler, instanceId, leaseMs, capability, engine } = this.#o;
    const ids = [...this.#running.keys()];
    const info = JSON.stringify({ engine: engine.name, slots: scheduler.slots, models: capability.models() });
    // Once it stops claiming, its slots no longer count as free for the fleet.
    const free = this.#stopped ? 0 : scheduler.slots - scheduler.active;
    const statuses = (await link.run(RENEW, [link.now(), leaseMs, instanceId, free, info, ...ids])) as string[];
    ids.forEach((id, i) => {
      if (statuses[i] !== 'ok') this.#running.get(id)?.controller.abort();
    });
  }

  /** Takes back the claims of instances that stopped renewing. */
  async #reap(): Promise<void> {
    const { link, log } = this.#o;
    const [requeued, ended] = (await link.run(REAP, [link.now(), JOB_TTL_MS, REAP_BATCH])) as [string[], string[]];
    if (requeued.length > 0) log.warn({ runs: requeued }, 'fleet: re-queued runs whose executor died before they produced text');
    if (ended.length > 0) log.warn({ runs: ended }, 'fleet: ended runs whose executor died after they produced text');
  }
}

/**
 * What the executor of a shared run sends its receiver, one Redis Stream entry each: it started
 * (s, naming the instance), its text as chunks numbered from 0 (a buffered run's go into its
 * stream's buffer instead), its end (e: the engine's outcome, the chunks sent, a GET_* run's last
 * outputs, and whether the buffer became full), or, written by whichever instance reaped it, that
 * its executor was lost (with the chunks it had sent).
 */
export type Entry =
  | { t: 's'; x: string }
  | { t: 'e'; o: RunOutcome; n?: number; f?: 1; h?: RKLLMResultLastHiddenLayer; l?: RKLLMResultLogits }
  | { t: 'lost'; executor: string; tokens: number; attempts: number };

/**
 * How long text waits to be joined with the text that follows before it is sent (ms). Without it
 * each token would cost a round trip to Redis and a wake-up of the receiver; with it a run costs
 * about one chunk per this many ms. The first text of a run goes at once.
 */
const LINGER_MS = 5;

type Stop = (why: 'asked' | 'full' | 'fenced' | 'unreachable') => void;

/**
 * Sends one execution's entries to its receiver, in order, through the fenced EMIT script (which
 * puts a buffered run's text into its buffer). Text is joined for up to `LINGER_MS` into one
 * chunk. `stop` is called when the run must stop: its receiver asked, its buffer is full, or its
 * claim was taken back (then nothing more is sent).
 */
class Emitter {
  readonly #link: RedisLink;
  readonly #args: [string, number];
  readonly #stop: Stop;
  readonly #retryMs: number;
  #tail: Promise<void> = Promise.resolve();
  #pending: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Entries handed to `#send` so far: the next one's number. */
  #sent = 0;
  /** Chunks handed to `#send` so far: the next one's seq. */
  #chunks = 0;
  #outputs: Pick<Extract<Entry, { t: 'e' }>, 'h' | 'l'> = {};
  #full = false;
  #fenced = false;

  /** `retryMs`: how long sending one entry is retried while Redis is away; past it the run is given up (its lease ends it). */
  constructor(link: RedisLink, runId: string, attempt: number, retryMs: number, stop: Stop) {
    this.#link = link;
    this.#retryMs = retryMs;
    this.#args = [runId, attempt];
    this.#stop = stop;
  }

  start(instance: string): void {
    this.#send('s', () => JSON.stringify({ t: 's', x: instance }));
  }

  text(text: string, h?: RKLLMResultLastHiddenLayer, l?: RKLLMResultLogits): void {
    if (h) this.#outputs.h = h;
    if (l) this.#outputs.l = l;
    if (text === '') return;
    if (this.#pending !== undefined) this.#pending += text;
    else if (this.#chunks === 0) this.#sendText(text);
    else {
      this.#pending = text;
      this.#timer = setTimeout(() => this.#flush(), LINGER_MS);
    }
  }

  /** Sends the end entry after everything before it; resolves once it is sent (or could not be). */
  end(o: RunOutcome): Promise<void> {
    this.#flush();
    this.#send('e', () => JSON.stringify({ t: 'e', o, n: this.#chunks, ...this.#outputs, ...(this.#full ? { f: 1 } : {}) }));
    return this.#tail;
  }

  #flush(): void {
    clearTimeout(this.#timer);
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending !== undefined) this.#sendText(pending);
  }

  #sendText(delta: string): void {
    const chunk: Chunk = { seq: this.#chunks++, delta, end: false };
    this.#send('t', () => JSON.stringify(chunk), chunk.seq, chunkBytes(chunk));
  }

  /** Queues entry number `n` of `kind`, made (`json`) once those before it are sent. */
  #send(kind: string, json: () => string, ...chunk: number[]): void {
    const n = this.#sent++;
    this.#tail = this.#tail.then(() => this.#deliver([...this.#args, kind, json(), JOB_TTL_MS, n, ...chunk]));
  }

  /** Sends one entry, retrying while Redis is away; a retry of one that got through is not added twice. */
  async #deliver(args: Array<string | number>): Promise<void> {
    if (this.#fenced) return;
    try {
      const status = await retrying(() => this.#link.run(EMIT, args), Date.now() + this.#retryMs);
      if (status === 0) {
        this.#fenced = true;
        this.#stop('fenced');
      } else if (status === 2) this.#stop('asked');
      else if (status === 3 && !this.#full) {
        this.#full = true;
        this.#stop('full');
      }
    } catch {
      this.#fenced = true;
      this.#stop('unreachable');
    }
  }
}
