import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { expect } from 'chai';
import { getLlama, readGgufFileInfo, type Llama, type LlamaContext, type LlamaModel, type Token } from 'node-llama-cpp';
import {
  BOS_TOKEN_ID,
  BUILTIN_CONTEXT_LENGTH,
  BYTE_TOKEN_OFFSET,
  EOS_TOKEN_ID,
  TINY_MODEL_PROMPTS,
  builtinModelPath,
  describeBuiltinModel,
  ensureBuiltinModel,
} from '../src/gguf/builtin.js';
import { serializeSampling } from '../src/engine/llama/serial-sampling.js';
import { gguf, writeGguf, type GgufTensor } from '../src/gguf/gguf-writer.js';
import { builtinTokenizer } from './helpers/tiny-model.js';

const GREEDY = { temperature: 0, topK: 1 } as const;
const SEQUENCES = 8;

interface Generation {
  readonly tokens: Token[];
  readonly endedWithEos: boolean;
}

/** Decodes from `prompt` (no BOS) on a fresh sequence until EOS or `maxTokens`. */
async function generate(
  context: LlamaContext,
  model: LlamaModel,
  prompt: string,
  maxTokens: number,
  options: Record<string, number> = GREEDY,
): Promise<Generation> {
  const sequence = context.getSequence();
  try {
    const tokens: Token[] = [];
    for await (const token of sequence.evaluate(model.tokenize(prompt), { ...options, yieldEogToken: true })) {
      if (token === model.tokens.eos) return { tokens, endedWithEos: true };
      tokens.push(token);
      if (tokens.length >= maxTokens) break;
    }
    return { tokens, endedWithEos: false };
  } finally {
    await sequence.dispose();
  }
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

describe('gguf writer', function () {
  let scratch: string;

  beforeEach(async function () {
    scratch = await mkdtemp(join(tmpdir(), 'rkllm-gguf-'));
  });

  afterEach(async function () {
    await rm(scratch, { recursive: true, force: true });
  });

  function tensor(name: string, dims: number[], chunks: number[][]): GgufTensor {
    return { name, dims, type: 'F32', data: () => chunks.map((chunk) => Float32Array.from(chunk)) };
  }

  it('writes metadata of every type and tensors that node-llama-cpp reads back', async function () {
    const path = join(scratch, 'test.gguf');
    const metadata = new Map([
      ['general.architecture', gguf.string('llama')],
      ['test.uint32', gguf.uint32(4_000_000_000)],
      ['test.int32', gguf.int32(-7)],
      ['test.float32', gguf.float32(0.5)],
      ['test.bool', gguf.bool(true)],
      ['test.string', gguf.string('naïve “café”')],
      ['test.strings', gguf.stringArray(['a', '▁', ''])],
      ['test.floats', gguf.float32Array([1.5, -2])],
      ['test.ints', gguf.int32Array([3, -4])],
    ]);
    const tensors = [tensor('a', [3], [[1, 2], [3]]), tensor('b', [2, 2], [[4, 5, 6, 7]])];
    await writeGguf(path, { metadata, tensors, alignment: 64 });

    const info = await readGgufFileInfo(path, { logWarnings: false });
    const test = (info.metadata as unknown as { test: Record<string, unknown> }).test;
    expect(test).to.deep.equal({
      uint32: 4_000_000_000,
      int32: -7,
      float32: 0.5,
      bool: true,
      string: 'naïve “café”',
      strings: ['a', '▁', ''],
      floats: [1.5, -2],
      ints: [3, -4],
    });
    expect(info.metadata.general.alignment).to.equal(64);
    const file = await readFile(path);
    const [a, b] = info.tensorInfo!;
    expect(a!.dimensions.map(Number)).to.deep.equal([3]);
    expect(b!.dimensions.map(Number)).to.deep.equal([2, 2]);
    expect(Number(b!.offset) % 64).to.equal(0);
    expect(file.length).to.equal(info.infoEndOffset! + 64 + 64);
    const floatsAt = (offset: number | bigint, count: number) =>
      Array.from({ length: count }, (_, i) => file.readFloatLE(Number(offset) + 4 * i));
    expect(floatsAt(a!.fileOffset, 3)).to.deep.equal([1, 2, 3]);
    expect(floatsAt(b!.fileOffset, 4)).to.deep.equal([4, 5, 6, 7]);
  });

  it('refuses tensor data that does not match the dims', async function () {
    const write = (data: number[][]) => writeGguf(join(scratch, 'bad.gguf'), { metadata: new Map(), tensors: [tensor('t', [2, 2], data)] });
    await expectRejection(write([[1, 2, 3]]), /produced 3 elements, expected 4/);
    await expectRejection(
      write([
        [1, 2, 3],
        [4, 5],
      ]),
      /more than the 4 elements/,
    );
  });

  it('refuses values out of range for their type', async function () {
    const write = (value: number) => writeGguf(join(scratch, 'bad.gguf'), { metadata: new Map([['x', gguf.uint32(value)]]), tensors: [] });
    await expectRejection(write(-1), /uint32 out of range/);
    await expectRejection(write(2 ** 32), /uint32 out of range/);
    await expectRejection(write(1.5), /uint32 out of range/);
  });
});

async function expectRejection(promise: Promise<unknown>, message: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).to.be.instanceOf(Error);
  expect((error as Error).message).to.match(message);
}

