/**
 * Images through the RKLLM engine, on both twins (RKNN's for the encoder, RKLLM's echo model for
 * rkllm_run) and both layouts: the encoder's embeddings reach rkllm_run unchanged through
 * `input.images`, with the family's tags and the encode time; an engine without an encoder, and
 * llama.cpp, refuse images; a width that differs is a start error; an encoder crash fails one run.
 */
import { expect } from 'chai';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import sharp from 'sharp';
import { LAYOUT_VERSIONS, type LayoutVersion } from '../../src/engine/rkllm/abi.js';
import { RkllmEngine } from '../../src/engine/rkllm/rkllm-engine.js';
import { IMAGE_TAGS, encoderFor, imageTags, type VisionOptions } from '../../src/engine/rkllm/vision.js';
import { LlamaEngine } from '../../src/engine/llama/engine.js';
import { DEFAULT_IMAGE_LIMITS } from '../../src/engine/rknn/image.js';
import {
  LLMCallState,
  createDefaultParam,
  type Engine,
  type RKLLMInput,
  type RKLLMPerfStat,
  type RunOutcome,
} from '../../src/engine/types.js';
import { engineKind, startParam } from '../../src/engine/start.js';
import { ensureBuiltinModel } from '../../src/gguf/builtin.js';
import { engineOptions, models } from '../../src/server-options.js';
import { resolveSettings } from '../../src/settings-sources.js';
import { TWIN_MODELS, buildTwin } from '../helpers/rkllm-twin.js';
import { buildRknnTwin, twinEmbeddings, twinModel } from '../helpers/rknn-twin.js';
import { refusal } from '../helpers/thrown.js';

/** The RKLLM twin's echo model takes embeddings 3 wide. */
const ECHO_EMBD = 3;

function pattern(width: number, height: number, seed = 11): Uint8Array {
  return new Uint8Array(width * height * 3).map((_, i) => (i * 37 + seed) % 256);
}

