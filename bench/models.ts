/**
 * Models by name (docs/models.md), measured through the OpenAI face with the official `openai`
 * client, against a server whose default model is the tiny one and whose models folder holds the
 * bench model twice (`bench` and `bench2`, links to the same 228 MiB file), with max_loaded 1:
 *
 * - cold start: time to the first token of a streamed completion naming `bench` while it is not
 *   loaded (the tiny model is unloaded, `bench` loaded, then the prompt runs), against the same
 *   request with `bench` already loaded;
 * - switching: alternating requests to `bench` and `bench2` (each one unloads the other and loads
 *   its own), against the same requests all to `bench`.
 */
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { ensureBuiltinModel } from '../src/gguf/builtin.js';
import { benchServer, PROMPT } from './measure.js';

export interface ModelBenchOptions {
  threads: number;
  /** Cold and warm starts measured, each. */
  rounds: number;
  /** Requests of each switching run. */
  requests: number;
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const ms = (n: number): string => n.toFixed(0);

/** Milliseconds to the first streamed token of a short greedy completion of `model`, and to its end. */
async function timed(openai: OpenAI, model: string, tokens: number): Promise<{ first: number; total: number }> {
  const started = performance.now();
  let first = Number.NaN;
  const stream = await openai.completions.create({ model, prompt: PROMPT, max_tokens: tokens, temperature: 0, stream: true });
  for await (const chunk of stream) if (Number.isNaN(first) && (chunk.choices[0]?.text ?? '') !== '') first = performance.now() - started;
  return { first, total: performance.now() - started };
}

/** The models table of `npm run bench`, as text. */
export async function modelTable(options: ModelBenchOptions): Promise<string> {
  const tiny = await ensureBuiltinModel('tiny');
  const bench = await ensureBuiltinModel('bench');
  const dir = await mkdtemp(join(tmpdir(), 'rkllm-bench-models-'));
  try {
    await symlink(bench, join(dir, 'bench.gguf'));
    await symlink(bench, join(dir, 'bench2.gguf'));
    const server = await benchServer(tiny, options.threads, 1, 64, { models: { dir, max_loaded: 1, keep_alive: '-1' } });
    try {
      const base = `http://${server.addresses.http}`;
      const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 600_000 });
      const unload = (model: string) =>
        fetch(base, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'models_unload', params: { model } }),
        }).then((r) => r.json());
      process.stderr.write('models: cold and warm starts\n');
      const cold: number[] = [];
      const warm: number[] = [];
      await timed(openai, 'bench', 4); // the file in the page cache, as for every cold start after it
      for (let round = 0; round < options.rounds; round++) {
        await unload('bench');
        await timed(openai, 'rkllm-tiny', 1); // the default model is loaded again: bench's load must first unload it
        cold.push((await timed(openai, 'bench', 8)).first);
        warm.push((await timed(openai, 'bench', 8)).first);
      }
      process.stderr.write('models: switching\n');
      const run = async (names: string[]): Promise<number> => {
        const started = performance.now();
        for (let i = 0; i < options.requests; i++) await timed(openai, names[i % names.length]!, 8);
        return (performance.now() - started) / options.requests;
      };
      await timed(openai, 'bench', 1);
      const same = await run(['bench']);
      const alternating = await run(['bench2', 'bench']);
      const rows = [
        ['bench model, first token, cold (unload tiny, load bench, run)', `${ms(median(cold))} (${cold.map(ms).join(', ')})`],
        ['bench model, first token, already loaded', `${ms(median(warm))} (${warm.map(ms).join(', ')})`],
        [`${options.requests} requests of 8 tokens, all to one model, per request`, ms(same)],
        [`${options.requests} requests alternating between two models (max_loaded 1), per request`, ms(alternating)],
        ['switching cost per request (alternating - one model)', ms(alternating - same)],
      ];
      const table = [['figure', 'ms'], ['---', '---'], ...rows].map((cells) => `| ${cells.join(' | ')} |`);
      return `\nModels by name (bench model, ${options.threads} thread(s), OpenAI client, streamed completions)\n${table.join('\n')}\n`;
    } finally {
      await server.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
