// Images in every face (issue 22), with the official clients against servers in this process: the
// refusals on llama.cpp (no vision encoder), in each API's shape; and on the RKLLM twin with the
// RKNN twin encoder, the same image through every face reaching rkllm_run as the same embeddings.
import { expect } from 'chai';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import sharp from 'sharp';
import { LAYOUT_VERSIONS } from '../../src/engine/rkllm/abi.js';
import { VisionEncoder } from '../../src/engine/rknn/encoder.js';
import { connectHttp, connectHttpV2, textOf } from '../helpers/mcp.js';
import { TWIN_MODELS, buildTwin } from '../helpers/rkllm-twin.js';
import { buildRknnTwin, twinModel } from '../helpers/rknn-twin.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** A PNG of `width` x `height` whose pixels are a known pattern (from each byte's index, and `seed`). */
async function patternPng(width: number, height: number, seed = 0): Promise<Buffer> {
  const rgb = Buffer.alloc(width * height * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 7 + seed) % 251;
  return sharp(rgb, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

const dataUrl = (bytes: Buffer, type = 'image/png'): string => `data:${type};base64,${bytes.toString('base64')}`;

/** The rejection of `promise`. */
const refusal = (promise: Promise<unknown>): Promise<any> =>
  promise.then(
    () => expect.fail('expected a refusal'),
    (err: unknown) => err,
  );

describe('images on llama.cpp (no vision encoder): each face refuses in its own shape', function () {
  this.timeout(120_000);
  let server: TestServer;
  let openai: OpenAI;
  let ollama: Ollama;
  let png: Buffer;
  let images: string;

  before(async () => {
    images = mkdtempSync(join(tmpdir(), 'vision-images-'));
    png = await patternPng(4, 4);
    writeFileSync(join(images, 'cat.png'), png);
    server = await startTestServer({ settings: { folders: { images } } });
    openai = new OpenAI({ baseURL: `http://${server.addresses.http}/v1`, apiKey: 'unused', maxRetries: 0 });
    ollama = new Ollama({ host: `http://${server.addresses.http}` });
  });

  after(async () => {
    await server?.close();
  });

  const withImage = (url: string, text = 'What is in the image?'): OpenAI.ChatCompletionCreateParamsNonStreaming => ({
    model: 'rkllm-tiny',
    messages: [
      {
        role: 'user',
        content: [
          { type: 'text', text },
          { type: 'image_url', image_url: { url, detail: 'low' } },
        ],
      },
    ],
    max_tokens: 4,
  });

  it('OpenAI: an http(s) image URL is a 400 that says to send a data URL, naming the part as `param`', async () => {
    const err = await refusal(openai.chat.completions.create(withImage('https://example.com/cat.png')));
    expect(err).to.be.instanceOf(OpenAI.BadRequestError);
    expect(err.message).to.match(/not fetched; send the image inline as a data URL/);
    expect(err.error).to.include({ param: 'messages[0].content[1].image_url.url', code: 'invalid_params', type: 'invalid_request_error' });
  });

  it('OpenAI: an image that is not base64, and placeholders that do not match the images, are 400s', async () => {
    const broken = await refusal(openai.chat.completions.create(withImage('data:image/png;base64,not*base64!')));
    expect(broken).to.be.instanceOf(OpenAI.BadRequestError);
    expect(broken.message).to.match(/not valid base64/);
    const counted = await refusal(openai.chat.completions.create(withImage(dataUrl(png), '<image> and <image>?')));
    expect(counted).to.be.instanceOf(OpenAI.BadRequestError);
    expect(counted.message).to.match(/2 "<image>" placeholders for 1 images/);
    expect(counted.error).to.include({ param: 'messages[0].content' });
    const part = await refusal(
      openai.chat.completions.create({
        model: 'rkllm-tiny',
        messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] }],
      }),
    );
    expect(part).to.be.instanceOf(OpenAI.BadRequestError);
    expect(part.message).to.match(/"input_audio".*"text", "image_url" and "image"/);
  });

  it('OpenAI: a good image to a model without a vision encoder is a 400 naming the reason', async () => {
    const err = await refusal(openai.chat.completions.create(withImage(dataUrl(png))));
    expect(err).to.be.instanceOf(OpenAI.BadRequestError);
    expect(err.message).to.match(/images.*not supported by the llama\.cpp engine/i);
    const streamed = await refusal(openai.chat.completions.create({ ...withImage(dataUrl(png)), stream: true }));
    expect(streamed).to.be.instanceOf(OpenAI.BadRequestError);
  });

  it('Ollama: /api/chat and /api/generate refuse bad images and URLs with 400 {error}, and a good one for want of an encoder', async () => {
    const chat = (images: string[] | Uint8Array[]) =>
      refusal(ollama.chat({ model: 'rkllm-tiny', messages: [{ role: 'user', content: 'What is this?', images }], stream: false }));
    const notBase64 = await chat(['%%% not an image %%%']);
    expect(notBase64).to.have.property('status_code', 400);
    expect(notBase64.message).to.match(/not valid base64 \("messages\[0\]\.images\[0\]"\)/);
    const url = await refusal(
      ollama.generate({ model: 'rkllm-tiny', prompt: 'What is this?', images: ['http://example.com/a.png'], stream: false }),
    );
    expect(url).to.have.property('status_code', 400);
    expect(url.message).to.match(/send the image inline as a data URL/);
    const good = await chat([png]);
    expect(good).to.have.property('status_code', 400);
    expect(good.message).to.match(/images.*not supported by the llama\.cpp engine/i);
    const generated = await refusal(ollama.generate({ model: 'rkllm-tiny', prompt: 'What is this?', images: [png], stream: false }));
    expect(generated).to.have.property('status_code', 400);
    expect(generated.message).to.match(/images.*not supported/i);
  });

  it('MCP: the chat tool takes image content from the v1 and the v2 SDK clients, and refuses it as a tool error', async () => {
    const v1 = await connectHttp(server.url);
    const v2 = await connectHttpV2(server.url, 'modern');
    try {
      const message = (data: string) => ({
        role: 'user',
        content: [
          { type: 'image', data, mimeType: 'image/png' },
          { type: 'text', text: 'What is in the image?' },
        ],
      });
      for (const call of [
        (args: Record<string, unknown>) => v1.client.callTool({ name: 'chat', arguments: args }) as Promise<CallToolResult>,
        (args: Record<string, unknown>) => v2.callTool({ name: 'chat', arguments: args }) as Promise<CallToolResult>,
      ]) {
        const good = await call({ messages: [message(png.toString('base64'))] });
        expect(good.isError).to.equal(true);
        expect(textOf(good)).to.match(/images.*not supported by the llama\.cpp engine.*\(-32005\)/i);
        const broken = await call({ messages: [message('bm90IGFuIGltYWdl')] });
        expect(broken.isError).to.equal(true);
        const url = await call({ messages: [message('https://example.com/a.png')] });
        expect(textOf(url)).to.match(/send the image inline as a data URL.*\(-32602\)/);
      }
    } finally {
      await v1.close();
      await v2.close();
    }
  });

  it('JSON-RPC: multimodal_input.image refuses URLs and names outside folders.images; a good one is refused for want of an encoder', async () => {
    const run = (image: unknown, prompt = 'What is this?') =>
      server.http.call('rkllm_run', { input_type: 3, multimodal_input: { prompt, image } });
    const url = await run('https://example.com/cat.png');
    expect(url.error).to.include({ code: -32602 });
    expect(url.error!.data).to.deep.equal({ reason: 'image_url', path: 'multimodal_input.image' });
    const outside = await run(['cat.png', '../../etc/hostname.png']);
    expect(outside.error!.data).to.include({ reason: 'path_refused' });
    const missing = await run('dog.png');
    expect(missing.error!.data).to.include({ reason: 'file_not_found' });
    const extra = await server.http.call('rkllm_run', { input_type: 3, multimodal_input: { prompt: 'x', image: 'cat.png', n_image: 1 } });
    expect(extra.error!.message).to.match(/"multimodal_input\.n_image" is not taken with "image" as encoded images/);
    for (const image of ['cat.png', png.toString('base64'), dataUrl(png), [dataUrl(png), 'cat.png']]) {
      const refused = await run(image, Array.isArray(image) ? '<image> then <image>' : 'What is this?');
      expect(refused.error, JSON.stringify(refused)).to.include({ code: -32005 });
      expect(refused.error!.data).to.include({ feature: 'images' });
    }
  });
});

