/**
 * Bad input to the RKLLM engine: a missing or wrong library, a missing symbol, a model the runtime
 * refuses, a struct layout that does not match the library, and runs the runtime refuses. Each
 * gets a clear error at rkllm_init or in the run; nothing hangs and nothing takes the test
 * process down.
 */
import { expect } from 'chai';
import { ServerError } from '../../src/errors.js';
import type { LayoutVersion } from '../../src/engine/rkllm/abi.js';
import type { LayoutSetting } from '../../src/engine/rkllm/protocol.js';
import { RkllmEngine } from '../../src/engine/rkllm/rkllm-engine.js';
import { createDefaultParam, type RKLLMInput, type RunRequest } from '../../src/engine/types.js';
import { TWIN_MODELS, buildTwin, type TwinVariant } from '../helpers/rkllm-twin.js';

async function initError(library: string, layout: LayoutSetting, model: string = TWIN_MODELS.story): Promise<ServerError> {
  const error = await RkllmEngine.load({ library, layout }, { ...createDefaultParam(), model_path: model }).then(
    async (engine) => {
      await engine.dispose();
      throw new Error('rkllm_init succeeded');
    },
    (err: unknown) => err,
  );
  expect(error).to.be.instanceOf(ServerError);
  return error as ServerError;
}