describe('builtin tiny model', function () {
  let modelPath: string;
  let llama: Llama;
  let model: LlamaModel;
  let context: LlamaContext;

  before(async function () {
    this.timeout(120_000);
    modelPath = await ensureBuiltinModel('tiny');
    llama = await getLlama({ gpu: false, build: 'never' });
    model = await llama.loadModel({ modelPath });
    context = await model.createContext({ contextSize: 2048, sequences: SEQUENCES, threads: 1 });
    serializeSampling(context);
  });

  after(async function () {
    await context?.dispose();
    await model?.dispose();
    await llama?.dispose();
  });

  describe('file', function () {
    let scratch: string;

    beforeEach(async function () {
      scratch = await mkdtemp(join(tmpdir(), 'rkllm-model-'));
    });

    afterEach(async function () {
      await rm(scratch, { recursive: true, force: true });
    });

    it('lives in <package root>/models by default', function () {
      expect(basename(dirname(modelPath))).to.equal('models');
      expect(modelPath).to.equal(builtinModelPath('tiny'));
      expect(basename(modelPath)).to.match(/^rkllm-tiny-[0-9a-f]{12}\.gguf$/);
    });

    it('is small', async function () {
      expect((await stat(modelPath)).size).to.be.below(10 * 1024 * 1024);
    });

    it('is generated byte-identically, also by concurrent callers', async function () {
      this.timeout(60_000);
      const paths = await Promise.all([1, 2, 3].map(() => ensureBuiltinModel('tiny', scratch)));
      expect(new Set(paths).size).to.equal(1);
      expect(paths[0]).to.equal(join(scratch, basename(modelPath)));
      expect(await readdir(scratch)).to.deep.equal([basename(modelPath)]);
      expect(await sha256(paths[0]!)).to.equal(await sha256(modelPath));
    });
  });

  describe('tokenizer', function () {
    it('has the documented special tokens and context length', function () {
      expect(model.tokens.bos).to.equal(BOS_TOKEN_ID);
      expect(model.tokens.eos).to.equal(EOS_TOKEN_ID);
      expect(model.trainContextSize).to.equal(BUILTIN_CONTEXT_LENGTH);
    });

    it('gives every word of the corpus its own token', function () {
      const text = 'Alice was beginning to get very tired.';
      const pieces = model.tokenize(text).map((token) => model.detokenize([token]));
      expect(pieces).to.deep.equal(['Alice', ' was', ' beginning', ' to', ' get', ' very', ' tired', '.']);
    });

    it('tokenizes exactly like builtinTokenizer, on the corpus and on any text', async function () {
      const tokenizer = builtinTokenizer();
      const corpus = await readFile(join(dirname(dirname(modelPath)), 'corpus', 'aesop.txt'), 'utf8');
      const texts = [
        ...corpus.split(/\n\s*\n/),
        'What is AI?',
        "rabbit-hole didn't xyzzy Alicex  two  spaces",
        'Café “naïve” — 東京 🙂\ttab\n',
      ];
      for (const text of texts) expect(tokenizer(text), text).to.deep.equal([...model.tokenize(text)]);
    });

    it('spells non-ASCII characters with byte tokens', function () {
      const tokens = model.tokenize('é');
      expect(tokens).to.deep.equal([BYTE_TOKEN_OFFSET + 0xc3, BYTE_TOKEN_OFFSET + 0xa9]);
    });

    it('round-trips any UTF-8 text', function () {
      const text = 'Café “naïve” — 東京 🙂\ttab\nnew line ~';
      expect(model.detokenize(model.tokenize(text))).to.equal(text);
    });
  });

  describe('greedy generation', function () {
    this.timeout(60_000);

    it(`continues ${JSON.stringify(TINY_MODEL_PROMPTS.long)} for 500 tokens without EOS`, async function () {
      const { tokens, endedWithEos } = await generate(context, model, TINY_MODEL_PROMPTS.long, 500);
      expect(endedWithEos).to.equal(false);
      expect(tokens).to.have.length(500);
    });

    it(`ends ${JSON.stringify(TINY_MODEL_PROMPTS.endsWithEos)} with EOS within 50 tokens`, async function () {
      const { tokens, endedWithEos } = await generate(context, model, TINY_MODEL_PROMPTS.endsWithEos, 50);
      expect(endedWithEos).to.equal(true);
      expect(tokens.length).to.be.above(0);
    });

    it(`continues ${JSON.stringify(TINY_MODEL_PROMPTS.multiByte)} with a multi-byte character`, async function () {
      const { tokens } = await generate(context, model, TINY_MODEL_PROMPTS.multiByte, 100);
      expect(tokens.some((token) => token >= BYTE_TOKEN_OFFSET + 0x80 && token < BYTE_TOKEN_OFFSET + 256)).to.equal(true);
      expect(model.detokenize(tokens)).to.match(/[^\p{ASCII}]/u);
    });

    it('gives identical text for 8 prompts decoded in parallel and alone', async function () {
      const prompts = [
        TINY_MODEL_PROMPTS.long,
        TINY_MODEL_PROMPTS.multiByte,
        'Four score and seven years ago',
        'The Hare was once boasting',
        'Down, down, down. Would the fall',
        '“Curiouser and curiouser!” cried',
        'On the corner of the old square',
        'Little friends may prove great',
      ];
      const alone: string[] = [];
      for (const prompt of prompts) alone.push(model.detokenize((await generate(context, model, prompt, 250)).tokens));
      const parallel = await Promise.all(prompts.map((prompt) => generate(context, model, prompt, 250)));
      expect(parallel.map(({ tokens }) => tokens.length)).to.deep.equal(prompts.map(() => 250));
      expect(parallel.map(({ tokens }) => model.detokenize(tokens))).to.deep.equal(alone);
    });

    it('continues a 1,800-token prompt exactly like its last two tokens (a trigram model)', async function () {
      const corpus = await readFile(join(dirname(dirname(modelPath)), 'corpus', 'alice.txt'), 'utf8');
      for (const offset of [0, 2000, 4000]) {
        const prompt = model.detokenize(model.tokenize(corpus.slice(offset).replace(/\s+/g, ' ')).slice(0, 1800));
        const full = await generate(context, model, prompt, 100);
        const tail = await generate(context, model, model.detokenize(model.tokenize(prompt).slice(-2)), 100);
        expect(model.detokenize(full.tokens)).to.equal(model.detokenize(tail.tokens));
      }
    });
  });

  describe('sampling', function () {
    it('produces English-like words', async function () {
      this.timeout(60_000);
      const options = { temperature: 0.8, topK: 40, topP: 0.9, seed: 42 };
      const { tokens } = await generate(context, model, 'Alice ', 400, options);
      const text = model.detokenize(tokens);
      const lettersAndSpaces = text.replace(/[^A-Za-z ]/g, '').length;
      expect(lettersAndSpaces / text.length).to.be.above(0.9);
      const words = text.split(' ').filter((word) => word.length > 0);
      const meanWordLength = words.reduce((sum, word) => sum + word.length, 0) / words.length;
      expect(meanWordLength).to.be.within(2, 8);
    });
  });
});

describe('builtin bench model', function () {
  it('has 50 to 100 million parameters', function () {
    const shape = describeBuiltinModel('bench');
    expect(shape.parameterCount).to.be.within(50e6, 100e6);
    expect(shape.headCount * shape.headDim).to.equal(shape.embeddingLength);
  });
});
