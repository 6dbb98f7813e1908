/**
 * The binding against the ABI twin, for both struct layouts: every struct has the size and field
 * offsets the C compiler gives it, every field the engine writes reaches the runtime at the right
 * place (the twin echoes what it read), and every field the runtime writes is read back right.
 */
import { expect } from 'chai';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import { LAYOUT_VERSIONS, defineTypes, plausibleLayouts, type LayoutVersion } from '../../src/engine/rkllm/abi.js';
import { RkllmEngine } from '../../src/engine/rkllm/rkllm-engine.js';
import {
  LLMCallState,
  createDefaultParam,
  type LLMCallState as State,
  type RKLLMInput,
  type RKLLMInferParam,
  type RKLLMParam,
  type RKLLMResult,
} from '../../src/engine/types.js';
import { TWIN_MODELS, buildTwin } from '../helpers/rkllm-twin.js';

/** The twin's echo model: embeddings of 3 values, a vocabulary of 6 tokens. */
const EMBD = 3;

/** Values chosen so that every field differs and every float is exact in binary. */
function initParam(layout: LayoutVersion): RKLLMParam {
  return {
    ...createDefaultParam(),
    model_path: TWIN_MODELS.echo,
    max_context_len: 777,
    max_new_tokens: 55,
    top_k: 7,
    n_keep: 3,
    top_p: 0.625,
    temperature: 0.375,
    repeat_penalty: 1.125,
    frequency_penalty: 0.25,
    presence_penalty: -0.5,
    mirostat: 2,
    mirostat_tau: 4.5,
    mirostat_eta: 0.0625,
    skip_special_token: false,
    is_async: true,
    ...(layout === '1.2' ? { img_start: '<img>', img_end: '</img>', img_content: '<image_pad>' } : { ignore_eos_token: true }),
    extend_param: { base_domain_id: 9, embed_flash: 1, enabled_cpus_num: 3, enabled_cpus_mask: 0xf0, n_batch: 2, use_cross_attn: 1 },
  };
}

interface Echo {
  runtime: string;
  param: Record<string, unknown>;
  callback: Record<string, unknown>;
  userdata: number;
  input: Record<string, unknown>;
  infer: Record<string, unknown>;
  loras: unknown[];
  prompt_cache: string | null;
  chat_template: Record<string, unknown>;
  function_tools: Record<string, unknown>;
  cross_attn: Record<string, unknown> | null;
  last_clear_kv_cache: Record<string, unknown> | null;
}

/** Runs once and returns the echo, the last NORMAL result and the outcome. */
async function echoRun(engine: RkllmEngine, input: RKLLMInput, infer: Partial<RKLLMInferParam> = {}, owner?: string) {
  const results: Array<{ result: RKLLMResult; state: State }> = [];
  const request = { input, infer: { mode: 0 as const, keep_history: 0, ...infer }, ...(owner === undefined ? {} : { owner }) };
  const outcome = await engine.run(request, (result, state) => {
    results.push({ result, state });
    return 0;
  });
  const normal = results.filter((r) => r.state === LLMCallState.RKLLM_RUN_NORMAL).map((r) => r.result);
  expect(outcome.finish_reason, outcome.error).to.not.equal('error');
  return { echo: JSON.parse(normal.map((r) => r.text).join('')) as Echo, last: normal.at(-1)!, outcome };
}

const prompt = (text: string, extra: Partial<RKLLMInput> = {}): RKLLMInput => ({
  role: 'user',
  enable_thinking: false,
  input_type: 0,
  prompt_input: text,
  ...extra,
});

