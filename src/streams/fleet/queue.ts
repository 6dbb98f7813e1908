import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import {
  LLMCallState,
  emptyPerf,
  type Engine,
  type LLMResultCallback,
  type RKLLMResult,
  type RunOutcome,
  type RunRequest,
} from '../../engine/types.js';
import { unknownAdapter } from '../../engine/unknown-adapter.js';
import { fault, type ServerError } from '../../errors.js';
import type { StreamRead } from '../redis/blocking-reads.js';
import type { Entry } from './executor.js';
import type { Chunk } from '../stream.js';
import { JOB_TTL_MS, type FleetParts, type SharedRun, type SharedRunEvents, type SharedRunRequest, type SharedRuns } from './fleet.js';
import { classOf, needsOf, pinned, runToJob } from './needs.js';
import { CANCEL, ENQUEUE } from './scripts.js';

/** How long a receiver blocks on its run's entries at a time (it loops). */
const WAIT_MS = 5_000;
/** The pause between reads while Redis is unreachable. */
const RETRY_PAUSE_MS = 100;

/** What the receiving side uses of the shared queue's parts. */
export type QueueParts = Pick<
  FleetParts,
  'link' | 'reads' | 'capability' | 'instanceId' | 'limits' | 'leaseMs' | 'retryMs' | 'log' | 'onReachable'
>;

type Enqueued = ['ok', string] | ['no_adapter'] | ['streams', number] | ['queue_full', number, number] | ['client_queue_full', number];

/**
 * The receiving side of the shared queue: admits runs into Redis under the fleet-wide limits, and
 * reads what their executor (any instance, this one included) sends back, as the engine's callback
 * would have delivered it.
 */
export class FleetQueue implements SharedRuns {
  readonly #o: QueueParts;
  #closedWith: ServerError | undefined;

  constructor(options: QueueParts) {
    this.#o = options;
  }

  /** Refuses every run not admitted yet with `refusal` (a graceful shutdown). */
  close(refusal: ServerError): void {
    this.#closedWith = refusal;
  }

  async check(engine: Engine, params: Omit<RunRequest, 'signal'>): Promise<ServerError | undefined> {
    const name = params.infer.lora_params?.lora_adapter_name;
    if (name === undefined || engine.loraAdapters().includes(name)) {
      await engine.validate(params);
      return undefined;
    }
    const refusal = await engine.validate(params).then(
      () => unknownAdapter(name, engine.loraAdapters()),
      (err: unknown) => err as ServerError,
    );
    // A run kept on this instance (its conversation, its saved prompt cache) cannot go elsewhere.
    if (pinned(params)) throw refusal;
    const infer = { ...params.infer };
    delete infer.lora_params;
    await engine.validate({ ...params, infer });
    return refusal;
  }