function png(rgb: Uint8Array, width: number, height: number): Promise<Buffer> {
  return sharp(rgb, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

function visionOptions(lib: string, encoder: string | null, model: string | null, more: Partial<VisionOptions> = {}): VisionOptions {
  return { encoder, model, lib, coreMask: 'auto', family: 'qwen2-vl', limits: DEFAULT_IMAGE_LIMITS, ...more };
}

interface Echo {
  param: Record<string, unknown>;
  input: { role: string; input_type: number; multimodal_input: Record<string, unknown> };
}

async function run(engine: Engine, input: RKLLMInput): Promise<{ outcome: RunOutcome; echo: Echo | undefined; perfs: RKLLMPerfStat[] }> {
  let text = '';
  const perfs: RKLLMPerfStat[] = [];
  const request = { input, infer: { mode: 0 as const, keep_history: 0 } };
  await engine.validate(request);
  const outcome = await engine.run(request, (result, state) => {
    if (state === LLMCallState.RKLLM_RUN_NORMAL) text += result.text;
    perfs.push(result.perf);
    return 0;
  });
  return { outcome, echo: text ? (JSON.parse(text) as Echo) : undefined, perfs };
}

const prompt = (text: string, images: Uint8Array[]): RKLLMInput => ({
  role: 'user',
  enable_thinking: false,
  input_type: 0,
  prompt_input: text,
  images,
});

for (const layout of LAYOUT_VERSIONS) {
  describe(`images into rkllm_run through the engine (RKLLM ${layout} twin, RKNN twin)`, function () {
    this.timeout(120_000);
    let rknnLib: string;
    let rkllmLib: string;
    let engine: RkllmEngine;
    const load = async (layoutOf: LayoutVersion, vision: VisionOptions | undefined, model = TWIN_MODELS.echo): Promise<RkllmEngine> =>
      RkllmEngine.load(
        { library: rkllmLib, layout: layoutOf, ...(vision ? { vision } : {}) },
        { ...createDefaultParam(), model_path: model },
      );

    before(async () => {
      [rknnLib, rkllmLib] = await Promise.all([buildRknnTwin(), buildTwin(layout)]);
      const encoder = twinModel({ height: 4, width: 4, tokens: 4, embed: ECHO_EMBD });
      engine = await load(layout, visionOptions(rknnLib, encoder, TWIN_MODELS.echo));
    });

    after(() => engine?.dispose());

    it('gives rkllm_run the encoder embeddings of the images unchanged, with the tags, the prompt and the encode time', async () => {
      expect(engine.supports('images')).to.equal(true);
      const [a, b] = [pattern(4, 4), pattern(4, 4, 99)];
      const { outcome, echo, perfs } = await run(engine, prompt('Compare <image> and <image>.', [await png(a, 4, 4), await png(b, 4, 4)]));
      expect(outcome.finish_reason, outcome.error).to.equal('stop');
      expect(echo!.input.input_type).to.equal(3);
      const m = echo!.input.multimodal_input;
      const image = layout === '1.2' ? m : (m.image as Record<string, unknown>);
      expect(m.prompt).to.equal('Compare <image> and <image>.');
      expect(image.image_embed).to.deep.equal([...twinEmbeddings(a, 4, ECHO_EMBD), ...twinEmbeddings(b, 4, ECHO_EMBD)]);
      expect(image).to.include({ n_image: 2, n_image_tokens: 4, image_width: 4, image_height: 4 });
      const tags = IMAGE_TAGS['qwen2-vl'];
      if (layout === '1.2') expect(echo!.param).to.include(tags);
      else {
        expect(image).to.include({ image_start: tags.img_start, image_end: tags.img_end, image_content: tags.img_content });
        expect(m.video).to.include({ n_video: 0 });
      }
      expect(outcome.perf.image_encode_ms).to.be.greaterThan(0);
      expect(perfs.length).to.be.greaterThan(0);
      for (const perf of perfs) expect(perf.image_encode_ms).to.equal(outcome.perf.image_encode_ms);
    });

    it('puts one <image> before a prompt without one, from messages and from a MULTIMODAL prompt', async () => {
      const bytes = await png(pattern(4, 4), 4, 4);
      const fromMessages = await run(engine, {
        role: 'user',
        enable_thinking: false,
        input_type: 0,
        messages: [{ role: 'user', content: 'What is in the image?' }],
        images: [bytes],
      });
      expect(fromMessages.outcome.finish_reason, fromMessages.outcome.error).to.equal('stop');
      expect(fromMessages.echo!.input.multimodal_input.prompt).to.match(/^<image>.*What is in the image\?/s);
      const multimodal = await run(engine, {
        role: 'user',
        enable_thinking: false,
        input_type: 3,
        multimodal_input: { prompt: 'Describe it.' },
        images: [bytes],
      });
      expect(multimodal.echo!.input.multimodal_input.prompt).to.equal('<image>Describe it.');
      const miscounted = await refusal(engine.validate({ input: prompt('<image><image>x', [bytes]), infer: { mode: 0, keep_history: 0 } }));
      expect(miscounted.name).to.equal('INVALID_PARAMS');
    });

    it('refuses a bad image in validate, before any run: unreadable, too many pixels, too many bytes, with image_embed', async () => {
      const infer = { mode: 0 as const, keep_history: 0 };
      const broken = await refusal(engine.validate({ input: prompt('x', [Uint8Array.from([1, 2, 3, 4])]), infer }));
      expect([broken.name, (broken.data as { reason: string }).reason]).to.deep.equal(['INVALID_PARAMS', 'image_unreadable']);
      const small = await load(
        layout,
        visionOptions(rknnLib, twinModel({ height: 4, width: 4, tokens: 4, embed: 3 }), TWIN_MODELS.echo, {
          limits: { maxBytes: 100_000, maxPixels: 100 },
        }),
      );
      try {
        const big = await png(pattern(20, 20), 20, 20);
        const pixels = await refusal(small.validate({ input: prompt('x', [big]), infer }));
        expect((pixels.data as { reason: string }).reason).to.equal('image_too_many_pixels');
        const bytes = await refusal(small.validate({ input: prompt('x', [new Uint8Array(100_001)]), infer }));
        expect((bytes.data as { reason: string }).reason).to.equal('image_too_large');
      } finally {
        await small.dispose();
      }
      const both = await refusal(
        engine.validate({
          input: {
            role: 'user',
            enable_thinking: false,
            input_type: 3,
            multimodal_input:
              layout === '1.2'
                ? { prompt: '<image>', image_embed: [1, 2, 3], n_image: 1, n_image_tokens: 1 }
                : { prompt: '<image>', image: { image_embed: [1, 2, 3], n_image: 1, n_image_tokens: 1 } },
            images: [await png(pattern(4, 4), 4, 4)],
          },
          infer,
        }),
      );
      expect(both.message).to.include('not both');
    });

    it('contains a crash of the encoder: that run fails with the reason, the next one works', async () => {
      const deadly = pattern(4, 4);
      deadly.set([0xde, 0xad, 0xbe, 0xef]);
      const crashed = await run(engine, prompt('x', [await png(deadly, 4, 4)]));
      expect(crashed.outcome.finish_reason).to.equal('error');
      expect(crashed.outcome.error).to.match(/RKNN vision encoder process was killed by SIGSEGV.*restarts for the next image/);
      const good = pattern(4, 4, 5);
      const after = await run(engine, prompt('x', [await png(good, 4, 4)]));
      expect(after.outcome.finish_reason, after.outcome.error).to.equal('stop');
      const m = after.echo!.input.multimodal_input;
      expect((layout === '1.2' ? m : (m.image as Record<string, unknown>)).image_embed).to.deep.equal([
        ...twinEmbeddings(good, 4, ECHO_EMBD),
      ]);
    });

    it('keeps raw multimodal_input with image_embed as it was', async () => {
      const fields = { image_embed: [1, 2, 3], n_image_tokens: 1, n_image: 1, image_width: 1, image_height: 1 };
      const multimodal = layout === '1.2' ? { prompt: '<image>hi', ...fields } : { prompt: '<image>hi', image: fields };
      const { outcome, echo } = await run(engine, { role: 'user', enable_thinking: false, input_type: 3, multimodal_input: multimodal });
      expect(outcome.finish_reason, outcome.error).to.equal('stop');
      expect(echo!.input.multimodal_input).to.deep.include({ prompt: '<image>hi' });
      expect(outcome.perf.image_encode_ms).to.equal(undefined);
    });

    it('refuses images without an encoder (NOT_SUPPORTED images, naming the model and --vision-encoder)', async () => {
      const plain = await load(layout, visionOptions(rknnLib, null, null));
      try {
        expect(plain.supports('images')).to.equal(false);
        const err = await refusal(
          plain.validate({ input: prompt('x', [await png(pattern(4, 4), 4, 4)]), infer: { mode: 0, keep_history: 0 } }),
        );
        expect(err.name).to.equal('NOT_SUPPORTED');
        expect(err.data).to.include({ engine: 'rkllm', feature: 'images' });
        expect(err.message).to.include(TWIN_MODELS.echo).and.include('--vision-encoder');
      } finally {
        await plain.dispose();
      }
    });

    it('refuses to start when the encoder width is not the embedding size of the model (probed with GET_LAST_HIDDEN_LAYER)', async () => {
      const wide = twinModel({ height: 4, width: 4, tokens: 4, embed: 5 });
      const err = await refusal(load(layout, visionOptions(rknnLib, wide, TWIN_MODELS.echo)));
      expect(err.name).to.equal('ENGINE_ERROR');
      expect(err.message).to.include('gives embeddings 5 wide').and.include('takes 3');
      expect(err.data).to.include({ reason: 'width_mismatch' });
    });

    it('pairs <stem>.vision.rknn beside the .rkllm, with the tags told by the file name', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'vision-pair-'));
      const model = join(dir, 'minicpm-v-echo.rkllm');
      copyFileSync(TWIN_MODELS.echo, model);
      copyFileSync(twinModel({ height: 4, width: 4, tokens: 2, embed: ECHO_EMBD }), join(dir, 'minicpm-v-echo.vision.rknn'));
      const paired = await load(layout, visionOptions(rknnLib, null, null, { family: 'auto' }), model);
      try {
        expect(paired.supports('images')).to.equal(true);
        const { echo } = await run(paired, prompt('x', [await png(pattern(4, 4), 4, 4)]));
        const m = echo!.input.multimodal_input;
        const tags = IMAGE_TAGS['minicpm-v'];
        if (layout === '1.2') expect(echo!.param).to.include(tags);
        else expect(m.image).to.include({ image_start: tags.img_start, image_end: tags.img_end, image_content: tags.img_content });
      } finally {
        await paired.dispose();
      }
    });
  });
}

