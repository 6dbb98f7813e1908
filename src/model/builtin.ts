/**
 * The project's own deterministic GGUF models, generated on demand from the
 * texts in `corpus/` — no downloads, no training loop.
 *
 * Both models are llama-architecture character-level language models whose
 * weights are written by hand from corpus statistics:
 *
 * - The token embedding puts a constant 1 in a "bias" dimension and a one-hot
 *   code of the token's context class in the "current" block.
 * - Layer 0 has a previous-token attention head: its queries and keys come
 *   from the bias dimension only, and RoPE turns them into a positional
 *   pattern that peaks at distance 1, so the head copies the previous token's
 *   one-hot code into the "previous" block.
 * - Layer 0's SwiGLU FFN has one neuron per (previous, current) pair seen in
 *   the corpus: the up projection selects the current token, the gate fires
 *   only for the right previous token, and the down projection writes the
 *   difference between the trigram and the bigram log-probabilities into the
 *   "logit" block.
 * - The output matrix reads bigram log-probabilities from the current block
 *   and adds the logit block, so the model computes a backed-off character
 *   trigram model. The bias dimension dominates every RMSNorm, which makes the
 *   normalisations (almost exactly) constant scalings.
 *
 * Greedy decoding has a margin of at least {@link GREEDY_MARGIN} nats at every
 * step, so batched and solo evaluation agree token for token.
 *
 * The `bench` model embeds the same construction in a much wider and deeper
 * network whose extra weights are small seeded pseudo-random values that
 * never write into the dimensions the construction uses.
 */
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gguf, writeGguf, type GgufFile, type GgufTensor, type GgufValue } from './gguf-writer.js';

/** Which built-in model: `tiny` for tests and `npm start`, `bench` for benchmarks. */
export type BuiltinModelKind = 'tiny' | 'bench';

/** All built-in model kinds. */
export const BUILTIN_MODEL_KINDS: readonly BuiltinModelKind[] = ['tiny', 'bench'];

/** Token id of `<unk>`. */
export const UNK_TOKEN_ID = 0;
/** Token id of `<s>` (beginning of sequence; the metadata asks for it to be prepended). */
export const BOS_TOKEN_ID = 1;
/** Token id of `</s>` (end of sequence: the model emits it where a corpus paragraph ends). */
export const EOS_TOKEN_ID = 2;
/** Token id of the byte-fallback token `<0x00>`; byte `b` is token `BYTE_TOKEN_OFFSET + b`. */
export const BYTE_TOKEN_OFFSET = 3;
/** Training context length written to the models' metadata. */
export const BUILTIN_CONTEXT_LENGTH = 4096;
/** Minimum gap, in logits, between the greedy choice and the runner-up at every step. */
export const GREEDY_MARGIN = 1.5;

/**
 * Example prompts for the tiny model, decoded greedily (`temperature: 0`,
 * `topK: 1`) with or without a leading BOS; `test/model.test.ts` checks each
 * claim.
 */
export const TINY_MODEL_PROMPTS = {
  /** The greedy continuation runs for at least 500 tokens without EOS. */
  long: 'Alice was beginning to get very tired',
  /** The greedy continuation ends with EOS within 50 tokens. */
  endsWithEos: 'THE GET',
  /** The greedy continuation contains a multi-byte UTF-8 character within 100 tokens. */
  multiByte: 'Oh dear! I shall be late.',
} as const;

/** Shape of a built-in model. */
export interface BuiltinModelShape {
  readonly vocabularySize: number;
  readonly embeddingLength: number;
  readonly feedForwardLength: number;
  readonly blockCount: number;
  readonly headCount: number;
  readonly headDim: number;
  /** Total number of weights in all tensors. */
  readonly parameterCount: number;
}

/**
 * Path of the built-in model file. The name includes a hash of the corpus and
 * of the generator version, so a changed corpus or construction never reuses
 * a stale file.
 *
 * @param dir directory of the model files; default `<package root>/models`.
 */