  async enqueue(request: SharedRunRequest): Promise<SharedRun | undefined> {
    if (this.#closedWith) throw this.#closedWith;
    const { link, capability, instanceId, limits } = this.#o;
    const needs = needsOf(request.params, await capability.model(), instanceId);
    const cls = classOf(needs);
    const args = [link.now(), cls, JSON.stringify(needs), request.client, runToJob(request.params), instanceId, request.streamId];
    const elsewhere = request.refusal ? 1 : 0;
    let reply: Enqueued;
    try {
      const limitArgs = [limits.queueLimit, limits.clientQueueLimit, limits.maxStreams, elsewhere];
      // A buffered run's chunks live as long as the store keeps them (twice its timeout, as the store's own).
      const buffer = request.buffer ? [request.buffer.maxBufferBytes, request.buffer.bufferTimeoutMs * 2] : [0, 0];
      reply = (await link.run(ENQUEUE, [...args, ...limitArgs, randomBytes(6).toString('hex'), ...buffer])) as Enqueued;
    } catch (err) {
      if (!(err instanceof Error) || err.name !== 'STORE_UNAVAILABLE') throw err;
      this.#o.onReachable(false, err.message);
      if (request.refusal) throw request.refusal;
      return undefined;
    }
    this.#o.onReachable(true);
    const busy = { retry_after: 1 };
    switch (reply[0]) {
      case 'no_adapter':
        throw request.refusal!;
      case 'streams': {
        const data = { limit: 'limits.max_streams', retry_after: 1 };
        throw fault('RATE_LIMITED', 'streams', { max: limits.maxStreams, ...data }, data);
      }
      case 'queue_full':
        throw fault('BUSY', 'queue_full', { active: reply[1], queued: reply[2] }, { ...busy, active: reply[1], queued: reply[2] });
      case 'client_queue_full':
        throw fault('BUSY', 'client_queue_full', { queued: reply[1] }, { ...busy, queued: reply[1] });
      default:
        return new QueuedRun(this.#o, reply[1], request.streamId, request.buffer !== undefined);
    }
  }
}

/** One run in the shared queue, as its receiver follows it. */
class QueuedRun implements SharedRun {
  readonly #o: QueueParts;
  readonly #id: string;
  readonly #streamId: string;
  /** Its text goes into its stream's buffer, where the receiver reads it too. */
  readonly #buffered: boolean;
  #settled = false;
  #cancelled = false;

  constructor(options: QueueParts, id: string, streamId: string, buffered: boolean) {
    this.#o = options;
    this.#id = id;
    this.#streamId = streamId;
    this.#buffered = buffered;
  }

  cancel(): void {
    if (this.#settled || this.#cancelled) return;
    this.#cancelled = true;
    void this.#cancel();
  }

  async run(request: RunRequest, callback: LLMResultCallback, events: SharedRunEvents): Promise<RunOutcome> {
    const signal = request.signal;
    // Aborting wakes the reader once; it then waits, uninterrupted, for the run's end entry.
    let waits = new AbortController();
    const onAbort = (): void => {
      const current = waits;
      waits = new AbortController();
      current.abort();
      this.cancel();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    try {
      return await this.#follow(callback, events, () => waits.signal);
    } finally {
      this.#settled = true;
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Reads the run's entries until its end: one blocking read per wake-up, which returns what is
   * there at once. A buffered run's text is read from its buffer in the same read (a poll may have
   * trimmed some of it first: the chunks after it keep their numbers).
   */
  async #follow(callback: LLMResultCallback, events: SharedRunEvents, waitSignal: () => AbortSignal): Promise<RunOutcome> {
    const { link, reads } = this.#o;
    const streams: Array<[string, string]> = [[`${link.prefix}fq:ch:${this.#id}`, '0-0']];
    if (this.#buffered) streams.push([`${link.prefix}l:${this.#streamId}`, '0-0']);
    let unreachableSince: number | undefined;
    for (;;) {
      let read: StreamRead | null;
      try {
        read = await reads.waitFor(streams, WAIT_MS, waitSignal());
        unreachableSince = undefined;
      } catch (err) {
        // A short outage loses nothing: the entries wait in Redis (the executor retries as long).
        unreachableSince ??= Date.now();
        if (Date.now() - unreachableSince > this.#o.retryMs) throw link.unavailable(err);
        await delay(RETRY_PAUSE_MS);
        continue;
      }
      // Nothing came for a while: its entry must still be in Redis (Redis may have lost its data).
      if (!read && !(await link.redis.exists(`${link.prefix}fq:j:${this.#id}`).catch(() => 1))) {
        throw fault('STORE_DATA_LOST', 'run', {}, { stream_id: this.#streamId });
      }
      const got: Array<Entry | Chunk> = [];
      for (const [key, entries] of read ?? []) {
        const stream = streams.find(([name]) => name === key)!;
        for (const [id, fields] of entries) {
          stream[1] = id;
          got.push(JSON.parse(fields[1]!) as Entry | Chunk);
        }
      }
      // Its text came after its start and before its end, whichever stream holds it.
      const rank = (entry: Entry | Chunk): number => ('seq' in entry ? 1 : entry.t === 's' ? 0 : 2);
      for (const entry of got.sort((a, b) => rank(a) - rank(b))) {
        const end = this.#deliver(entry, callback, events);
        if (end) return end;
      }
    }
  }

  #deliver(entry: Entry | Chunk, callback: LLMResultCallback, events: SharedRunEvents): RunOutcome | undefined {
    const text = (result: Omit<RKLLMResult, 'token_id' | 'perf'>): unknown =>
      callback({ ...result, token_id: -1, perf: emptyPerf() }, LLMCallState.RKLLM_RUN_NORMAL);
    if ('seq' in entry) {
      events.seqFrom(entry.seq);
      text({ text: entry.delta });
      return undefined;
    }
    switch (entry.t) {
      case 's':
        events.running();
        return undefined;
      case 'e':
        if (entry.n !== undefined) events.seqFrom(entry.n);
        if (entry.h || entry.l) text({ text: '', last_hidden_layer: entry.h, logits: entry.l });
        if (entry.f) events.full();
        return entry.o;
      case 'lost': {
        events.seqFrom(entry.tokens);
        const what = entry.tokens ? 'it had produced tokens' : 'its retry had started';
        const data = { stream_id: this.#streamId, executor: entry.executor, attempts: entry.attempts };
        throw fault('FLEET_EXECUTOR_LOST', 'lost', { executor: entry.executor, lease_ms: this.#o.leaseMs, what }, data);
      }
    }
  }

  async #cancel(): Promise<void> {
    const end: Entry = { t: 'e', o: { finish_reason: 'abort', perf: emptyPerf() } };
    try {
      await this.#o.link.run(CANCEL, [this.#id, JOB_TTL_MS, JSON.stringify(end)]);
    } catch (err) {
      this.#o.log.warn({ err, run: this.#id }, 'fleet: could not cancel a run');
    }
  }
}
