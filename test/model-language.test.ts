/**
 * Issue 15, part 1: the built-in model writes something that looks like language. Three prompts,
 * 200 new tokens each, through the real llama.cpp engine with the default sampling parameters.
 */
import { expect } from 'chai';
import { LlamaEngine } from '../src/engine/llama/engine.js';
import { createDefaultParam, LLMCallState, type RunRequest } from '../src/engine/types.js';
import { ensureBuiltinModel } from '../src/gguf/builtin.js';
import { paragraphs, readCorpusFiles } from '../src/gguf/builtin/corpus.js';

const PROMPTS = ['Alice was beginning', 'The Fox said', 'Four score and seven'];
const NEW_TOKENS = 200;

/** Words are runs of letters (with inner apostrophes), compared in lower case. */
function words(text: string): string[] {
  return text.toLowerCase().match(/[a-z]+(?:'[a-z]+)*/g) ?? [];
}

function request(prompt: string): RunRequest {
  return {
    input: { role: 'user', enable_thinking: false, input_type: 0, prompt_input: prompt },
    infer: { mode: 0, keep_history: 0, max_new_tokens: NEW_TOKENS },
  };
}

describe('builtin tiny model: language with the default sampling', function () {
  this.timeout(120_000);
  let engine: LlamaEngine;

  before(async function () {
    engine = await LlamaEngine.load(
      { threads: 1, slots: 1 },
      { ...createDefaultParam(), model_path: await ensureBuiltinModel('tiny'), max_context_len: 1024 },
    );
  });

  after(async function () {
    await engine?.dispose();
  });

  it('writes corpus words (>= 90%) and no word is more than 20% of them', async function () {
    const defaults = createDefaultParam();
    expect([defaults.top_k, defaults.top_p, defaults.temperature, defaults.repeat_penalty]).to.deep.equal([40, 0.9, 0.8, 1.1]);
    const corpus = new Set(readCorpusFiles().flatMap((file) => paragraphs(file.text).flatMap(words)));
    const generated: string[] = [];
    const texts: string[] = [];
    for (const prompt of PROMPTS) {
      const pieces: string[] = [];
      await engine.run(request(prompt), (result, state) => {
        if (state === LLMCallState.RKLLM_RUN_NORMAL) pieces.push(result.text);
        return 0;
      });
      texts.push(pieces.join(''));
      generated.push(...words(pieces.join('')));
    }
    const counts = new Map<string, number>();
    for (const word of generated) counts.set(word, (counts.get(word) ?? 0) + 1);
    const [top, topCount] = [...counts].sort((a, b) => b[1] - a[1])[0] ?? ['', 0];
    const inCorpus = generated.filter((word) => corpus.has(word)).length / generated.length;
    const share = topCount / generated.length;
    const summary = `${generated.length} words, ${(100 * inCorpus).toFixed(1)}% corpus words, "${top}" is ${(100 * share).toFixed(1)}%`;
    console.log(`      ${summary}\n      ${texts.map((text) => JSON.stringify(text.slice(0, 160))).join('\n      ')}`);
    expect(generated.length, summary).to.be.above(100);
    expect(inCorpus, summary).to.be.at.least(0.9);
    expect(share, summary).to.be.at.most(0.2);
  });
});
