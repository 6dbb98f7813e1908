/**
 * The vision encoder on the RKNN twin (native/rknn-twin): the model's attrs are read with
 * rknn_query; the pixels reach the runtime in the order and layout the input attr asks (NHWC,
 * NCHW); the embeddings come back as the twin computes them; the core mask is passed; a crash
 * fails one image and the next one works; the struct layouts match the C compiler's.
 */
import { expect } from 'chai';
import koffi from 'koffi';
import { writeFileSync } from 'node:fs';
import sharp from 'sharp';
import { ServerError } from '../../src/errors.js';
import { rknnInput, rknnOutput, tensorAttr, TENSOR_ATTR_SIZE } from '../../src/engine/rknn/abi.js';
import { VisionEncoder, checkWidth, type EncoderLog } from '../../src/engine/rknn/encoder.js';
import { decodeImage, layOut, resizeImage, type RawImage } from '../../src/engine/rknn/image.js';
import { LAYOUT_VERSIONS } from '../../src/engine/rkllm/abi.js';
import { RkllmEngine } from '../../src/engine/rkllm/rkllm-engine.js';
import { LLMCallState, createDefaultParam, type RKLLMInput } from '../../src/engine/types.js';
import { TWIN_MODELS, buildTwin } from '../helpers/rkllm-twin.js';
import { buildRknnTwin, twinEmbeddings, twinModel } from '../helpers/rknn-twin.js';
import { refusal } from '../helpers/thrown.js';

function pattern(width: number, height: number): RawImage {
  return { rgb: new Uint8Array(width * height * 3).map((_, i) => (i * 37 + 11) % 256), width, height };
}

function recorder(): EncoderLog & { lines: string[] } {
  const lines: string[] = [];
  const keep = (_: object, message: string): void => void lines.push(message);
  return { lines, info: keep, warn: keep, error: keep };
}

