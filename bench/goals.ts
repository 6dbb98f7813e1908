/**
 * The goal table of issue 11, measured side by side in one run: each row is a ratio or a figure
 * with its goal. With `anchor` (a running llama-server, see anchor.ts), the same rows for it.
 */
import { ensureBuiltinModel } from '../src/gguf/builtin.js';
import type { Anchor } from './anchor.js';
import { benchServer, delivery, GREEDY, onWorker, PROMPT, rawEngine } from './measure.js';

export interface GoalOptions {
  threads: number;
  /** Tokens per stream for the tiny model, and for the bench model. */
  tinyTokens: number;
  benchTokens: number;
  /** Seconds of load for each req/s figure. */
  seconds: number;
  /** A llama-server to measure side by side, started by the caller for each model. */
  anchor?: (kind: 'tiny' | 'bench', parallel: number) => Promise<Anchor>;
}

interface Row {
  figure: string;
  goal: string;
  ours: string;
  met: boolean;
  anchor?: string;
}

const BURST = 8;
const ROUNDS = 3;
const CONNECTIONS = 100;

function fixed(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

async function burstRounds(modelPath: string, threads: number, tokens: number): Promise<number[]> {
  const server = await benchServer(modelPath, threads, BURST, tokens);
  try {
    const params = { prompt_input: PROMPT, max_new_tokens: tokens, ...GREEDY };
    return await onWorker<number[]>({
      job: 'burst',
      transport: 'tcp',
      addresses: server.addresses,
      streams: BURST,
      rounds: ROUNDS,
      params,
    });
  } finally {
    await server.close();
  }
}

async function requestRates(modelPath: string, threads: number, seconds: number): Promise<{ rpc: number; health: number }> {
  const server = await benchServer(modelPath, threads, 1, 64);
  try {
    const url = `http://${server.addresses.http}/`;
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'rkllm_is_running' });
    const rpc = await onWorker<number>({ job: 'rps', url, body, connections: CONNECTIONS, seconds });
    const health = await onWorker<number>({ job: 'rps', url: `${url}health`, connections: CONNECTIONS, seconds });
    return { rpc, health };
  } finally {
    await server.close();
  }
}

/** A row whose goal is a ratio of at least `min`: the goal's text and its check come from the one number. */
function ratioRow(figure: string, min: number, ratio: number, detail: string): Row {
  return { figure, goal: `>= ${min}`, ours: `${fixed(ratio, 2)} (${detail})`, met: ratio >= min };
}

/** Measures every row; progress goes to stderr. */
export async function goalRows(options: GoalOptions): Promise<Row[]> {
  const { threads, tinyTokens, benchTokens, seconds } = options;
  const tiny = await ensureBuiltinModel('tiny');
  const benchModel = await ensureBuiltinModel('bench');
  const step = (what: string): boolean => process.stderr.write(`goals: ${what}\n`);

  step('bare loop');
  const bare = (await rawEngine(tiny, threads, 1, tinyTokens)).tokensPerSecond;
  step('burst');
  const burst = await burstRounds(tiny, threads, 200);
  step('1 stream');
  const tcp1 = (await delivery('tcp', tiny, threads, 1, tinyTokens)).tokensPerSecond;
  const ws1 = (await delivery('ws', tiny, threads, 1, tinyTokens)).tokensPerSecond;
  const http1 = (await delivery('http', tiny, threads, 1, tinyTokens)).tokensPerSecond;
  step('8 streams');
  const tcp8 = (await delivery('tcp', tiny, threads, 8, tinyTokens)).tokensPerSecond;
  step('bench model');
  const bench1 = (await delivery('tcp', benchModel, threads, 1, benchTokens)).tokensPerSecond;
  const bench4 = (await delivery('tcp', benchModel, threads, 4, benchTokens)).tokensPerSecond;
  // node-llama-cpp's own loop with the engine's context options, beside the row above: it queues its
  // sequences in the order their samplings end, so llama.cpp splits its batches (docs/benchmarks.md).
  const bareBench1 = (await rawEngine(benchModel, threads, 1, benchTokens, true)).tokensPerSecond;
  const bareBench4 = (await rawEngine(benchModel, threads, 4, benchTokens, true)).tokensPerSecond;
  step('req/s');
  const rates = await requestRates(tiny, threads, seconds);

  const rows: Row[] = [
    {
      figure: `burst of ${BURST} on ${BURST} slots, slowest first token of ${ROUNDS} rounds (ms)`,
      goal: '<= 100',
      ours: `${fixed(Math.max(...burst), 0)} (rounds: ${burst.map((b) => fixed(b, 0)).join(', ')})`,
      met: Math.max(...burst) <= 100,
    },
    ratioRow('1 stream TCP / bare loop', 0.9, tcp1 / bare, `${fixed(tcp1, 0)} / ${fixed(bare, 0)} t/s`),
    ratioRow('1 stream WebSocket / bare loop', 0.9, ws1 / bare, `${fixed(ws1, 0)} t/s`),
    ratioRow('1 stream HTTP long-poll / bare loop', 0.8, http1 / bare, `${fixed(http1, 0)} t/s`),
    ratioRow('8 streams TCP aggregate / bare loop', 1.5, tcp8 / bare, `${fixed(tcp8, 0)} t/s`),
    ratioRow(
      'bench model, 4 streams / 1 stream, TCP',
      1.6,
      bench4 / bench1,
      `${fixed(bench4, 0)} / ${fixed(bench1, 0)} t/s; bare node-llama-cpp loop 4 / 1: ${fixed(bareBench4 / bareBench1, 2)}`,
    ),
    {
      figure: `rkllm_is_running over HTTP, ${CONNECTIONS} keep-alive connections (req/s)`,
      goal: '>= 20000, >= 0.8 x /health',
      ours: `${fixed(rates.rpc, 0)} = ${fixed(rates.rpc / rates.health, 2)} x /health (${fixed(rates.health, 0)})`,
      met: rates.rpc >= 20_000 && rates.rpc / rates.health >= 0.8,
    },
  ];
  if (options.anchor) await anchorRows(options, rows, { bare, tiny, benchModel });
  return rows;
}