/** The RKLLM twin's echo model takes embeddings 3 wide; the RKNN twin encoder here gives 4 of them for an 8x8 input. */
const ENCODER = { height: 8, width: 8, tokens: 4, embed: 3 } as const;

for (const layout of LAYOUT_VERSIONS) {
  describe(`images through every face reach rkllm_run alike (RKLLM ${layout} twin, echo model, RKNN twin encoder)`, function () {
    this.timeout(120_000);
    let server: TestServer;
    let openai: OpenAI;
    let ollama: Ollama;
    let png: Buffer;
    let other: Buffer;
    /** What the encoder gives for `png` and `other`, encoded directly. */
    let expected: number[];
    let expectedOther: number[];
    /** folders.images */
    let images: string;

    before(async () => {
      const rknnLib = await buildRknnTwin();
      const encoder = twinModel(ENCODER);
      png = await patternPng(12, 8);
      other = await patternPng(8, 8, 100);
      const direct = await VisionEncoder.open({ lib: rknnLib, model: encoder });
      try {
        expected = [...(await direct.encode(png)).embed];
        expectedOther = [...(await direct.encode(other)).embed];
      } finally {
        await direct.close();
      }
      images = mkdtempSync(join(tmpdir(), 'vision-images-'));
      writeFileSync(join(images, 'cat.png'), png);
      server = await startTestServer({
        settings: {
          engine: {
            kind: 'rkllm',
            model_path: TWIN_MODELS.echo,
            max_context_len: 1024,
            rkllm: {
              library: await buildTwin(layout),
              vision: { encoder, rknn_lib: rknnLib, image_tags: 'qwen2-vl', max_image_bytes: 4000, max_image_pixels: 10_000 },
            },
          },
          folders: { images },
        },
      });
      openai = new OpenAI({ baseURL: `http://${server.addresses.http}/v1`, apiKey: 'unused', maxRetries: 0 });
      ollama = new Ollama({ host: `http://${server.addresses.http}` });
    });

    after(async () => {
      await server?.close();
    });

    /** What rkllm_run received, from the echo model's answer: the multimodal input, its embeddings flat. */
    const received = (text: string): { prompt: string; image_embed: number[]; n_image: number } => {
      const input = (JSON.parse(text) as { input: { input_type: number; multimodal_input: Record<string, any> } }).input;
      expect(input.input_type).to.equal(3);
      const m = input.multimodal_input;
      const image = layout === '1.2' ? m : m.image;
      return { prompt: m.prompt as string, image_embed: image.image_embed as number[], n_image: image.n_image as number };
    };

    it('the same PNG through OpenAI, Ollama, JSON-RPC (base64 and file name) and MCP gives rkllm_run the embeddings of VisionEncoder.encode', async () => {
      const question = 'What is in the image?';
      const viaOpenai = await openai.chat.completions.create({
        model: 'echo',
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: question },
              { type: 'image_url', image_url: { url: dataUrl(png) } },
            ],
          },
        ],
      });
      const viaOllama = await ollama.chat({ model: 'echo', messages: [{ role: 'user', content: question, images: [png] }], stream: false });
      const viaGenerate = await ollama.generate({ model: 'echo', prompt: question, images: [png.toString('base64')], stream: false });
      const rpc = (image: string) => server.http.result('rkllm_run', { input_type: 3, multimodal_input: { prompt: question, image } });
      const viaBase64 = await rpc(png.toString('base64'));
      const viaFile = await rpc('cat.png');
      const mcp = await connectHttpV2(server.url, 'modern');
      let viaMcp: CallToolResult;
      try {
        viaMcp = (await mcp.callTool({
          name: 'chat',
          arguments: {
            messages: [
              {
                role: 'user',
                content: [
                  { type: 'image', data: png.toString('base64'), mimeType: 'image/png' },
                  { type: 'text', text: question },
                ],
              },
            ],
          },
        })) as CallToolResult;
      } finally {
        await mcp.close();
      }
      expect(viaMcp.isError, textOf(viaMcp)).to.not.equal(true);
      const answers = {
        openai: viaOpenai.choices[0]!.message.content!,
        ollamaChat: viaOllama.message.content,
        ollamaGenerate: String(viaGenerate.response),
        jsonrpcBase64: viaBase64.text as string,
        jsonrpcFile: viaFile.text as string,
        mcp: textOf(viaMcp),
      };
      for (const [face, text] of Object.entries(answers)) {
        const got = received(text);
        expect(got.n_image, face).to.equal(1);
        expect(got.image_embed, face).to.deep.equal(expected);
        expect(got.prompt, face).to.include(`<image>${question}`);
      }
      // The raw prompt paths give the runtime the same prompt.
      expect(received(answers.ollamaGenerate).prompt).to.equal(received(answers.jsonrpcBase64).prompt);
      expect(received(answers.jsonrpcFile).prompt).to.equal(`<image>${question}`);
      expect(viaBase64.perf.image_encode_ms).to.be.a('number').at.least(0);
      expect((viaMcp.structuredContent as { perf: Record<string, unknown> }).perf.image_encode_ms).to.be.a('number');
    });

    it('two images in one conversation reach rkllm_run in order; the final chunk of rkllm_run_async carries perf.image_encode_ms', async () => {
      const reply = await openai.chat.completions.create({
        model: 'echo',
        messages: [
          {
            role: 'user',
            content: [
              { type: 'image_url', image_url: { url: dataUrl(png) } },
              { type: 'text', text: 'first' },
            ],
          },
          { role: 'assistant', content: 'seen' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'and <image> this one?' },
              { type: 'image_url', image_url: { url: dataUrl(other) } },
            ],
          },
        ],
      });
      const got = received(reply.choices[0]!.message.content!);
      expect(got.n_image).to.equal(2);
      expect(expectedOther).to.not.deep.equal(expected);
      expect(got.image_embed).to.deep.equal([...expected, ...expectedOther]);
      expect(got.prompt.indexOf('<image>first')).to.be.below(got.prompt.indexOf('and <image> this one?'));
      const { stream_id } = await server.http.start({
        input_type: 3,
        multimodal_input: { prompt: '<image> or <image>?', image: ['cat.png', dataUrl(other)] },
      });
      let last: Record<string, any> | null = null;
      let text = '';
      while (!last?.end) {
        last = (await server.http.result('poll', { stream_id, wait_ms: 10_000 })).chunk;
        text += last?.delta ?? '';
      }
      expect(received(text).image_embed).to.deep.equal([...expected, ...expectedOther]);
      expect(last.perf.image_encode_ms).to.be.a('number').at.least(0);
    });

    it("raw image_embed (and 1.3's image object) reaches rkllm_run as before; an MCP chat session keeps its images", async () => {
      const fields = { image_embed: expectedOther, n_image: 1, n_image_tokens: ENCODER.tokens, image_width: 8, image_height: 8 };
      const tags = { image_start: '<|vision_start|>', image_end: '<|vision_end|>', image_content: '<|image_pad|>' };
      const multimodal = layout === '1.2' ? { prompt: '<image>raw', ...fields } : { prompt: '<image>raw', image: { ...fields, ...tags } };
      const raw = await server.http.result('rkllm_run', { input_type: 3, multimodal_input: multimodal });
      expect(received(raw.text as string)).to.deep.equal({ prompt: '<image>raw', image_embed: expectedOther, n_image: 1 });
      expect(raw.perf).to.not.have.property('image_encode_ms');
      const mcp = await connectHttpV2(server.url, 'modern');
      try {
        const chat = (content: unknown): Promise<CallToolResult> =>
          mcp.callTool({ name: 'chat', arguments: { session: 'look', messages: [{ role: 'user', content }] } }) as Promise<CallToolResult>;
        const first = await chat([
          { type: 'text', text: 'See <image>' },
          { type: 'image', data: png.toString('base64'), mimeType: 'image/png' },
        ]);
        expect(received(textOf(first)).image_embed).to.deep.equal(expected);
        // The echo's answer repeats the prompt, "<image>" included, and a placeholder is never text: the follow-up holds two
        // for the one image the session kept (without it, the run would have been text alone, and answered).
        const later = await chat('And now?');
        expect(later.isError).to.equal(true);
        expect(textOf(later)).to.match(/the text holds 2 "<image>" placeholders for 1 images/);
      } finally {
        await mcp.close();
      }
    });

    it('a broken image, a format other than PNG/JPEG/WebP, and images over the byte or pixel limit are 400s in each shape', async () => {
      const gif = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#808080' } })
        .gif()
        .toBuffer();
      const big = await patternPng(200, 100);
      const noise = await sharp(Buffer.from(Array.from({ length: 48 * 48 * 3 }, (_, i) => (i * 7919) % 256)), {
        raw: { width: 48, height: 48, channels: 3 },
      })
        .png({ compressionLevel: 0 })
        .toBuffer();
      expect(noise.length).to.be.above(4000);
      const cases: Array<[Buffer, RegExp]> = [
        [Buffer.from('not an image at all'), /cannot be read/],
        [gif, /the image is gif; send PNG, JPEG or WebP/],
        [noise, /over the limit of 4000 bytes/],
        [big, /20000 pixels, over the limit of 10000/],
      ];
      const mcp = await connectHttpV2(server.url, 'modern');
      try {
        for (const [bytes, message] of cases) {
          const viaOpenai = await refusal(
            openai.chat.completions.create({
              model: 'echo',
              messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(bytes, 'image/png') } }] }],
            }),
          );
          expect(viaOpenai, String(message)).to.be.instanceOf(OpenAI.BadRequestError);
          expect(viaOpenai.message).to.match(message);
          const viaOllama = await refusal(
            ollama.chat({ model: 'echo', messages: [{ role: 'user', content: 'x', images: [bytes] }], stream: false }),
          );
          expect(viaOllama).to.have.property('status_code', 400);
          expect(viaOllama.message).to.match(message);
          const viaRpc = await server.http.call('rkllm_run', {
            input_type: 3,
            multimodal_input: { prompt: 'x', image: bytes.toString('base64') },
          });
          expect(viaRpc.error).to.include({ code: -32602 });
          expect(viaRpc.error!.message).to.match(message);
          const viaMcp = (await mcp.callTool({
            name: 'chat',
            arguments: {
              messages: [{ role: 'user', content: [{ type: 'image', data: bytes.toString('base64'), mimeType: 'image/png' }] }],
            },
          })) as CallToolResult;
          expect(viaMcp.isError).to.equal(true);
          expect(textOf(viaMcp))
            .to.match(message)
            .and.match(/\(-32602\)$/);
        }
      } finally {
        await mcp.close();
      }
      writeFileSync(join(images, 'noise.png'), noise);
      const file = await server.http.call('rkllm_run', { input_type: 3, multimodal_input: { prompt: 'x', image: 'noise.png' } });
      expect(file.error!.data).to.deep.equal({ reason: 'image_too_large', path: 'multimodal_input.image' });
      expect(file.error!.message).to.match(/over the limit of 4000/);
    });
  });
}
