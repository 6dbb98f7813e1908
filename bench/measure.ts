/**
 * What the bench measures on the server's side: a bare node-llama-cpp loop, a real server in this
 * process with clients on a worker thread (its own core, as a separate client process would be).
 */
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { getLlama, type Token } from 'node-llama-cpp';
import { pino } from 'pino';
import { TINY_MODEL_PROMPTS } from '../src/gguf/builtin.js';
import { startServer, type RunningServer } from '../src/server.js';
import { defaultSettings, type Settings } from '../src/settings.js';
import { merge } from '../src/settings-sources.js';
import type { Chunk } from '../src/streams/stream.js';
import { wallClock, type BenchTransport, type ClientInput, type ClientReport, type LoadJob } from './client.js';

export const PROMPT = TINY_MODEL_PROMPTS.long;
export const GREEDY = { top_k: 1, temperature: 0, repeat_penalty: 1 };

export interface Figures {
  tokensPerSecond: number;
}

export interface DeliveryFigures extends Figures {
  delays: number[];
  pollsPerStream: number;
}

/** The clients run on their own thread (and core), as a separate client process would. */
const CLIENT = new URL('./client.js', import.meta.url);

/** Runs a job on a client worker thread and resolves with its answer. */
export async function onWorker<T>(data: ClientInput | LoadJob): Promise<T> {
  const worker = new Worker(CLIENT, { workerData: data });
  const [answer] = (await once(worker, 'message')) as [T];
  await worker.terminate();
  return answer;
}

/**
 * A direct node-llama-cpp loop: `streams` sequences of one context, each generating `tokens`.
 * `flashAttention` as the engine's slot contexts set it (node-llama-cpp's default is off).
 */
export async function rawEngine(
  modelPath: string,
  threads: number,
  streams: number,
  tokens: number,
  flashAttention = false,
): Promise<Figures> {
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  const model = await llama.loadModel({ modelPath });
  const context = await model.createContext({ contextSize: (tokens + 256) * streams, sequences: streams, threads, flashAttention });
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

/** A real server in this process on every transport, silent, with `parallel` slots; `overrides` adjusts its settings. */
export async function benchServer(
  modelPath: string,
  threads: number,
  parallel: number,
  tokens: number,
  overrides: object = {},
  observer?: (streamId: string, chunk: Chunk) => void,
): Promise<RunningServer> {
  const base: Settings = merge(defaultSettings(), {
    http: { port: 0 },
    tcp: { port: 0 },
    ws: { port: 0 },
    udp: { port: 0 },
    engine: { model_path: modelPath, threads, parallel, max_context_len: tokens + 256 },
    log_level: 'silent',
  });
  return startServer(merge(base, overrides), pino({ level: 'silent' }), observer ? { observer: { chunk: observer } } : {});
}

/** `streams` clients of `transport`, each generating `tokens`, against a fresh server with as many slots. */
export async function delivery(
  transport: BenchTransport,
  modelPath: string,
  threads: number,
  streams: number,
  tokens: number,
  overrides: object = {},
): Promise<DeliveryFigures> {
  const produced = new Map<string, number>();
  const server = await benchServer(modelPath, threads, streams, tokens, overrides, (streamId, chunk) =>
    produced.set(`${streamId}/${chunk.seq}`, wallClock()),
  );
  try {
    const report = await onWorker<ClientReport>({
      transport,
      addresses: server.addresses,
      streams,
      params: { prompt_input: PROMPT, max_new_tokens: tokens, ...GREEDY },
    });
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