for (const layout of LAYOUT_VERSIONS) {
  describe(`RKLLM ${layout} binding against the ABI twin`, function () {
    this.timeout(60_000);
    let library: string;

    before(async () => {
      library = await buildTwin(layout);
    });

    it('lays out every struct as the C compiler does', () => {
      const compiled = JSON.parse(koffi.load(library).func('rkllm_twin_layout', 'const char *', [])() as string) as Record<
        string,
        Record<string, number>
      >;
      const { structs } = defineTypes(layout);
      const names = Object.keys(compiled).filter((name) => name !== 'api');
      expect(Object.keys(structs).sort()).to.deep.equal(names.sort());
      for (const name of names) {
        const { size, ...offsets } = compiled[name]!;
        const type = structs[name]!;
        expect(koffi.sizeof(type), `sizeof(${name})`).to.equal(size);
        for (const [field, offset] of Object.entries(offsets)) {
          // The anonymous union of RKLLMInput is the member "data" here.
          const member = name === 'RKLLMInput' && field === 'prompt_input' ? 'data' : field;
          expect(koffi.offsetof(type, member), `offsetof(${name}, ${field})`).to.equal(offset);
        }
        expect(Object.keys(type.members ?? {}).length, `fields of ${name}`).to.equal(Object.keys(offsets).length);
      }
    });

    it("tells the layout from the library's default parameters, returned by value", async () => {
      const bytes = koffi.load(library).func('rkllm_createDefaultParam', koffi.struct({ bytes: koffi.array('uint8_t', 256) }), [])() as {
        bytes: Uint8Array;
      };
      expect(plausibleLayouts(bytes.bytes)).to.deep.equal([layout]);
      const defaults = koffi.decode(bytes.bytes, defineTypes(layout).param) as RKLLMParam;
      expect(defaults).to.include({
        max_context_len: 512,
        max_new_tokens: -1,
        top_k: 40,
        n_keep: -1,
        skip_special_token: true,
        is_async: false,
      });
      expect(defaults.top_p).to.equal(Math.fround(0.9));
      expect(defaults.mirostat_tau).to.equal(5);
      expect(defaults.extend_param).to.include({ enabled_cpus_num: 4, enabled_cpus_mask: 0xf0, n_batch: 1 });
      const dirty = koffi
        .load(await buildTwin(layout, 'dirty-defaults'))
        .func('rkllm_createDefaultParam', koffi.struct({ bytes: koffi.array('uint8_t', 256) }), [])() as {
        bytes: Uint8Array;
      };
      expect(plausibleLayouts(dirty.bytes)).to.deep.equal([]);
    });

    describe('every field written, through the engine and its worker', () => {
      let engine: RkllmEngine;
      const cacheDir = mkdtempSync(join(tmpdir(), 'rkllm-twin-cache-'));

      before(async () => {
        engine = await RkllmEngine.load({ library, layout: 'auto' }, initParam(layout));
      });

      after(async () => {
        await engine.dispose();
      });

      it('RKLLMParam and the callback argument of rkllm_init', async () => {
        const { echo } = await echoRun(engine, prompt('param'));
        const { extend_param, img_start, img_end, img_content, ignore_eos_token, ...scalars } = initParam(layout);
        expect(echo.runtime.startsWith(layout)).to.equal(true);
        expect(echo.param).to.include(scalars);
        expect(echo.param.extend_param).to.deep.equal({ ...extend_param, reserved_nonzero_bytes: 0 });
        if (layout === '1.2') {
          expect(echo.param).to.include({ img_start, img_end, img_content });
          expect(echo.callback).to.deep.equal({ kind: 'function' });
        } else {
          expect(echo.param).to.include({ ignore_eos_token });
          expect(echo.param).not.to.have.any.keys('img_start', 'img_end', 'img_content');
          expect(echo.callback).to.deep.equal({
            kind: 'struct',
            result_userdata: 0,
            tokenizer_callback: false,
            tokenizer_userdata: 0,
            embed_callback: false,
            embed_userdata: 0,
          });
        }
        expect(echo.userdata).to.be.greaterThan(0);
      });

      it('RKLLMInput (PROMPT) and RKLLMInferParam, with lora, prompt cache and sampling parameters', async () => {
        const cache = join(cacheDir, 'saved.cache');
        await engine.loadLora({ lora_adapter_path: TWIN_MODELS.story, lora_adapter_name: 'style', scale: 0.75 });
        const sampling = layout === '1.2' ? { top_k: 7, top_p: 0.625 } : { top_k: 3, top_p: 0.5, temperature: 0.125, mirostat_eta: 0.25 };
        const { echo } = await echoRun(engine, prompt('héllo ☃', { role: 'tool', enable_thinking: true }), {
          mode: 0,
          lora_params: { lora_adapter_name: 'style' },
          prompt_cache_params: { save_prompt_cache: 1, prompt_cache_path: cache },
          keep_history: 1,
          max_new_tokens: 9,
          sampling_params: sampling,
        });
        expect(echo.input).to.deep.equal({ role: 'tool', enable_thinking: true, input_type: 0, prompt_input: 'héllo ☃' });
        const common = {
          mode: 0,
          lora_params: { lora_adapter_name: 'style' },
          prompt_cache_params: { save_prompt_cache: 1, prompt_cache_path: cache },
          keep_history: 1,
        };
        if (layout === '1.2') {
          expect(echo.infer).to.deep.equal(common);
        } else {
          const { top_k, top_p, temperature, repeat_penalty, frequency_penalty, presence_penalty, mirostat, mirostat_tau, mirostat_eta } =
            initParam(layout);
          expect(echo.infer).to.deep.equal({
            ...common,
            sampling_params: {
              ...{ top_k, top_p, temperature, repeat_penalty, frequency_penalty, presence_penalty, mirostat, mirostat_tau, mirostat_eta },
              ...sampling,
            },
            max_new_tokens: 9,
          });
        }
        expect(echo.loras).to.deep.equal([{ lora_adapter_path: TWIN_MODELS.story, lora_adapter_name: 'style', scale: 0.75 }]);
        await engine.loadPromptCache(cache);
        expect((await echoRun(engine, prompt('cached'))).echo.prompt_cache).to.equal(cache);
        await engine.releasePromptCache();
        expect((await echoRun(engine, prompt('released'))).echo.prompt_cache).to.equal(null);
      });

      it('RKLLMInput with TOKEN and EMBED input', async () => {
        const tokens = await echoRun(engine, {
          role: 'user',
          enable_thinking: false,
          input_type: 1,
          token_input: { input_ids: [5, 0, 4] },
        });
        expect(tokens.echo.input).to.deep.equal({
          role: 'user',
          enable_thinking: false,
          input_type: 1,
          token_input: { input_ids: [5, 0, 4], n_tokens: 3 },
        });
        const embed = [0.5, -1, 2, 0.25, 8, -0.125];
        const embedded = await echoRun(engine, {
          role: 'user',
          enable_thinking: false,
          input_type: 2,
          embed_input: { embed, n_tokens: 2 },
        });
        expect(embedded.echo.input).to.deep.equal({
          role: 'user',
          enable_thinking: false,
          input_type: 2,
          embed_input: { embed, n_tokens: 2 },
        });
      });

      it(`RKLLMInput with MULTIMODAL input (${layout === '1.2' ? 'flat image fields' : 'nested image and video'})`, async () => {
        const image_embed = [1, 2, 3, 4, 5, 6];
        const multimodal =
          layout === '1.2'
            ? { prompt: '<image>what is it?', image_embed, n_image_tokens: 2, n_image: 1, image_width: 448, image_height: 336 }
            : {
                prompt: '<image>what is it?',
                image: {
                  image_embed,
                  n_image_tokens: 2,
                  n_image: 1,
                  image_start: '<img>',
                  image_end: '</img>',
                  image_content: '<pad>',
                  image_width: 448,
                  image_height: 336,
                },
                video: {
                  video_embed: [6, 5, 4, 3, 2, 1],
                  n_frame_tokens: 1,
                  n_frame_per_video: 2,
                  n_video: 1,
                  video_start: '<vid>',
                  video_end: '</vid>',
                  video_content: '<frame>',
                  frame_width: 64,
                  frame_height: 48,
                },
              };
        const { echo } = await echoRun(engine, { role: 'user', enable_thinking: false, input_type: 3, multimodal_input: multimodal });
        expect(echo.input).to.deep.equal({ role: 'user', enable_thinking: false, input_type: 3, multimodal_input: multimodal });
      });

      it('chat template, function tools, cross-attention and KV cache positions', async () => {
        await engine.setChatTemplate({ system_prompt: 'You are a twin.', prompt_prefix: '<u>', prompt_postfix: '</u><a>' });
        await engine.setFunctionTools({ system_prompt: 'Use tools.', tools: '[{"name":"add"}]', tool_response_str: 'tool_response' });
        const crossAttn = {
          encoder_k_cache: [1, 2, 3, 4, 5, 6],
          encoder_v_cache: [-1, -2, -3, -4, -5, -6],
          encoder_mask: [0, -0.5],
          encoder_pos: [7, 8],
          num_tokens: 2,
        };
        await engine.setCrossAttnParams(crossAttn);
        await engine.clearKvCache({ keep_system_prompt: true, start_pos: [1], end_pos: [2] });
        const { echo } = await echoRun(engine, prompt('configured'));
        expect(echo.chat_template).to.deep.equal({ system_prompt: 'You are a twin.', prompt_prefix: '<u>', prompt_postfix: '</u><a>' });
        expect(echo.function_tools).to.deep.equal({
          system_prompt: 'Use tools.',
          tools: '[{"name":"add"}]',
          tool_response_str: 'tool_response',
        });
        expect(echo.cross_attn).to.deep.equal(crossAttn);
        // One position per batch slot (n_batch 2): the second slot is padded with an empty range.
        expect(echo.last_clear_kv_cache).to.deep.equal({ keep_system_prompt: 1, start_pos: [1, 0], end_pos: [2, 0] });
      });

      it("keep_history is its owner's: another owner's run clears the runtime's one history first, and sees none of it", async () => {
        await engine.clearKvCache({ keep_system_prompt: false });
        await echoRun(engine, prompt('from A'), { keep_history: 1 }, 'key_a');
        const ofA = (await engine.getKvCacheSize('key_a')).cache_sizes;
        expect(ofA[0]).to.be.greaterThan(0);
        expect((await engine.getKvCacheSize()).cache_sizes).to.deep.equal(ofA);
        expect((await engine.getKvCacheSize('key_b')).cache_sizes).to.deep.equal(ofA.map(() => 0));
        const again = await echoRun(engine, prompt('A again'), { keep_history: 1 }, 'key_a');
        expect(again.echo.last_clear_kv_cache).to.include({ keep_system_prompt: 0 });
        const ofB = await echoRun(engine, prompt('from B'), { keep_history: 1 }, 'key_b');
        expect(ofB.echo.last_clear_kv_cache).to.include({ keep_system_prompt: 1 });
        expect((await engine.getKvCacheSize('key_a')).cache_sizes[0]).to.equal(0);
      });

      it('RKLLMResult: text, token id, perf, hidden states and logits are read at their offsets; kv cache sizes too', async () => {
        const run = await echoRun(engine, prompt('perf'), { keep_history: 1 });
        const perf = run.outcome.perf;
        expect(perf.generate_tokens).to.equal(1);
        expect(perf.prefill_tokens).to.be.greaterThan(0);
        expect(perf.prefill_time_ms).to.equal(1.25 * perf.prefill_tokens);
        expect(perf.generate_time_ms).to.equal(0.5);
        expect(perf.memory_usage_mb).to.equal(42.5);
        expect(run.last.token_id).to.equal(3);
        const { cache_sizes } = await engine.getKvCacheSize();
        expect(cache_sizes).to.have.lengthOf(2);
        expect(cache_sizes[1]).to.equal(0);
        expect(cache_sizes[0]).to.be.greaterThan(perf.prefill_tokens);

        const hidden = await echoRun(engine, prompt('hidden'), { mode: 1 });
        const layer = hidden.last.last_hidden_layer!;
        expect(layer).to.include({ embd_size: EMBD, num_tokens: 4 });
        expect(layer.hidden_states).to.deep.equal([0, 0.125, 0.25, 1, 1.125, 1.25, 2, 2.125, 2.25, 3, 3.125, 3.25]);
        expect(hidden.echo.infer).to.include({ mode: 1 });

        const logits = await echoRun(engine, prompt('logits'), { mode: 2 });
        expect(logits.last.logits).to.deep.equal({
          logits: [-1, -0.5, 0, 0.5, 1, 1.5],
          vocab_size: 6,
          num_tokens: 1,
          normalization: 'none',
        });
      });
    });
  });
}
