/**
 * The RKLLM engine's instances (engine.parallel) on the ABI twin, slowed to a fixed time per token
 * (`[slow:US]`): N runs at once on N instances against the same N runs on one instance (where they
 * take turns). The twin sleeps instead of computing, so the ratio shows what the engine adds (its
 * workers, IPC, scheduling), not what an NPU would gain: on a board, instances share the NPU's
 * cores and memory bandwidth (see docs/rkllm.md).
 */
import { RkllmEngine } from '../src/engine/rkllm/rkllm-engine.js';
import { createDefaultParam, type RunRequest } from '../src/engine/types.js';
import { TWIN_MODELS, buildTwin } from '../test/helpers/rkllm-twin.js';

export interface RkllmBenchOptions {
  /** Runs at once, and instances of the parallel engine. */
  runs: number;
  tokens: number;
  /** The twin's time per token, in microseconds. */
  tokenUs: number;
}

/** Wall time of `runs` runs started together on an engine of `instances` instances, in ms. */
async function burst(library: string, instances: number, options: RkllmBenchOptions): Promise<number> {
  const engine = await RkllmEngine.load(
    { library, layout: '1.3', instances },
    { ...createDefaultParam(), model_path: TWIN_MODELS.story, max_context_len: 1024 },
  );
  try {
    const request = (i: number): RunRequest => ({
      input: { role: 'user', enable_thinking: false, input_type: 0, prompt_input: `Story ${i} [slow:${options.tokenUs}]` },
      infer: { mode: 0, keep_history: 0, max_new_tokens: options.tokens },
    });
    const t0 = performance.now();
    await Promise.all(Array.from({ length: options.runs }, (_, i) => engine.run(request(i), () => 0)));
    return performance.now() - t0;
  } finally {
    await engine.dispose();
  }
}

export async function rkllmTable(options: RkllmBenchOptions): Promise<string> {
  const library = await buildTwin('1.3');
  const one = await burst(library, 1, options);
  const many = await burst(library, options.runs, options);
  const alone = options.tokens * (options.tokenUs / 1000);
  const rows = [
    ['1 instance, runs take turns', one.toFixed(0), (one / alone).toFixed(2), '1.00'],
    [`${options.runs} instances`, many.toFixed(0), (many / alone).toFixed(2), (one / many).toFixed(2)],
  ];
  const head = [`${options.runs} runs at once`, 'wall ms', 'x one run alone', 'speed-up'];
  const table = [head, head.map(() => '---'), ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
  const what = `${options.tokens} tokens each at ${options.tokenUs / 1000} ms per token: one run alone takes ${alone.toFixed(0)} ms of tokens`;
  return `\nRKLLM instances (engine.parallel) on the ABI twin 1.3, ${what}\n${table}\n`;
}
