import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ERROR_NAMES, ERRORS } from './errors.js';
import type { JsonRpcResponse } from './jsonrpc/message.js';
import type { Chunk } from './streams/stream.js';

/** What the gauges read when scraped. Bound once the server is built (`watch`); until then they read 0. */
export interface MetricsSources {
  /** Streams running, and waiting for a slot. */
  streams(): { active: number; queued: number };
  /** Live buffers and the bytes they hold. */
  buffers(): Promise<{ active_buffers: number; buffered_bytes: number }>;
  /** Open connections by transport (HTTP: open sockets). */
  connections(): Array<[transport: string, count: number]>;
  /** The methods of the table: other names are labelled "unknown", so labels stay few. */
  methods: ReadonlySet<string>;
}

/** Delay buckets, in seconds, from a fast token (1 ms) to a slow first token after a long queue (2 min). */
const DELAY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

const NAME_OF_CODE = new Map<number, string>(ERROR_NAMES.map((name) => [ERRORS[name].code, name]));

/**
 * The server's Prometheus metrics, in a registry of its own (never prom-client's global one), so
 * several servers can run in one process. It observes streams (as a StreamObserver), answered
 * requests (as the dispatcher's observer) and refusals; gauges read their sources when scraped.
 */
export class Metrics {
  readonly registry = new Registry();
  #sources: MetricsSources | undefined;
  readonly #now: () => number;
  /** Each stream's admission and its last chunk, until it ends. */
  readonly #timings = new Map<string, { admitted: number; last?: number }>();
  readonly #tokens: Counter;
  readonly #streamsEnded: Counter<'finish_reason'>;
  readonly #errors: Counter<'code' | 'name'>;
  readonly #ttft: Histogram;
  readonly #interToken: Histogram;
  readonly #queueWait: Histogram;
  readonly #requests: Histogram<'method' | 'transport'>;
  /** The request histogram's series by method and transport, looked up once each (a labelled observe hashes its labels every time; a joined key would allocate per request). */
  readonly #requestSeries = new Map<string, Map<string, { observe(value: number): void }>>();

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const counter = <L extends string>(name: string, help: string, labelNames: L[] = []): Counter<L> =>
      new Counter({ name, help, labelNames, registers });
    const delay = <L extends string>(name: string, help: string, labelNames: L[] = []): Histogram<L> =>
      new Histogram({ name, help, labelNames, buckets: DELAY_BUCKETS, registers });
    this.#tokens = counter('rkllm_tokens_generated_total', 'Tokens generated (one per chunk of text).');
    this.#streamsEnded = counter('rkllm_streams_ended_total', 'Streams ended, by finish reason.', ['finish_reason']);
    this.#errors = counter('rkllm_errors_total', 'Errors sent to clients (error responses, error chunks, refusals), by JSON-RPC code.', [
      'code',
      'name',
    ]);
    this.#ttft = delay('rkllm_time_to_first_token_seconds', 'From a stream being admitted (queue included) to its first token.');
    this.#interToken = delay('rkllm_inter_token_delay_seconds', 'Between consecutive tokens of a stream.');
    this.#queueWait = delay('rkllm_queue_wait_seconds', 'From a stream being admitted to its getting an engine slot.');
    this.#requests = delay(
      'rkllm_request_duration_seconds',
      'Time to answer a request, by method and transport; method="poll" is the poll latency (long-poll waits included).',
      ['method', 'transport'],
    );
    this.#gauges(registers);
  }

  /** Binds the sources the gauges read. */
  watch(sources: MetricsSources): void {
    this.#sources = sources;
  }

  /** The metrics in the Prometheus text format. */
  async render(): Promise<{ type: string; body: string }> {
    return { type: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** A stream was admitted; it may wait in the queue. */
  started(streamId: string): void {
    this.#timings.set(streamId, { admitted: this.#now() });
  }

  /** A stream got its engine slot. */
  running(streamId: string): void {
    const timing = this.#timings.get(streamId);
    if (timing) this.#queueWait.observe(this.#seconds(timing.admitted));
  }

  chunk(streamId: string, chunk: Chunk): void {
    const timing = this.#timings.get(streamId);
    if (chunk.end) {
      this.#timings.delete(streamId);
      this.#streamsEnded.inc({ finish_reason: chunk.finish_reason ?? 'unknown' });
      if (chunk.error) this.error(chunk.error.code);
      return;
    }
    this.#tokens.inc();
    if (!timing) return;
    if (timing.last === undefined) this.#ttft.observe(this.#seconds(timing.admitted));
    else this.#interToken.observe(this.#seconds(timing.last));
    timing.last = this.#now();
  }

  /** A request was answered (or failed) after `seconds`. */
  answered(method: string, transport: string, seconds: number): void {
    const name = this.#sources?.methods.has(method) === true ? method : 'unknown';
    let byTransport = this.#requestSeries.get(name);
    if (!byTransport) this.#requestSeries.set(name, (byTransport = new Map<string, { observe(value: number): void }>()));
    let series = byTransport.get(transport);
    if (!series) byTransport.set(transport, (series = this.#requests.labels({ method: name, transport })));
    series.observe(seconds);
  }

  /** Counts the error responses in a reply of the dispatcher. */
  replied(reply: JsonRpcResponse | JsonRpcResponse[] | undefined): void {
    for (const response of Array.isArray(reply) ? reply : reply ? [reply] : []) {
      if ('error' in response) this.error(response.error.code);
    }
  }

  /** Counts one error sent to a client. */
  error(code: number): void {
    this.#errors.inc({ code: String(code), name: NAME_OF_CODE.get(code) ?? 'other' });
  }

  #seconds(since: number): number {
    return (this.#now() - since) / 1000;
  }

  #gauges(registers: Registry[]): void {
    const sources = (): MetricsSources | undefined => this.#sources;
    const streamGauge = (name: string, help: string, read: (s: { active: number; queued: number }) => number): void => {
      const gauge: Gauge = new Gauge({
        name,
        help,
        registers,
        collect: () => gauge.set(read(sources()?.streams() ?? { active: 0, queued: 0 })),
      });
    };
    streamGauge('rkllm_streams_active', 'Streams generating now (holding an engine slot).', (s) => s.active);
    streamGauge('rkllm_streams_queued', 'Streams waiting for an engine slot.', (s) => s.queued);
    const bufferBytes: Gauge = new Gauge({
      name: 'rkllm_buffer_bytes',
      help: 'Bytes held by stream buffers (polling and detached streams).',
      registers,
      collect: async () => bufferBytes.set((await sources()?.buffers())?.buffered_bytes ?? 0),
    });
    const connections: Gauge<'transport'> = new Gauge({
      name: 'rkllm_connections',
      help: 'Open connections, by transport (HTTP: open sockets; UDP has none).',
      labelNames: ['transport'],
      registers,
      collect: () => {
        connections.reset();
        for (const [transport, count] of sources()?.connections() ?? []) connections.set({ transport }, count);
      },
    });
  }
}
