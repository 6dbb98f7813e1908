/**
 * `npm run bench`: the goal table of issue 11, measured side by side in one run (bench/goals.ts):
 * burst first-token latency, delivered tokens/s over TCP, WebSocket and HTTP long-poll as ratios
 * of a bare node-llama-cpp loop, batching gain on the bench model, trivial RPCs per second. With
 * LLAMA_SERVER=<llama-server binary> (built by `npm run bench:anchor`), the same figures from
 * llama-server on the same GGUF and threads, side by side. Then the fleet (bench/fleet.ts): 3
 * instances on one Redis queue against 1, on a burst of short runs, and the shared queue's cost.
 *
 * Then the models table (bench/models.ts): cold start against loaded, and the cost of switching
 * between two models. Then the RKLLM instances (bench/rkllm.ts): 3 runs on 3 instances of the ABI
 * twin against the same runs on 1. `--only goals|fleet|models|rkllm` runs one of the tables alone.
 *
 * --detail adds the older per-transport table (tiny and bench model, 1 and 8 streams; delivery
 * delay p50/p99; HTTP polls per stream) and the Redis store against the memory store.
 *
 * The machine is shared and noisy, so compare the ratios rather than absolute figures.
 * Flags: --quick (fewer tokens), --detail, --model tiny|bench|all (for --detail; default all), --only goals|fleet|models|rkllm.
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { ensureBuiltinModel, type BuiltinModelKind } from '../src/gguf/builtin.js';
import type { BenchTransport } from './client.js';
import { startAnchor } from './anchor.js';
import { goalRows, goalTable } from './goals.js';
import { modelTable } from './models.js';
import { delivery, rawEngine } from './measure.js';
import { fleetTable } from './fleet.js';
import { redisTable } from './redis.js';
import { rkllmTable } from './rkllm.js';

interface Scenario {
  kind: BuiltinModelKind;
  threads: number;
  tokens: number;
}

const TRANSPORTS: BenchTransport[] = ['http', 'tcp', 'ws', 'udp'];

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
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
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      detail: { type: 'boolean' },
      model: { type: 'string', default: 'all' },
      only: { type: 'string' },
    },
  });
  const quick = values.quick === true;
  const threads = 1;
  const tinyTokens = quick ? 300 : 2000;
  const benchTokens = quick ? 32 : 200;
  const binary = process.env.LLAMA_SERVER;
  const anchor = binary
    ? async (kind: 'tiny' | 'bench', parallel: number) =>
        startAnchor(binary, await ensureBuiltinModel(kind), threads, parallel, (kind === 'tiny' ? tinyTokens : benchTokens) + 256)
    : undefined;
  process.stdout.write(`load before: ${loadAverage()}\n`);
  const only = values.only;
  if (only === undefined || only === 'goals') {
    const rows = await goalRows({ threads, tinyTokens, benchTokens, seconds: quick ? 2 : 5, ...(anchor ? { anchor } : {}) });
    process.stdout.write(goalTable(rows));
  }
  if (only === undefined || only === 'fleet') {
    process.stdout.write(await fleetTable({ modelPath: await ensureBuiltinModel('bench'), runs: quick ? 6 : 12, tokens: 32 }));
  }
  if (only === undefined || only === 'models') {
    process.stdout.write(await modelTable({ threads, rounds: quick ? 3 : 5, requests: quick ? 6 : 10 }));
  }
  if (only === undefined || only === 'rkllm') {
    process.stdout.write(await rkllmTable({ runs: 3, tokens: quick ? 20 : 50, tokenUs: 20_000 }));
  }
  process.stdout.write(`load after: ${loadAverage()}\n`);
  if (!values.detail) return;
  const scenarios: Scenario[] = [
    { kind: 'tiny', threads, tokens: tinyTokens },
    { kind: 'bench', threads, tokens: benchTokens },
  ].filter((s) => values.model === 'all' || values.model === s.kind) as Scenario[];
  const header = ['model ', 'transport', 'streams', ' tokens', '   raw t/s', ' recv t/s', ' ratio', ' p50 ms', ' p99 ms', 'polls/st'].join(
    ' ',
  );
  const detail: string[] = [];
  for (const scenario of scenarios) detail.push(...(await runScenario(scenario)));
  process.stdout.write(
    `\nDelivery to clients vs raw engine (ratio: received t/s / raw t/s; tokens per stream; delays: token produced -> client holds it)\n${header}\n${detail.join('\n')}\n`,
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

function loadAverage(): string {
  return loadavg()
    .map((n) => n.toFixed(2))
    .join(' ');
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