describe('RKNN vision encoder (ABI twin)', function () {
  this.timeout(60_000);
  let lib: string;
  const open: VisionEncoder[] = [];
  const opened = async (options: Parameters<typeof VisionEncoder.open>[0]): Promise<VisionEncoder> => {
    const encoder = await VisionEncoder.open(options);
    open.push(encoder);
    return encoder;
  };

  before(async () => {
    lib = await buildRknnTwin();
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((encoder) => encoder.close()));
  });

  it('lays out rknn_tensor_attr, rknn_input and rknn_output as the C compiler does', () => {
    const layout = new Uint32Array(8);
    koffi.load(lib).func('rknn_twin_layout', 'void', ['uint32_t *'])(layout);
    expect([...layout]).to.deep.equal([
      TENSOR_ATTR_SIZE,
      koffi.offsetof(tensorAttr, 'fmt'),
      koffi.offsetof(tensorAttr, 'zp'),
      koffi.offsetof(tensorAttr, 'h_stride'),
      koffi.sizeof(rknnInput),
      koffi.offsetof(rknnInput, 'fmt'),
      koffi.sizeof(rknnOutput),
      koffi.offsetof(rknnOutput, 'size'),
    ]);
    expect([...layout]).to.deep.equal([376, 336, 352, 372, 32, 28, 24, 16]);
  });

  it('reads the input size, format and type and the output tokens and width from the model', async () => {
    const nhwc = await opened({ lib, model: twinModel({ height: 4, width: 6, tokens: 4, embed: 5 }) });
    expect(nhwc.shape).to.deep.equal({
      input: { width: 6, height: 4, format: 'NHWC', channels: 3, type: 'UINT8', dims: [1, 4, 6, 3] },
      tokens: 4,
      width: 5,
      outputDims: [4, 5],
    });
    expect(nhwc.shape.input).to.include({ width: 6, height: 4 });
    const nchw = await opened({
      lib,
      model: twinModel({ fmt: 'NCHW', type: 'FLOAT16', height: 8, width: 8, tokens: 16, embed: 3, outDims: 3 }),
    });
    expect(nchw.shape.input).to.deep.equal({ width: 8, height: 8, format: 'NCHW', channels: 3, type: 'FLOAT16', dims: [1, 3, 8, 8] });
    expect([nchw.shape.tokens, nchw.shape.width, nchw.shape.outputDims]).to.deep.equal([16, 3, [1, 16, 3]]);
  });

  it('sends NHWC pixels in row order and gets the embeddings the twin computes from them', async () => {
    const encoder = await opened({ lib, model: twinModel({ height: 4, width: 6, tokens: 4, embed: 5 }) });
    const image = pattern(6, 4);
    const encoded = await encoder.encode(image);
    expect([...encoded.embed]).to.deep.equal([...twinEmbeddings(image.rgb, 4, 5)]);
    expect(encoded).to.include({ n_image_tokens: 4, image_width: 6, image_height: 4 });
    expect(encoded.source).to.deep.equal({ width: 6, height: 4 });
    expect(encoded.ms).to.be.at.least(encoded.run_ms);
  });

  it('sends NCHW pixels as three planes, R then G then B', async () => {
    const encoder = await opened({ lib, model: twinModel({ fmt: 'NCHW', height: 4, width: 6, tokens: 3, embed: 2 }) });
    const image = pattern(6, 4);
    const { embed } = await encoder.encode(image);
    expect([...embed]).to.deep.equal([...twinEmbeddings(layOut(image, 'NCHW'), 3, 2)]);
    expect([...embed]).to.not.deep.equal([...twinEmbeddings(image.rgb, 3, 2)]);
  });

  it('decodes and resizes PNG, JPEG and WebP before encoding; one at the input size arrives bit-exact', async () => {
    const encoder = await opened({ lib, model: twinModel({ height: 8, width: 8, tokens: 8, embed: 4 }) });
    const at = pattern(8, 8);
    const raw = { raw: { width: 8, height: 8, channels: 3 as const } };
    const png = await sharp(at.rgb, raw).png().toBuffer();
    expect([...(await encoder.encode(png)).embed]).to.deep.equal([...twinEmbeddings(at.rgb, 8, 4)]);
    const webp = await sharp(at.rgb, raw).webp({ lossless: true }).toBuffer();
    expect([...(await encoder.encode(webp)).embed]).to.deep.equal([...twinEmbeddings(at.rgb, 8, 4)]);
    const wide = pattern(20, 10);
    const jpeg = await sharp(wide.rgb, { raw: { width: 20, height: 10, channels: 3 } })
      .jpeg()
      .toBuffer();
    const expected = await resizeImage(await decodeImage(jpeg), encoder.shape.input);
    const encoded = await encoder.encode(jpeg);
    expect([...encoded.embed]).to.deep.equal([...twinEmbeddings(expected.rgb, 8, 4)]);
    expect(encoded.source).to.deep.equal({ width: 20, height: 10 });
    const broken = await refusal(encoder.encode(png.subarray(0, 30)));
    expect(broken.name).to.equal('INVALID_PARAMS');
  });

  it('passes the core mask to rknn_set_core_mask, and refuses one the runtime refuses with its reason', async () => {
    const log = recorder();
    await opened({ lib, model: twinModel({ height: 2, width: 2, tokens: 1, embed: 1 }), coreMask: 3, log });
    expect(log.lines).to.include('I RKNN: core mask 3');
    const bad = await refusal(VisionEncoder.open({ lib, model: twinModel({ height: 2, width: 2, tokens: 1, embed: 1 }), coreMask: 9 }));
    expect(bad.name).to.equal('ENGINE_ERROR');
    expect(bad.message).to.include('rknn_set_core_mask failed with code -5: E RKNN: invalid core mask 9');
  });

  it('contains a crash: that image fails with ENGINE_ERROR, the worker restarts, the next image works', async () => {
    const log = recorder();
    const encoder = await opened({ lib, model: twinModel({ height: 2, width: 2, tokens: 2, embed: 3 }), log });
    const good = pattern(2, 2);
    const deadly = { ...good, rgb: Uint8Array.from([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8]) };
    const [crashed, after] = await Promise.allSettled([encoder.encode(deadly), encoder.encode(good)]);
    expect(crashed.status).to.equal('rejected');
    const err = (crashed as PromiseRejectedResult).reason as ServerError;
    expect(err).to.be.instanceOf(ServerError);
    expect(err.name).to.equal('ENGINE_ERROR');
    expect(err.message).to.match(/RKNN vision encoder process was killed by SIGSEGV .*crashes on DE AD BE EF.*restarts for the next image/);
    expect(err.data).to.deep.equal({ engine: 'rknn', reason: 'crashed' });
    expect(after.status).to.equal('fulfilled');
    expect([...(after as PromiseFulfilledResult<{ embed: Float32Array }>).value.embed]).to.deep.equal([...twinEmbeddings(good.rgb, 2, 3)]);
    expect(encoder.restarts).to.equal(1);
    expect(log.lines.some((line) => /restarting it$/.test(line))).to.equal(true);
  });

  it('stops an encode that does not answer in time, and restarts the worker for the next image', async () => {
    const encoder = await opened({ lib, model: twinModel({ height: 2, width: 2, tokens: 2, embed: 3 }), timeoutMs: 1000 });
    const good = pattern(2, 2);
    const hang = { ...good, rgb: Uint8Array.from([...Buffer.from('HANG'), 1, 2, 3, 4, 5, 6, 7, 8]) };
    const err = await refusal(encoder.encode(hang));
    expect(err.message).to.equal('the RKNN vision encoder did not answer encode within 1000 ms; it was stopped');
    expect(err.data).to.deep.equal({ engine: 'rknn', reason: 'timeout' });
    expect([...(await encoder.encode(good)).embed]).to.deep.equal([...twinEmbeddings(good.rgb, 2, 3)]);
    expect(encoder.restarts).to.equal(1);
  });

  it('fails the start, without restarting in a loop, when the runtime crashes while loading the model', async () => {
    const err = await refusal(
      VisionEncoder.open({ lib, model: twinModel({ height: 2, width: 2, tokens: 1, embed: 1, crashOnInit: true }) }),
    );
    expect(err.message).to.match(/^The RKNN vision encoder could not start: the RKNN vision encoder process was killed by SIGSEGV/);
    expect(err.message).to.include('crashes in rknn_init');
  });

  it('says why it cannot start: no library, no model file, not a model', async () => {
    const model = twinModel({ height: 2, width: 2, tokens: 1, embed: 1 });
    const noLib = await refusal(VisionEncoder.open({ lib: '/nonexistent/librknnrt.so', model }));
    expect(noLib.message).to.match(/^The RKNN vision encoder could not start: .*librknnrt\.so/);
    expect(noLib.data).to.include({ engine: 'rknn', library: '/nonexistent/librknnrt.so' });
    expect((await refusal(VisionEncoder.open({ lib, model: '/nonexistent/encoder.rknn' }))).message).to.include('does not exist');
    const text = twinModel({ height: 2, width: 2, tokens: 1, embed: 1 }, 'text.rknn');
    writeFileSync(text, 'hello');
    const notModel = await refusal(VisionEncoder.open({ lib, model: text }));
    expect(notModel.message).to.include('rknn_init failed with code -6: E RKNN: Invalid RKNN model');
    const grey = await refusal(VisionEncoder.open({ lib, model: twinModel({ height: 2, width: 2, channels: 1, tokens: 1, embed: 1 }) }));
    expect(grey.message).to.include('takes input dims [1, 2, 2, 1] (NHWC); one RGB image is needed');
  });

  it('checks the encoder width against the language model embedding size', () => {
    expect(() => checkWidth({ width: 1536, model: 'v.rknn' }, { embeddingSize: 1536, model: 'l.rkllm' })).to.not.throw();
    try {
      checkWidth({ width: 1536, model: 'v.rknn' }, { embeddingSize: 2048, model: 'l.rkllm' });
      expect.fail('no error');
    } catch (err) {
      expect(err).to.be.instanceOf(ServerError);
      expect((err as ServerError).message).to.equal(
        'The vision encoder v.rknn gives embeddings 1536 wide, but the language model l.rkllm takes 2048: they are not two halves of one VL model',
      );
      expect((err as ServerError).data).to.deep.equal({ engine: 'rknn', reason: 'width_mismatch' });
    }
  });
});