/** The error `promise` rejects with; fails the test if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  const outcome = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(outcome).to.be.instanceOf(Error);
  return outcome as Error;
}

const twin = (layout: LayoutVersion, variant?: TwinVariant): Promise<string> => buildTwin(layout, variant);

describe('RKLLM engine: bad input', function () {
  this.timeout(60_000);

  describe('at rkllm_init', () => {
    it('a library that does not exist', async () => {
      const error = await initError('/nonexistent/librkllmrt.so', 'auto');
      expect(error.message).to.match(
        /could not start: Cannot load the RKLLM runtime library \/nonexistent\/librkllmrt\.so: .*No such file/,
      );
    });

    it('a file that is not a library', async () => {
      const error = await initError(TWIN_MODELS.story, 'auto');
      expect(error.message).to.match(/Cannot load the RKLLM runtime library .*story\.rkllm/);
    });

    it('a library that is not the runtime: every missing function is named', async () => {
      const error = await initError('libc.so.6', 'auto');
      expect(error.message).to.match(/libc\.so\.6 does not export rkllm_createDefaultParam, rkllm_init, .*rkllm_set_cross_attn_params/);
    });

    it('a runtime without one function (rkllm_set_function_tools)', async () => {
      const error = await initError(await twin('1.3', 'missing-symbol'), '1.3');
      expect(error.message).to.match(/does not export rkllm_set_function_tools: it is not an RKLLM runtime/);
    });

    it('a model file the runtime refuses: its code and its reason', async () => {
      const error = await initError(await twin('1.2'), 'auto', TWIN_MODELS.notAModel);
      expect(error.message).to.match(
        /rkllm_init failed with code -1: E rkllm: .*not-a-model\.rkllm is not an RKLLM model file \(bad magic\)/,
      );
      expect(error.data).to.include({ engine: 'rkllm', function: 'rkllm_init', code: -1 });
    });

    for (const [library, setting] of [
      ['1.3', '1.2'],
      ['1.2', '1.3'],
    ] as const) {
      it(`a ${library} library with the runtime version set to ${setting} is refused before rkllm_init`, async () => {
        const error = await initError(await twin(library), setting);
        expect(error.message).to.match(
          new RegExp(`default parameters in the RKLLM ${library.replace('.', '\\.')} layout, but the runtime version is set to ${setting}`),
        );
      });
    }

    it('a library whose defaults do not tell its layout needs the setting', async () => {
      const error = await initError(await twin('1.3', 'dirty-defaults'), 'auto');
      expect(error.message).to.match(
        /Cannot tell whether .* uses the RKLLM 1\.2 or 1\.3 struct layout.*set engine\.rkllm\.runtime_version/,
      );
    });

    it('... and with a wrong setting, the version the runtime prints while loading catches the mismatch', async () => {
      const error = await initError(await twin('1.3', 'dirty-defaults'), '1.2');
      expect(error.message).to.match(/says it is RKLLM runtime 1\.3, but the 1\.2 struct layout is in use/);
      expect(error.data).to.include({ reason: 'layout_mismatch' });
    });

    it('fields the layout does not have are refused, not dropped', async () => {
      const error = await RkllmEngine.load(
        { library: await twin('1.3'), layout: 'auto' },
        { ...createDefaultParam(), model_path: TWIN_MODELS.story, img_start: '<img>' },
      ).catch((err: unknown) => err);
      expect(error).to.be.instanceOf(ServerError).with.property('name', 'INVALID_PARAMS');
      expect((error as ServerError).message).to.match(/"img_start" is not a field of RKLLMParam in runtime 1\.3/);
    });
  });

  describe('in runs', () => {
    let engine: RkllmEngine;

    before(async () => {
      engine = await RkllmEngine.load(
        { library: await twin('1.2'), layout: 'auto' },
        { ...createDefaultParam(), model_path: TWIN_MODELS.story, max_context_len: 256 },
      );
    });

    after(async () => {
      await engine.dispose();
    });

    const run = (input: Partial<RKLLMInput>, infer: Partial<RunRequest['infer']> = {}): RunRequest => ({
      input: { role: 'user', enable_thinking: false, input_type: 0, prompt_input: 'hello', ...input },
      infer: { mode: 0, keep_history: 0, max_new_tokens: 5, ...infer },
    });

    it('the runtime refuses a token outside its vocabulary: the run ends with its code and reason', async () => {
      const outcome = await engine.run(run({ input_type: 1, token_input: { input_ids: [1, 99999] } }), () => 0);
      expect(outcome.finish_reason).to.equal('error');
      expect(outcome.error).to.equal('rkllm_run failed with code -1: E rkllm: token id 99999 is outside the vocabulary (512)');
    });

    it('a LoRA adapter that is not loaded', async () => {
      const outcome = await engine.run(run({}, { lora_params: { lora_adapter_name: 'nope' } }), () => 0);
      expect(outcome.error).to.match(/lora adapter nope is not loaded/);
    });

    it('RKLLM_RUN_ERROR from the runtime ends the run with an error after its tokens', async () => {
      const texts: string[] = [];
      const outcome = await engine.run(run({ prompt_input: '[error:3]' }), (result) => void texts.push(result.text));
      expect(outcome.finish_reason).to.equal('error');
      expect(outcome.error).to.match(/reported RKLLM_RUN_ERROR: E rkllm: simulated runtime error after 3 tokens/);
      expect(texts.filter(Boolean)).to.have.lengthOf(3);
    });

    it('what the runtime would read past an array is refused before it gets there', async () => {
      const embed = run({ input_type: 2, embed_input: { embed: [1, 2, 3] } });
      expect((await rejection(engine.validate(embed))).message).to.match(/"embed_input.n_tokens" is required/);
      const ragged = run({ input_type: 2, embed_input: { embed: [1, 2, 3], n_tokens: 2 } });
      expect((await rejection(engine.validate(ragged))).message).to.match(/a multiple of n_tokens \(2\); got 3/);
      const image = run({ input_type: 3, multimodal_input: { prompt: 'x', image_embed: [1], n_image: 2, n_image_tokens: 1 } });
      expect((await rejection(engine.validate(image))).message).to.match(
        /"multimodal_input.image_embed" must be an array of numbers, a multiple of 2 rows long/,
      );
      const typo = run({ input_type: 3, multimodal_input: { prompt: 'x', image: {} } });
      expect((await rejection(engine.validate(typo))).message).to.match(/unknown field "multimodal_input.image"/);
      expect((await rejection(engine.clearKvCache({ keep_system_prompt: false, start_pos: [0, 1], end_pos: [1, 2] }))).message).to.match(
        /at most n_batch = 1/,
      );
      expect(
        (
          await rejection(
            engine.setCrossAttnParams({
              encoder_k_cache: [1, 2],
              encoder_v_cache: [1],
              encoder_mask: [0],
              encoder_pos: [0],
              num_tokens: 1,
            }),
          )
        ).message,
      ).to.match(/must be equally long/);
    });

    it('runtime 1.2 cannot change sampling per run: a different value is refused, the same one accepted', async () => {
      expect((await rejection(engine.validate(run({}, { sampling_params: { top_k: 3 } })))).message).to.match(
        /runtime 1\.2 has no per-run sampling parameters; "top_k" is 3 here but 40 at rkllm_init/,
      );
      await engine.validate(run({}, { sampling_params: { top_k: 40, temperature: 0.8 } }));
      expect((await rejection(engine.validate(run({}, { sampling_params: { seed: 7 } })))).message).to.match(
        /seed is not supported by the rkllm engine/,
      );
    });

    it('a runtime call refused with a non-zero code answers ENGINE_ERROR with the code', async () => {
      const error = await engine.loadPromptCache(TWIN_MODELS.story).catch((err: unknown) => err);
      expect(error).to.be.instanceOf(ServerError).with.property('name', 'ENGINE_ERROR');
      expect((error as ServerError).data).to.include({ function: 'rkllm_load_prompt_cache', code: -1 });
      expect((error as ServerError).message).to.match(/is not a prompt cache/);
    });
  });
});