export function builtinModelPath(kind: BuiltinModelKind, dir: string = defaultModelsDir()): string {
  return join(dir, `rkllm-${kind}-${modelFingerprint(kind, readCorpusFiles())}.gguf`);
}

/**
 * Returns the path of the built-in model, generating the file first if it
 * does not exist. The file is written to a unique temporary file in the same
 * directory and then renamed into place, so concurrent callers (even in other
 * processes) never see a partial file. Generation is deterministic: the same
 * corpus always gives a byte-identical file.
 *
 * @param dir directory of the model files; default `<package root>/models`.
 */
export async function ensureBuiltinModel(kind: BuiltinModelKind, dir: string = defaultModelsDir()): Promise<string> {
  const path = builtinModelPath(kind, dir);
  if (existsSync(path)) return path;
  await mkdir(dir, { recursive: true });
  const tempPath = `${path}.${process.pid}-${randomUUID()}.tmp`;
  try {
    await writeGguf(tempPath, buildModel(kind).file);
    await rename(tempPath, path);
  } catch (error) {
    await rm(tempPath, { force: true });
    throw error;
  }
  return path;
}

/** Shape and parameter count of a built-in model (computed without writing it). */
export function describeBuiltinModel(kind: BuiltinModelKind): BuiltinModelShape {
  const { shape, file } = buildModel(kind);
  const parameterCount = file.tensors.reduce((sum, tensor) => sum + elementCount(tensor.dims), 0);
  return { ...shape, parameterCount };
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/** Bump whenever the construction changes, so no stale model file is reused. */
const GENERATOR_VERSION = 1;

/** The nearest ancestor directory of this module that has a package.json. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  return dir;
}

function defaultModelsDir(): string {
  return join(packageRoot(), 'models');
}

interface CorpusFile {
  readonly name: string;
  readonly text: string;
}

/** The `corpus/*.txt` files of the package, sorted by name. */
function readCorpusFiles(): CorpusFile[] {
  const dir = join(packageRoot(), 'corpus');
  const names = readdirSync(dir)
    .filter((name) => name.endsWith('.txt'))
    .sort();
  if (names.length === 0) throw new Error(`no corpus files (*.txt) in ${dir}`);
  return names.map((name) => ({ name, text: readFileSync(join(dir, name), 'utf8') }));
}

function modelFingerprint(kind: BuiltinModelKind, corpus: readonly CorpusFile[]): string {
  const hash = createHash('sha256').update(`rkllm-${kind}-v${GENERATOR_VERSION}\0`);
  for (const file of corpus) hash.update(`${file.name}\0${file.text}\0`);
  return hash.digest('hex').slice(0, 12);
}

/** Splits a text into paragraphs at blank lines, collapsing whitespace runs to one space. */
function paragraphs(text: string): string[] {
  return text
    .split(/\n\s*\n/)
    .map((paragraph) => paragraph.replace(/\s+/g, ' ').trim())
    .filter((paragraph) => paragraph.length > 0);
}

// ---------------------------------------------------------------------------
// Vocabulary: <unk> <s> </s>, 256 byte tokens, one token per printable ASCII
// character of the corpus. Everything else is spelled with byte tokens.
// ---------------------------------------------------------------------------

const TOKEN_TYPE_NORMAL = 1;
const TOKEN_TYPE_UNKNOWN = 2;
const TOKEN_TYPE_CONTROL = 3;
const TOKEN_TYPE_BYTE = 6;
/** SentencePiece's stand-in for a space. */
const SPACE_PIECE = '\u2581';

interface Vocabulary {
  readonly pieces: readonly string[];
  readonly types: readonly number[];
  /** Token id of each printable ASCII character that has its own token. */
  readonly charTokens: ReadonlyMap<string, number>;
}

function isPrintableAscii(char: string): boolean {
  const code = char.codePointAt(0)!;
  return code >= 0x20 && code <= 0x7e;
}

function buildVocabulary(texts: readonly string[]): Vocabulary {
  const chars = new Set<string>();
  for (const text of texts) {
    for (const char of text) if (isPrintableAscii(char)) chars.add(char);
  }
  const sortedChars = [...chars].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
  const bytePieces = Array.from({ length: 256 }, (_, byte) => `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`);
  const charOffset = BYTE_TOKEN_OFFSET + bytePieces.length;
  return {
    pieces: ['<unk>', '<s>', '</s>', ...bytePieces, ...sortedChars.map((c) => (c === ' ' ? SPACE_PIECE : c))],
    types: [
      TOKEN_TYPE_UNKNOWN,
      TOKEN_TYPE_CONTROL,
      TOKEN_TYPE_CONTROL,
      ...bytePieces.map(() => TOKEN_TYPE_BYTE),
      ...sortedChars.map(() => TOKEN_TYPE_NORMAL),
    ],
    charTokens: new Map(sortedChars.map((char, i) => [char, charOffset + i])),
  };
}

/** Tokenizes like llama.cpp does with this vocabulary (no space prefix, byte fallback). */
function tokenize(text: string, vocabulary: Vocabulary): number[] {
  const tokens: number[] = [];
  for (const char of text) {
    const token = vocabulary.charTokens.get(char);
    if (token !== undefined) tokens.push(token);
    else for (const byte of Buffer.from(char, 'utf8')) tokens.push(BYTE_TOKEN_OFFSET + byte);
  }
  return tokens;
}

// ---------------------------------------------------------------------------
// Statistics: target logits of a backed-off character trigram model.
//
// Tokens are grouped into context classes: one for the paragraph boundary
// (<s> and </s>), one for every token the corpus never uses, and one for each
// token it does use. Every paragraph is read as `<s> text </s>`.
// ---------------------------------------------------------------------------

const BOUNDARY_CLASS = 0;
const UNSEEN_CLASS = 1;
/** Logit of a corpus token never seen in the current context. */
const UNSEEN_LOGIT = -16;
/** Logit of a token that never occurs in the corpus (<unk>, <s>, unused bytes). */
const IMPOSSIBLE_LOGIT = -32;

interface PairLogits {
  readonly previous: number;
  readonly current: number;
  /** Trigram target logits minus the current class's bigram logits, per output. */
  readonly correction: Float32Array;
}

interface Statistics {
  readonly vocabulary: Vocabulary;
  /** Context class of each token id. */
  readonly classOf: Int32Array;
  readonly classCount: number;
  /** The token ids the model can produce (</s> and every corpus token), in logit-block order. */
  readonly outputs: readonly number[];
  /** Target logits over `outputs` given only the current token's class, per class. */
  readonly bigram: readonly Float32Array[];
  /** Corrections for the (previous, current) class pairs whose trigram targets differ. */
  readonly pairs: readonly PairLogits[];
}

function buildStatistics(texts: readonly string[]): Statistics {
  const vocabulary = buildVocabulary(texts);
  const sequences = texts.map((text) => [BOS_TOKEN_ID, ...tokenize(text, vocabulary), EOS_TOKEN_ID]);
  const used = [...new Set(sequences.flat())].filter((t) => t !== BOS_TOKEN_ID && t !== EOS_TOKEN_ID).sort((a, b) => a - b);

  const classOf = new Int32Array(vocabulary.pieces.length).fill(UNSEEN_CLASS);
  classOf[BOS_TOKEN_ID] = BOUNDARY_CLASS;
  classOf[EOS_TOKEN_ID] = BOUNDARY_CLASS;
  used.forEach((token, i) => (classOf[token] = UNSEEN_CLASS + 1 + i));
  const classCount = UNSEEN_CLASS + 1 + used.length;

  const outputs = [EOS_TOKEN_ID, ...used];
  const outputIndex = new Map(outputs.map((token, i) => [token, i]));
  const classCounts = Array.from({ length: classCount }, () => new Int32Array(outputs.length));
  const pairCounts = new Map<number, Int32Array>();
  for (const sequence of sequences) {
    for (let i = 0; i + 1 < sequence.length; i++) {
      // At position 0 the previous-token head can only attend to the token itself.
      const previous = classOf[sequence[Math.max(i - 1, 0)]!]!;
      const current = classOf[sequence[i]!]!;
      const next = outputIndex.get(sequence[i + 1]!)!;
      classCounts[current]![next]!++;
      const key = previous * classCount + current;
      const counts = pairCounts.get(key) ?? new Int32Array(outputs.length);
      counts[next]!++;
      pairCounts.set(key, counts);
    }
  }
  // After a token the corpus never uses, predict plain token frequencies.
  const unigram = new Int32Array(outputs.length);
  for (const counts of classCounts) counts.forEach((count, i) => (unigram[i]! += count));
  classCounts[UNSEEN_CLASS] = unigram;

  const bigram = classCounts.map(targetLogits);
  const pairs = [...pairCounts.keys()]
    .sort((a, b) => a - b)
    .map((key) => pairLogits(key, classCount, targetLogits(pairCounts.get(key)!), bigram))
    .filter((pair) => pair.correction.some((value) => value !== 0));
  return { vocabulary, classOf, classCount, outputs, bigram, pairs };
}

function pairLogits(key: number, classCount: number, trigram: Float32Array, bigram: readonly Float32Array[]): PairLogits {
  const current = key % classCount;
  const backoff = bigram[current]!;
  return {
    previous: Math.floor(key / classCount),
    current,
    correction: trigram.map((logit, i) => logit - backoff[i]!),
  };
}

/**
 * Log-probabilities of the observed counts (unseen outputs get
 * {@link UNSEEN_LOGIT}), with the most frequent output (the first one on a
 * tie) raised to at least {@link GREEDY_MARGIN} above the runner-up.
 */
function targetLogits(counts: Int32Array): Float32Array {
  const total = counts.reduce((sum, count) => sum + count, 0);
  const logits = new Float32Array(counts.length);
  let best = 0;
  counts.forEach((count, i) => {
    logits[i] = count > 0 ? Math.log(count / total) : UNSEEN_LOGIT;
    if (count > counts[best]!) best = i;
  });
  const runnerUp = Math.max(...logits.filter((_, i) => i !== best));
  logits[best] = Math.max(logits[best]!, runnerUp + GREEDY_MARGIN);
  return logits;
}

// ---------------------------------------------------------------------------
// Core weights: the trigram model as one llama layer.
//
// Residual layout: [bias | current class one-hot | previous class one-hot |
// logit block (one dim per output) | zero padding]. The bias and the one-hot
// entries are all 1, so every RMSNorm input has a fixed energy and the norm
// is a known scaling.
// ---------------------------------------------------------------------------

/** Head dimension (= RoPE dimension count); must hold a one-hot class code. */
const HEAD_DIM = 128;
/**
 * RoPE base. Below 1 the rotation frequencies range from 1 to ~4.9 rad per
 * position, which makes the "distance 1" pattern stand out: every other
 * distance below 8192 scores at most 28% of its peak.
 */
const ROPE_FREQ_BASE = 0.2;
/** Query and key amplitude per rotary pair; gives a softmax margin of ~37 nats. */
const ATTENTION_AMPLITUDE = 3;
/** Gate pre-activation is +SHARPNESS/2 for the right previous token, -SHARPNESS/2 otherwise. */
const GATE_SHARPNESS = 40;
/** The FFN writes corrections scaled by this, so they barely change the final norm. */
const LOGIT_BLOCK_SCALE = 1e-4;
const RMS_NORM_EPS = 1e-5;
/** Dimension counts are rounded up to multiples of this. */
const DIM_ALIGNMENT = 32;

/** A row-major matrix of `rows` x `cols`: ggml dims `[cols, rows]`. */
class Matrix {
  readonly data: Float32Array;

  constructor(
    readonly rows: number,
    readonly cols: number,
  ) {
    this.data = new Float32Array(rows * cols);
  }

  set(row: number, col: number, value: number): void {
    if (row < 0 || row >= this.rows || col < 0 || col >= this.cols) {
      throw new RangeError(`(${row}, ${col}) is outside a ${this.rows}x${this.cols} matrix`);
    }
    this.data[row * this.cols + col] = value;
  }

  row(row: number): Float32Array {
    return this.data.subarray(row * this.cols, (row + 1) * this.cols);
  }
}

/** Where the core's residual dimensions are. */
class CoreLayout {
  readonly bias = 0;
  /** Residual dimensions used, including padding. */
  readonly width: number;
  /** FFN neurons used, including padding. */
  readonly ffnLength: number;

  constructor(private readonly stats: Statistics) {
    if (stats.classCount > HEAD_DIM) {
      throw new Error(`the corpus has ${stats.classCount} token classes; at most ${HEAD_DIM} fit in a head`);
    }
    this.width = alignUp(1 + 2 * stats.classCount + stats.outputs.length, DIM_ALIGNMENT);
    this.ffnLength = alignUp(stats.pairs.length, DIM_ALIGNMENT);
  }

  current(tokenClass: number): number {
    return 1 + tokenClass;
  }

  previous(tokenClass: number): number {
    return 1 + this.stats.classCount + tokenClass;
  }

  logit(output: number): number {
    return 1 + 2 * this.stats.classCount + output;
  }
}

/** The weights of one transformer block (the norms are all ones). */
interface BlockWeights {
  readonly attnQ: Matrix;
  readonly attnK: Matrix;
  readonly attnV: Matrix;
  readonly attnOutput: Matrix;
  readonly ffnGate: Matrix;
  readonly ffnUp: Matrix;
  readonly ffnDown: Matrix;
}

/** The core's tensors: the embeddings and block 0, sized to the layout. */
interface CoreWeights {
  readonly layout: CoreLayout;
  readonly tokenEmbedding: Matrix;
  readonly block: BlockWeights;
  readonly output: Matrix;
}

/** RMSNorm divisor of a residual vector with squared norm `energy` in `width` dims. */
function rmsOf(energy: number, width: number): number {
  return Math.sqrt(energy / width + RMS_NORM_EPS);
}

function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/**
 * Builds the core for a model whose residual stream has `modelWidth`
 * dimensions (at least the layout's width; extra dimensions stay near zero).
 */
function buildCoreWeights(stats: Statistics, layout: CoreLayout, modelWidth: number): CoreWeights {
  // The norms see bias + current (energy 2), then also previous (energy 3);
  // the FFN's output adds almost nothing to the final norm.
  const attnRms = rmsOf(2, modelWidth);
  const ffnRms = rmsOf(3, modelWidth);
  return {
    layout,
    tokenEmbedding: tokenEmbedding(stats, layout),
    block: { ...previousTokenHead(stats, layout, attnRms), ...pairNeurons(stats, layout, ffnRms) },
    output: outputMatrix(stats, layout, ffnRms),
  };
}

function tokenEmbedding(stats: Statistics, layout: CoreLayout): Matrix {
  const embedding = new Matrix(stats.vocabulary.pieces.length, layout.width);
  stats.classOf.forEach((tokenClass, token) => {
    embedding.set(token, layout.bias, 1);
    embedding.set(token, layout.current(tokenClass), 1);
  });
  return embedding;
}

/**
 * An attention head that copies the previous token's class one-hot into the
 * "previous" block. RoPE rotates pair i of a query or key at position p by
 * p*theta_i, so a key (A, 0) and a query A*(cos theta_i, -sin theta_i) give
 * pair i the score A^2 cos((m - 1) theta_i) at distance m: the sum over all
 * pairs peaks at m = 1, and the softmax picks the previous token.
 */
function previousTokenHead(
  stats: Statistics,
  layout: CoreLayout,
  rms: number,
): Pick<BlockWeights, 'attnQ' | 'attnK' | 'attnV' | 'attnOutput'> {
  const attnQ = new Matrix(HEAD_DIM, layout.width);
  const attnK = new Matrix(HEAD_DIM, layout.width);
  const attnV = new Matrix(HEAD_DIM, layout.width);
  const attnOutput = new Matrix(layout.width, HEAD_DIM);
  const base = Math.fround(ROPE_FREQ_BASE);
  for (let pair = 0; pair < HEAD_DIM / 2; pair++) {
    const theta = base ** ((-2 * pair) / HEAD_DIM);
    attnQ.set(2 * pair, layout.bias, ATTENTION_AMPLITUDE * Math.cos(theta) * rms);
    attnQ.set(2 * pair + 1, layout.bias, -ATTENTION_AMPLITUDE * Math.sin(theta) * rms);
    attnK.set(2 * pair, layout.bias, ATTENTION_AMPLITUDE * rms);
  }
  for (let tokenClass = 0; tokenClass < stats.classCount; tokenClass++) {
    attnV.set(tokenClass, layout.current(tokenClass), rms);
    attnOutput.set(layout.previous(tokenClass), tokenClass, 1);
  }
  return { attnQ, attnK, attnV, attnOutput };
}

/**
 * One SwiGLU neuron per (previous, current) pair: `up` is 1 exactly when the
 * current class matches, the gate is silu(+-SHARPNESS/2) depending on the
 * previous class, and `down` writes the pair's logit correction.
 */
function pairNeurons(stats: Statistics, layout: CoreLayout, rms: number): Pick<BlockWeights, 'ffnGate' | 'ffnUp' | 'ffnDown'> {
  const ffnGate = new Matrix(layout.ffnLength, layout.width);
  const ffnUp = new Matrix(layout.ffnLength, layout.width);
  const ffnDown = new Matrix(layout.width, layout.ffnLength);
  const firing = silu(GATE_SHARPNESS / 2);
  stats.pairs.forEach((pair, neuron) => {
    ffnUp.set(neuron, layout.current(pair.current), rms);
    ffnGate.set(neuron, layout.previous(pair.previous), GATE_SHARPNESS * rms);
    ffnGate.set(neuron, layout.bias, (-GATE_SHARPNESS / 2) * rms);
    pair.correction.forEach((value, output) => {
      ffnDown.set(layout.logit(output), neuron, (LOGIT_BLOCK_SCALE * value) / firing);
    });
  });
  return { ffnGate, ffnUp, ffnDown };
}

/** Bigram logits from the current block, plus the logit block, plus a floor for impossible tokens. */
function outputMatrix(stats: Statistics, layout: CoreLayout, rms: number): Matrix {
  const output = new Matrix(stats.vocabulary.pieces.length, layout.width);
  const outputIndex = new Map(stats.outputs.map((token, i) => [token, i]));
  for (let token = 0; token < output.rows; token++) {
    const index = outputIndex.get(token);
    if (index === undefined) {
      output.set(token, layout.bias, IMPOSSIBLE_LOGIT * rms);
      continue;
    }
    stats.bigram.forEach((logits, tokenClass) => output.set(token, layout.current(tokenClass), logits[index]! * rms));
    output.set(token, layout.logit(index), rms / LOGIT_BLOCK_SCALE);
  }
  return output;
}

// ---------------------------------------------------------------------------
// Model assembly
// ---------------------------------------------------------------------------

type ModelShape = Omit<BuiltinModelShape, 'parameterCount'>;

/** The bench model's size: about 57M parameters, 218 MiB in f32. */
const BENCH_DIMENSIONS = { embeddingLength: 768, feedForwardLength: 3072, blockCount: 6 } as const;
const BENCH_SEED = 0x5eed_2024;

/** Amplitudes of the uniform noise outside the core. */
interface NoiseAmplitudes {
  /** For weights that read the residual stream (q, k, v, gate, up). */
  readonly read: number;
  /** For weights that write to the residual stream outside the core's dimensions. */
  readonly write: number;
}

const NO_NOISE: NoiseAmplitudes = { read: 0, write: 0 };
const BENCH_NOISE: NoiseAmplitudes = { read: 0.02, write: 1e-4 };

interface BuiltinModel {
  readonly shape: ModelShape;
  readonly file: GgufFile;
}

function buildModel(kind: BuiltinModelKind): BuiltinModel {
  const stats = buildStatistics(readCorpusFiles().flatMap((file) => paragraphs(file.text)));
  const layout = new CoreLayout(stats);
  const vocabularySize = stats.vocabulary.pieces.length;
  const shape: ModelShape =
    kind === 'tiny'
      ? {
          vocabularySize,
          embeddingLength: layout.width,
          feedForwardLength: layout.ffnLength,
          blockCount: 1,
          headCount: 1,
          headDim: HEAD_DIM,
        }
      : {
          vocabularySize,
          ...BENCH_DIMENSIONS,
          headCount: BENCH_DIMENSIONS.embeddingLength / HEAD_DIM,
          headDim: HEAD_DIM,
        };
  const core = buildCoreWeights(stats, layout, shape.embeddingLength);
  const tensors = modelTensors(core, shape, kind === 'bench' ? BENCH_NOISE : NO_NOISE);
  return { shape, file: { metadata: modelMetadata(kind, shape, stats.vocabulary), tensors } };
}

/**
 * All tensors. The core is block 0 (its head is head 0, its neurons are the
 * first neurons) and everything else is noise, except that no noise is ever
 * written into the core's residual dimensions: the core computes exactly what
 * it computes alone, up to slightly different norms.
 */
function modelTensors(core: CoreWeights, shape: ModelShape, noise: NoiseAmplitudes): GgufTensor[] {
  const { embeddingLength: width, vocabularySize: vocab } = shape;
  const blocks = Array.from({ length: shape.blockCount }, (_, i) => (i === 0 ? core.block : noiseOnlyBlock(core.layout)));
  return [
    embedded('token_embd.weight', core.tokenEmbedding, vocab, width, 0),
    ...blocks.flatMap((block, i) => blockTensors(`blk.${i}`, block, shape, noise)),
    ones('output_norm.weight', width),
    embedded('output.weight', core.output, vocab, width, 0),
  ];
}

/** A block without a core: its output projections leave the core's residual dimensions alone. */
function noiseOnlyBlock(layout: CoreLayout): BlockWeights {
  const none = new Matrix(0, 0);
  const protectedRows = new Matrix(layout.width, 0);
  return {
    attnQ: none,
    attnK: none,
    attnV: none,
    attnOutput: protectedRows,
    ffnGate: none,
    ffnUp: none,
    ffnDown: protectedRows,
  };
}

function blockTensors(prefix: string, block: BlockWeights, shape: ModelShape, noise: NoiseAmplitudes): GgufTensor[] {
  const { embeddingLength: width, feedForwardLength: ffn } = shape;
  const attention = shape.headCount * shape.headDim;
  return [
    ones(`${prefix}.attn_norm.weight`, width),
    embedded(`${prefix}.attn_q.weight`, block.attnQ, attention, width, noise.read),
    embedded(`${prefix}.attn_k.weight`, block.attnK, attention, width, noise.read),
    embedded(`${prefix}.attn_v.weight`, block.attnV, attention, width, noise.read),
    embedded(`${prefix}.attn_output.weight`, block.attnOutput, width, attention, noise.write),
    ones(`${prefix}.ffn_norm.weight`, width),
    embedded(`${prefix}.ffn_gate.weight`, block.ffnGate, ffn, width, noise.read),
    embedded(`${prefix}.ffn_up.weight`, block.ffnUp, ffn, width, noise.read),
    embedded(`${prefix}.ffn_down.weight`, block.ffnDown, width, ffn, noise.write),
  ];
}

function ones(name: string, length: number): GgufTensor {
  return { name, dims: [length], type: 'F32', data: () => [new Float32Array(length).fill(1)] };
}

/**
 * A `rows` x `cols` weight whose top-left corner is `core` (zero-padded to
 * `cols`) and whose remaining rows are uniform noise in [-amplitude, amplitude),
 * seeded by the tensor name. Rows are produced one at a time.
 */
function embedded(name: string, core: Matrix, rows: number, cols: number, amplitude: number): GgufTensor {
  if (core.rows > rows || core.cols > cols) {
    throw new Error(`the ${core.rows}x${core.cols} core of ${name} does not fit in ${rows}x${cols}`);
  }
  return {
    name,
    dims: [cols, rows],
    type: 'F32',
    *data() {
      const random = mulberry32(BENCH_SEED ^ fnv1a(name));
      for (let row = 0; row < rows; row++) {
        const values = new Float32Array(cols);
        if (row < core.rows) values.set(core.row(row));
        else if (amplitude > 0) for (let i = 0; i < cols; i++) values[i] = (2 * random() - 1) * amplitude;
        yield values;
      }
    },
  };
}

function modelMetadata(kind: BuiltinModelKind, shape: ModelShape, vocabulary: Vocabulary): Map<string, GgufValue> {
  return new Map<string, GgufValue>([
    ['general.architecture', gguf.string('llama')],
    ['general.name', gguf.string(`rkllm-mcp ${kind}`)],
    ['general.description', gguf.string('Hand-built character trigram model of the rkllm-mcp corpus')],
    ['general.file_type', gguf.uint32(0)], // all F32
    ['llama.vocab_size', gguf.uint32(shape.vocabularySize)],
    ['llama.context_length', gguf.uint32(BUILTIN_CONTEXT_LENGTH)],
    ['llama.embedding_length', gguf.uint32(shape.embeddingLength)],
    ['llama.block_count', gguf.uint32(shape.blockCount)],
    ['llama.feed_forward_length', gguf.uint32(shape.feedForwardLength)],
    ['llama.attention.head_count', gguf.uint32(shape.headCount)],
    ['llama.attention.head_count_kv', gguf.uint32(shape.headCount)],
    ['llama.attention.key_length', gguf.uint32(shape.headDim)],
    ['llama.attention.value_length', gguf.uint32(shape.headDim)],
    ['llama.attention.layer_norm_rms_epsilon', gguf.float32(RMS_NORM_EPS)],
    ['llama.rope.dimension_count', gguf.uint32(shape.headDim)],
    ['llama.rope.freq_base', gguf.float32(ROPE_FREQ_BASE)],
    ['tokenizer.ggml.model', gguf.string('llama')],
    ['tokenizer.ggml.tokens', gguf.stringArray(vocabulary.pieces)],
    ['tokenizer.ggml.scores', gguf.float32Array(new Float32Array(vocabulary.pieces.length))],
    ['tokenizer.ggml.token_type', gguf.int32Array(vocabulary.types)],
    ['tokenizer.ggml.unknown_token_id', gguf.uint32(UNK_TOKEN_ID)],
    ['tokenizer.ggml.bos_token_id', gguf.uint32(BOS_TOKEN_ID)],
    ['tokenizer.ggml.eos_token_id', gguf.uint32(EOS_TOKEN_ID)],
    ['tokenizer.ggml.add_bos_token', gguf.bool(true)],
    ['tokenizer.ggml.add_eos_token', gguf.bool(false)],
    ['tokenizer.ggml.add_space_prefix', gguf.bool(false)],
  ]);
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

function elementCount(dims: readonly number[]): number {
  return dims.reduce((product, dim) => product * dim, 1);
}

/** 32-bit FNV-1a hash of a string's UTF-8 bytes. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

/** The mulberry32 PRNG: uniform floats in [0, 1) from a 32-bit seed. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