describe('vision: pairing, tags, llama.cpp', function () {
  this.timeout(120_000);

  it('finds the encoder of a model: the configured one for the start model, else <stem>.vision.rknn beside it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vision-names-'));
    const options = visionOptions('librknnrt.so', '/x/encoder.rknn', join(dir, 'a.rkllm'));
    expect(encoderFor(join(dir, 'a.rkllm'), options)).to.equal('/x/encoder.rknn');
    expect(encoderFor(join(dir, 'b.rkllm'), options)).to.equal(null);
    writeFileSync(join(dir, 'b.vision.rknn'), 'RKNN-TWIN\n');
    expect(encoderFor(join(dir, 'b.rkllm'), options)).to.equal(join(dir, 'b.vision.rknn'));
  });

  it('tells the tags from the file name, or says which setting to give', () => {
    expect(imageTags('auto', '/m/Qwen2-VL-2B_w8a8.rkllm')).to.deep.equal(IMAGE_TAGS['qwen2-vl']);
    expect(imageTags('auto', '/m/MiniCPM-V-2_6.rkllm')).to.deep.equal(IMAGE_TAGS['minicpm-v']);
    expect(imageTags('minicpm-v', '/m/qwen.rkllm')).to.deep.equal(IMAGE_TAGS['minicpm-v']);
    expect(() => imageTags('auto', '/m/model.rkllm')).to.throw(/engine\.rkllm\.vision\.image_tags/);
  });

  it('the settings engine.rkllm.vision reach the engine loaded at start', async () => {
    const [library, rknnLib] = await Promise.all([buildTwin('1.3'), buildRknnTwin()]);
    const encoder = twinModel({ height: 4, width: 4, tokens: 1, embed: ECHO_EMBD });
    const vision = { encoder, rknn_lib: rknnLib, core_mask: '0_1', image_tags: 'minicpm-v', max_image_bytes: 1000, max_image_pixels: 16 };
    const rkllm = { library, runtime_version: '1.3', vision };
    const settings = resolveSettings([{ source: 'test', values: { engine: { kind: 'rkllm', model_path: TWIN_MODELS.echo, rkllm } } }]);
    const options = engineOptions(settings);
    expect(options.rkllm.vision).to.deep.equal({
      encoder,
      model: TWIN_MODELS.echo,
      lib: rknnLib,
      coreMask: '0_1',
      family: 'minicpm-v',
      limits: { maxBytes: 1000, maxPixels: 16 },
    });
    const kind = engineKind(options, pino({ level: 'silent' }));
    expect(kind.supports('images')).to.equal(true);
    expect(
      engineKind({ ...options, rkllm: { ...options.rkllm, vision: { ...options.rkllm.vision!, encoder: null } } }, pino()).supports(
        'images',
      ),
    ).to.equal(false);
    const engine = await kind.load(await startParam(options));
    try {
      expect(engine.supports('images')).to.equal(true);
      const big = await refusal(
        engine.validate({ input: prompt('x', [await png(pattern(5, 5), 5, 5)]), infer: { mode: 0, keep_history: 0 } }),
      );
      expect(big.data).to.include({ reason: 'image_too_many_pixels' });
    } finally {
      await engine.dispose();
    }
  });

  it('models by name: <stem>.vision.rknn loads with its .rkllm and unloads with it; the folder does not list it as a model', async () => {
    const [library, rknnLib] = await Promise.all([buildTwin('1.2'), buildRknnTwin()]);
    const dir = mkdtempSync(join(tmpdir(), 'vision-models-'));
    copyFileSync(TWIN_MODELS.echo, join(dir, 'qwen2-vl-echo.rkllm'));
    copyFileSync(twinModel({ height: 4, width: 4, tokens: 2, embed: ECHO_EMBD }), join(dir, 'qwen2-vl-echo.vision.rknn'));
    const rkllm = { library, runtime_version: '1.2', vision: { rknn_lib: rknnLib } };
    const engine = { kind: 'rkllm', model_path: TWIN_MODELS.echo, rkllm };
    const settings = resolveSettings([{ source: 'test', values: { engine, models: { dir, keep_alive: '0' } } }]);
    const log = pino({ level: 'silent' });
    const kind = engineKind(engineOptions(settings), log);
    const loaded = models(settings, kind, log);
    try {
      expect((await loaded.list()).map((m) => m.name))
        .to.include('qwen2-vl-echo')
        .and.not.include('qwen2-vl-echo.vision');
      const lease = await loaded.use('qwen2-vl-echo');
      const image = pattern(4, 4);
      try {
        expect(lease.engine.supports('images')).to.equal(true);
        const { echo } = await run(lease.engine, prompt('x', [await png(image, 4, 4)]));
        expect(echo!.param).to.include(IMAGE_TAGS['qwen2-vl']);
        expect(echo!.input.multimodal_input.image_embed).to.deep.equal([...twinEmbeddings(image, 2, ECHO_EMBD)]);
      } finally {
        lease.release();
      }
    } finally {
      await loaded.close();
    }
  });

  it('llama.cpp refuses images with NOT_SUPPORTED, saying why', async () => {
    const engine = await LlamaEngine.load(
      { threads: 1, slots: 1 },
      { ...createDefaultParam(), model_path: await ensureBuiltinModel('tiny'), max_context_len: 256 },
    );
    try {
      expect(engine.supports('images')).to.equal(false);
      const err = await refusal(engine.validate({ input: prompt('x', [Uint8Array.from([1])]), infer: { mode: 0, keep_history: 0 } }));
      expect(err.name).to.equal('NOT_SUPPORTED');
      expect(err.data).to.include({ engine: 'llama.cpp', feature: 'images' });
      expect(err.message).to.include('no vision binding');
    } finally {
      await engine.dispose();
    }
  });
});