/** The RKLLM twin's echo model takes embeddings 3 wide. */
const ECHO_EMBD = 3;

for (const layout of LAYOUT_VERSIONS) {
  describe(`vision encoder into rkllm_run (RKLLM ${layout} twin, echo model)`, function () {
    this.timeout(60_000);

    it('gives rkllm_run the encoder embeddings unchanged, as multimodal_input', async () => {
      const encoder = await VisionEncoder.open({
        lib: await buildRknnTwin(),
        model: twinModel({ height: 4, width: 4, tokens: 4, embed: ECHO_EMBD }),
      });
      const engine = await RkllmEngine.load(
        { library: await buildTwin(layout), layout },
        { ...createDefaultParam(), model_path: TWIN_MODELS.echo },
      );
      try {
        checkWidth({ width: encoder.shape.width, model: 'encoder.rknn' }, { embeddingSize: ECHO_EMBD, model: 'echo.rkllm' });
        const image = pattern(4, 4);
        const e = await encoder.encode(image);
        const fields = {
          image_embed: [...e.embed],
          n_image_tokens: e.n_image_tokens,
          n_image: 1,
          image_width: e.image_width,
          image_height: e.image_height,
        };
        const multimodal =
          layout === '1.2'
            ? { prompt: '<image>What is in the image?', ...fields }
            : {
                prompt: '<image>What is in the image?',
                image: { ...fields, image_start: '<|vision_start|>', image_end: '<|vision_end|>', image_content: '<|image_pad|>' },
              };
        const input = { role: 'user', enable_thinking: false, input_type: 3, multimodal_input: multimodal } as RKLLMInput;
        let text = '';
        const outcome = await engine.run({ input, infer: { mode: 0, keep_history: 0 } }, (result, state) => {
          if (state === LLMCallState.RKLLM_RUN_NORMAL) text += result.text;
          return 0;
        });
        expect(outcome.finish_reason, outcome.error).to.not.equal('error');
        const echoed = (JSON.parse(text) as { input: { multimodal_input: Record<string, unknown> } }).input.multimodal_input;
        expect(echoed).to.deep.include(multimodal);
        const embed = (layout === '1.2' ? echoed : (echoed.image as Record<string, unknown>)).image_embed;
        expect(embed).to.deep.equal([...twinEmbeddings(image.rgb, 4, ECHO_EMBD)]);
      } finally {
        await engine.dispose();
        await encoder.close();
      }
    });
  });
}
