/**
 * `npm run bench`: throughput and delivery delay, measured side by side in one run.
 *
 * For each built-in model (tiny, and the ~50-100M parameter bench model) and for 1 and 8
 * concurrent streams:
 * - raw engine tokens/s: a direct node-llama-cpp loop with the same threads and sequences;
 * - for each transport (HTTP long polling, TCP, WebSocket, UDP), tokens/s received by clients of a
 *   real server (in this process; clients on a worker thread, over loopback), and its ratio to the
 *   raw figure;
 * - the delay from a token being generated (the stream producing its chunk) to the client
 *   holding it: median and p99;
 * - HTTP: polls per stream;
 * - then the Redis store against the memory store (bench/redis.ts).
 *
 * The machine is shared and noisy, so compare the ratios rather than absolute figures.
 * Flags: --quick (fewer tokens), --model tiny|bench|all (default all).
 */
import { parseArgs } from 'node:util';
import { getLlama, type Token } from 'node-llama-cpp';
import { pino } from 'pino';
import { ensureBuiltinModel, TINY_MODEL_PROMPTS, type BuiltinModelKind } from '../src/model/builtin.js';
import { startServer } from '../src/server.js';
import { defaultSettings, merge, type Settings } from '../src/settings.js';
import type { Chunk } from '../src/streams/stream.js';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { wallClock, type BenchTransport, type ClientInput, type ClientReport } from './client.js';
import { redisTable } from './redis.js';

interface Scenario {
  kind: BuiltinModelKind;
  threads: number;
  tokens: number;
}

interface Figures {
  tokensPerSecond: number;
}

interface DeliveryFigures extends Figures {
  delays: number[];
  pollsPerStream: number;
}

const PROMPT = TINY_MODEL_PROMPTS.long;
const GREEDY = { top_k: 1, temperature: 0, repeat_penalty: 1 };

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A direct node-llama-cpp loop: `streams` sequences of one context, each generating `tokens`. */
async function rawEngine(modelPath: string, threads: number, streams: number, tokens: number): Promise<Figures> {
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  const model = await llama.loadModel({ modelPath });
  const context = await model.createContext({ contextSize: tokens + 256, sequences: streams, threads });
  try {
    const prompt = model.tokenize(PROMPT);
    const one = async (): Promise<number> => {
      const sequence = context.getSequence();
      let n = 0;
      for await (const token of sequence.evaluate([model.tokens.bos!, ...prompt] as Token[], { temperature: 0 })) {
        void token;
        if (++n >= tokens) break;
      }
      return n;
    };
    const started = performance.now();
    const counts = await Promise.all(Array.from({ length: streams }, one));
    const seconds = (performance.now() - started) / 1000;
    return { tokensPerSecond: counts.reduce((a, b) => a + b, 0) / seconds };
  } finally {
    await context.dispose();
    await model.dispose();
    await llama.dispose();
  }
}

/** The clients run on their own thread (and core), as a separate client process would. */
const CLIENT = new URL('./client.js', import.meta.url);
const TRANSPORTS: BenchTransport[] = ['http', 'tcp', 'ws', 'udp'];

/**
 * A real server in this process; `streams` clients of `transport` on a worker thread, over
 * loopback. `overrides` adjusts the server's settings.
 */
async function delivery(
  transport: BenchTransport,
  modelPath: string,
  threads: number,
  streams: number,
  tokens: number,
  overrides: object = {},
): Promise<DeliveryFigures> {
  const produced = new Map<string, number>();
  const base: Settings = merge(defaultSettings(), {
    http: { port: 0 },
    tcp: { port: 0 },
    ws: { port: 0 },
    udp: { port: 0 },
    engine: { model_path: modelPath, threads, parallel: streams, max_context_len: tokens + 256 },
    log_level: 'silent',
  });
  const settings = merge(base, overrides);
  const server = await startServer(settings, pino({ level: 'silent' }), {
    observer: { chunk: (streamId: string, chunk: Chunk) => produced.set(`${streamId}/${chunk.seq}`, wallClock()) },
  });
  try {
    const input: ClientInput = {
      transport,
      addresses: server.addresses,
      streams,
      params: { prompt_input: PROMPT, max_new_tokens: tokens, ...GREEDY },
    };
    const worker = new Worker(CLIENT, { workerData: input });
    const [report] = (await once(worker, 'message')) as [ClientReport];
    const delays: number[] = [];
    for (const r of report.received) {
      const at = produced.get(`${r.stream_id}/${r.seq}`);
      if (at !== undefined) delays.push(r.at - at);
    }
    return {
      tokensPerSecond: report.tokens / report.seconds,
      delays: delays.sort((a, b) => a - b),
      pollsPerStream: report.polls / streams,
    };
  } finally {
    await server.close();
  }
}

function fmt(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

async function runScenario(s: Scenario): Promise<string[]> {
  const modelPath = await ensureBuiltinModel(s.kind);
  const rows: string[] = [];
  for (const streams of [1, 8]) {
    const raw = await rawEngine(modelPath, s.threads, streams, s.tokens);
    for (const transport of TRANSPORTS) {
      const got = await delivery(transport, modelPath, s.threads, streams, s.tokens);
      rows.push(
        [
          s.kind.padEnd(6),
          transport.padEnd(9),
          String(streams).padStart(7),
          String(s.tokens).padStart(7),
          fmt(raw.tokensPerSecond).padStart(10),
          fmt(got.tokensPerSecond).padStart(10),
          fmt(got.tokensPerSecond / raw.tokensPerSecond, 2).padStart(6),
          fmt(percentile(got.delays, 50), 2).padStart(7),
          fmt(percentile(got.delays, 99), 2).padStart(7),
          (transport === 'http' ? fmt(got.pollsPerStream) : '-').padStart(8),
        ].join(' '),
      );
    }
    process.stderr.write(`done: ${s.kind}, ${streams} stream(s)\n`);
  }
  return rows;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, model: { type: 'string', default: 'all' } } });
  const quick = values.quick === true;
  const scenarios: Scenario[] = [
    { kind: 'tiny', threads: 1, tokens: quick ? 300 : 2000 },
    { kind: 'bench', threads: 1, tokens: quick ? 32 : 200 },
  ].filter((s) => values.model === 'all' || values.model === s.kind) as Scenario[];
  const header = ['model ', 'transport', 'streams', ' tokens', '   raw t/s', ' recv t/s', ' ratio', ' p50 ms', ' p99 ms', 'polls/st'].join(
    ' ',
  );
  const rows: string[] = [];
  for (const scenario of scenarios) rows.push(...(await runScenario(scenario)));
  process.stdout.write(
    `\nDelivery to clients vs raw engine (ratio: received t/s / raw t/s; tokens per stream; delays: token produced -> client holds it)\n${header}\n${rows.join('\n')}\n`,
  );
  const redisScenarios = [];
  for (const s of scenarios) {
    const modelPath = await ensureBuiltinModel(s.kind);
    redisScenarios.push({
      label: s.kind,
      deliver: (streams: number, overrides: object) => delivery('http', modelPath, s.threads, streams, s.tokens, overrides),
    });
  }
  process.stdout.write(await redisTable(redisScenarios));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
