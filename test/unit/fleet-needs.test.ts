// What a run needs from the instance that executes it, and the queue (class) it waits in.
import { expect } from 'chai';
import { classOf, needsOf } from '../../src/streams/fleet/needs.js';

const run = (infer: Record<string, unknown> = {}, input: Record<string, unknown> = {}) => ({
  input: { role: 'user', enable_thinking: false, input_type: 0 as const, prompt_input: 'a', ...input },
  infer: { mode: 0 as const, keep_history: 0, ...infer },
});

describe('fleet run needs', () => {
  it('names the model, the LoRA adapter and the features a run uses', () => {
    const needs = needsOf(run({ lora_params: { lora_adapter_name: 'tone' }, json_schema: {}, sampling_params: { seed: 7 } }), 'h1', 'i1');
    expect(needs).to.deep.equal({ model: 'h1', lora: 'tone', features: ['infer_generate', 'input_prompt', 'json_schema', 'seed'] });
    expect(needsOf(run({ mode: 2 }, { input_type: 1 }), 'h1', 'i1').features).to.deep.equal(['infer_logits', 'input_token']);
    expect(needsOf(run({}, { images: [new Uint8Array([1])] }), 'h1', 'i1').features).to.deep.equal([
      'images',
      'infer_generate',
      'input_prompt',
    ]);
    expect(needsOf(run({}, { images: [] }), 'h1', 'i1').features).to.not.include('images');
  });

  it('pins to the receiving instance a run that continues or saves state kept there', () => {
    expect(needsOf(run({ keep_history: 1 }), 'h1', 'i1').pin).to.equal('i1');
    expect(needsOf(run({ prompt_cache_params: { save_prompt_cache: 1, prompt_cache_path: 'c' } }), 'h1', 'i1').pin).to.equal('i1');
    expect(needsOf(run(), 'h1', 'i1').pin).to.equal(undefined);
  });

  it('puts runs with the same needs in one class, and runs with other needs in others', () => {
    const base = classOf(needsOf(run(), 'h1', 'i1'));
    expect(classOf(needsOf(run({ max_new_tokens: 5 }), 'h1', 'i2'))).to.equal(base);
    expect(classOf(needsOf(run(), 'h2', 'i1'))).to.not.equal(base);
    expect(classOf(needsOf(run({ lora_params: { lora_adapter_name: 'x' } }), 'h1', 'i1'))).to.not.equal(base);
    expect(classOf(needsOf(run({ keep_history: 1 }), 'h1', 'i1'))).to.not.equal(base);
  });
});
