// The llama.cpp slot pool: the context the engine decodes every run on. Its batches must reach
// llama.cpp with their sequences in id order (a batch out of order is computed in several
// micro-batches; see src/engine/llama/batch-order.ts), busy slots keep ids that follow each other,
// and the order changes nothing in the output: greedy streams decoded together equal their solo runs.
import { expect } from 'chai';
import { getLlama, type Llama, type LlamaContextSequence, type LlamaModel, type Token } from 'node-llama-cpp';
import { fairShares } from '../../src/engine/llama/batch-order.js';
import { SlotPool } from '../../src/engine/llama/slot-pool.js';
import { ensureBuiltinModel, TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';

const SLOTS = 4;
const TOKENS = 120;
const PROMPTS = [
  TINY_MODEL_PROMPTS.long,
  'Four score and seven years ago',
  'The Hare was once boasting',
  'Down, down, down. Would the fall',
];

type Native = Record<string, (...args: unknown[]) => unknown>;

describe('The slot pool of the llama.cpp engine', function () {
  this.timeout(120_000);
  let llama: Llama;
  let model: LlamaModel;
  let pool: SlotPool;
  /** The sequence ids of each decode, in the order they were added to its batch. */
  let batches: number[][];

  before(async function () {
    llama = await getLlama({ gpu: false, build: 'never' });
    model = await llama.loadModel({ modelPath: await ensureBuiltinModel('tiny') });
    pool = await SlotPool.create(model, 4096, 1, SLOTS);
    // Watch what node-llama-cpp hands to llama.cpp: each addToBatch names the sequence first.
    const holder = pool.context as unknown as { _ctx: Native };
    const native = holder._ctx;
    let current: number[] = [];
    holder._ctx = new Proxy(native, {
      get(target, property) {
        const value = Reflect.get(target, property) as unknown;
        if (property === 'addToBatch') {
          return (...args: unknown[]) => {
            current.push(args[0] as number);
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        if (property === 'decodeBatch') {
          return (...args: unknown[]) => {
            batches.push(current);
            current = [];
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  });

  after(async function () {
    await pool?.context.dispose();
    await model?.dispose();
    await llama?.dispose();
  });

  /** The sequences a test has taken; each is given back after it, even when it fails. */
  let lent: Set<LlamaContextSequence>;
  const take = async (): Promise<LlamaContextSequence> => {
    const sequence = await pool.take();
    lent.add(sequence);
    return sequence;
  };
  const give = (sequence: LlamaContextSequence): void => {
    lent.delete(sequence);
    pool.give(sequence);
  };

  beforeEach(function () {
    batches = [];
    lent = new Set();
  });

  afterEach(function () {
    for (const sequence of lent) pool.give(sequence);
  });

  async function generate(sequence: LlamaContextSequence, prompt: string): Promise<string> {
    await sequence.clearHistory();
    const tokens: Token[] = [];
    for await (const token of sequence.evaluate(model.tokenize(prompt), { temperature: 0 })) {
      tokens.push(token);
      if (tokens.length >= TOKENS) break;
    }
    return model.detokenize(tokens);
  }

  it('lends the free slot with the lowest id, so that busy slots stay side by side', async function () {
    const [a, b, c] = [await take(), await take(), await take()];
    expect([a, b, c]).to.deep.equal(pool.sequences.slice(0, 3));
    give(b);
    give(a);
    expect(await take()).to.equal(pool.sequences[0]);
    expect(await take()).to.equal(pool.sequences[1]);
    expect(await take()).to.equal(pool.sequences[3]);
    expect(pool.tryTake()).to.equal(undefined);
  });

  it('adds every batch to llama.cpp in sequence-id order, and its greedy streams equal their solo runs', async function () {
    const alone: string[] = [];
    const first = await take();
    for (const prompt of PROMPTS) alone.push(await generate(first, prompt));
    give(first);
    batches = [];
    const sequences = await Promise.all(PROMPTS.map(() => take()));
    // Started last slot first, so that without the ordering the batches would run backwards.
    const runs = sequences.map((sequence, i) => ({ sequence, prompt: PROMPTS[i]! })).reverse();
    const texts = (await Promise.all(runs.map(({ sequence, prompt }) => generate(sequence, prompt)))).reverse();
    expect(texts).to.deep.equal(alone);
    const shared = batches.filter((ids) => ids.length > 1);
    expect(shared.length, 'decodes shared by several sequences').to.be.above(TOKENS / 2);
    for (const ids of shared) expect(ids).to.deep.equal([...ids].sort((x, y) => x - y));
    expect(shared.some((ids) => ids.length === SLOTS)).to.equal(true);
  });

  it('shares a decode fairly: each item an equal part, the rest to those with more tokens', function () {
    const item = (n: number) => ({ tokens: Array<Token>(n).fill(1 as Token), logits: [], evaluationPriority: 5 as const });
    const [long, one, mid] = [item(1000), item(1), item(30)];
    const shares = fairShares([long, one, mid], 512);
    expect(shares.map((share) => share.processAmount)).to.deep.equal([481, 1, 30]);
    expect(fairShares([item(600), item(600)], 512).map((share) => share.processAmount)).to.deep.equal([256, 256]);
  });
});