/** The same figures from llama-server, beside ours. */
async function anchorRows(options: GoalOptions, rows: Row[], base: { bare: number; tiny: string; benchModel: string }): Promise<void> {
  const { tinyTokens, benchTokens, seconds } = options;
  const start = options.anchor!;
  process.stderr.write('goals: llama-server\n');
  const sse = (url: string, streams: number, tokens: number): Promise<number> =>
    onWorker<number>({ job: 'llama-stream', base: url, streams, prompt: PROMPT, tokens });
  {
    await using tiny = await start('tiny', BURST);
    const burst = await onWorker<number[]>({
      job: 'llama-burst',
      base: tiny.url,
      streams: BURST,
      rounds: ROUNDS,
      prompt: PROMPT,
      tokens: 200,
    });
    const one = await sse(tiny.url, 1, tinyTokens);
    const eight = await sse(tiny.url, BURST, tinyTokens);
    const health = await onWorker<number>({ job: 'rps', url: `${tiny.url}/health`, connections: CONNECTIONS, seconds });
    rows[0]!.anchor = `${fixed(Math.max(...burst), 0)} (rounds: ${burst.map((b) => fixed(b, 0)).join(', ')})`;
    rows[1]!.anchor = `SSE ${fixed(one / base.bare, 2)} (${fixed(one, 0)} t/s)`;
    rows[4]!.anchor = `${fixed(eight / base.bare, 2)} (${fixed(eight, 0)} t/s)`;
    rows[6]!.anchor = `/health ${fixed(health, 0)}`;
  }
  {
    await using bench = await start('bench', 4);
    const one = await sse(bench.url, 1, benchTokens);
    const four = await sse(bench.url, 4, benchTokens);
    rows[5]!.anchor = `${fixed(four / one, 2)} (${fixed(four, 0)} / ${fixed(one, 0)} t/s)`;
  }
}

/** The table as text. */
export function goalTable(rows: Row[]): string {
  const anchored = rows.some((r) => r.anchor !== undefined);
  const head = ['figure', 'goal', 'this server', 'met', ...(anchored ? ['llama-server'] : [])];
  const lines = rows.map((r) => [r.figure, r.goal, r.ours, r.met ? 'yes' : 'NO', ...(anchored ? [r.anchor ?? '-'] : [])]);
  const table = [head, head.map(() => '---'), ...lines].map((cells) => `| ${cells.join(' | ')} |`);
  return `\nGoals of issue 11 (tiny model unless said; ratios measured in this run)\n${table.join('\n')}\n`;
}
