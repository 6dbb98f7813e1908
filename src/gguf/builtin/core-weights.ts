/**
 * Core weights: the word model as one llama layer.
 *
 * Residual layout: [bias | current class code | previous class code | context vector (the output
 * space of fit.ts)]. A class code is three-hot over {@link CODE_DIM} dimensions (entries 1/sqrt(3)),
 * so two different codes share at most two thirds of their energy. The bias and the codes give
 * every RMSNorm input a fixed energy, and the context vector is written scaled down by
 * {@link CONTEXT_SCALE}, so the norms are (almost exactly) known scalings.
 *
 * - The token embedding holds the bias, the token's class code, and its bigram context vector.
 * - The attention head copies the previous token's class code (RoPE peaking at distance 1).
 * - One SwiGLU neuron per corrected (previous, current) pair fires only when both codes match and
 *   adds the difference between the pair's context vector and the bigram one.
 * - The output matrix reads floor + code · context vector.
 */
import { alignUp } from '../gguf-writer.js';
import { fitContext, outputSpace, type OutputSpace } from './fit.js';
import { Matrix } from './matrix.js';
import { IMPOSSIBLE_LOGIT, type Statistics } from './statistics.js';

/** Head dimension (= RoPE dimension count); must hold a class code. */
export const HEAD_DIM = 128;
/**
 * RoPE base. Below 1 the rotation frequencies range from 1 to ~4.9 rad per
 * position, which makes the "distance 1" pattern stand out: every other
 * distance below 8192 scores at most 28% of its peak.
 */
export const ROPE_FREQ_BASE = 0.2;
/** Query and key amplitude per rotary pair; gives a softmax margin of ~37 nats. */
const ATTENTION_AMPLITUDE = 3;
/** Dimensions of a class code, and how many of them are set. */
const CODE_DIM = 32;
const CODE_ONES = 3;
/** The core's residual width: the rest after the bias and the two codes is the context vector. */
const CORE_WIDTH = 256;
/** Gate pre-activation is +SHARPNESS/6 when both codes match, at most -SHARPNESS/6 otherwise. */
const GATE_SHARPNESS = 120;
/** Context vectors are written scaled by this, so they barely change the norms. */
const CONTEXT_SCALE = 1e-3;
export const RMS_NORM_EPS = 1e-5;
/** Dimension counts are rounded up to multiples of this. */
const DIM_ALIGNMENT = 32;

/** Where the core's residual dimensions are. */
export class CoreLayout {
  readonly bias = 0;
  readonly width = CORE_WIDTH;
  readonly contextDim = CORE_WIDTH - 1 - 2 * CODE_DIM;
  /** FFN neurons used, including padding. */
  readonly ffnLength: number;

  constructor(stats: Statistics) {
    if (stats.classCount > binomial(CODE_DIM, CODE_ONES)) {
      throw new Error(`the corpus has ${stats.classCount} token classes; at most ${binomial(CODE_DIM, CODE_ONES)} codes exist`);
    }
    this.ffnLength = alignUp(Math.max(stats.pairs.length, 1), DIM_ALIGNMENT);
  }

  current(k: number): number {
    return 1 + k;
  }

  previous(k: number): number {
    return 1 + CODE_DIM + k;
  }

  context(k: number): number {
    return 1 + 2 * CODE_DIM + k;
  }
}

/** The weights of one transformer block (the norms are all ones). */
export interface BlockWeights {
  readonly attnQ: Matrix;
  readonly attnK: Matrix;
  readonly attnV: Matrix;
  readonly attnOutput: Matrix;
  readonly ffnGate: Matrix;
  readonly ffnUp: Matrix;
  readonly ffnDown: Matrix;
}

/** The core's tensors: the embeddings and block 0, sized to the layout. */
export interface CoreWeights {
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

/** The dimensions set in the code of each class: the class-th 3-subset of CODE_DIM, in lexicographic order. */
function classCodes(classCount: number): number[][] {
  const codes: number[][] = [];
  for (let a = 0; a < CODE_DIM && codes.length < classCount; a++) {
    for (let b = a + 1; b < CODE_DIM && codes.length < classCount; b++) {
      for (let c = b + 1; c < CODE_DIM && codes.length < classCount; c++) codes.push([a, b, c]);
    }
  }
  return codes;
}

/**
 * Builds the core for a model whose residual stream has `modelWidth`
 * dimensions (at least the layout's width; extra dimensions stay near zero).
 */
export function buildCoreWeights(stats: Statistics, layout: CoreLayout, modelWidth: number): CoreWeights {
  // The norms see bias + current code (energy 2), then also the previous code (energy 3).
  const attnRms = rmsOf(2, modelWidth);
  const ffnRms = rmsOf(3, modelWidth);
  const space = outputSpace(stats, layout.contextDim);
  const codes = classCodes(stats.classCount);
  const bigram = stats.bigram.map((targets) => fitContext(space, targets));
  return {
    layout,
    tokenEmbedding: tokenEmbedding(stats, layout, codes, bigram),
    block: { ...previousTokenHead(layout, attnRms), ...pairNeurons(stats, layout, codes, space, bigram, ffnRms) },
    output: outputMatrix(stats, layout, space, ffnRms),
  };
}

function tokenEmbedding(stats: Statistics, layout: CoreLayout, codes: number[][], bigram: Float64Array[]): Matrix {
  const embedding = new Matrix(stats.vocabulary.pieces.length, layout.width);
  stats.classOf.forEach((tokenClass, token) => {
    embedding.set(token, layout.bias, 1);
    for (const k of codes[tokenClass]!) embedding.set(token, layout.current(k), 1 / Math.sqrt(CODE_ONES));
    bigram[tokenClass]!.forEach((value, k) => embedding.set(token, layout.context(k), CONTEXT_SCALE * value));
  });
  return embedding;
}

/**
 * An attention head that copies the previous token's class code into the
 * "previous" block. RoPE rotates pair i of a query or key at position p by
 * p*theta_i, so a key (A, 0) and a query A*(cos theta_i, -sin theta_i) give
 * pair i the score A^2 cos((m - 1) theta_i) at distance m: the sum over all
 * pairs peaks at m = 1, and the softmax picks the previous token.
 */
function previousTokenHead(layout: CoreLayout, rms: number): Pick<BlockWeights, 'attnQ' | 'attnK' | 'attnV' | 'attnOutput'> {
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
  for (let k = 0; k < CODE_DIM; k++) {
    attnV.set(k, layout.current(k), rms);
    attnOutput.set(layout.previous(k), k, 1);
  }
  return { attnQ, attnK, attnV, attnOutput };
}

/**
 * One SwiGLU neuron per corrected pair: `up` reads the bias, the gate is
 * SHARPNESS * (current match + previous match - 11/6), where a match is 1 for
 * the right code and at most 2/3 for any other, and `down` writes the pair's
 * context vector minus the bigram one.
 */
function pairNeurons(
  stats: Statistics,
  layout: CoreLayout,
  codes: number[][],
  space: OutputSpace,
  bigram: Float64Array[],
  rms: number,
): Pick<BlockWeights, 'ffnGate' | 'ffnUp' | 'ffnDown'> {
  const ffnGate = new Matrix(layout.ffnLength, layout.width);
  const ffnUp = new Matrix(layout.ffnLength, layout.width);
  const ffnDown = new Matrix(layout.width, layout.ffnLength);
  const firing = silu(GATE_SHARPNESS / 6);
  const entry = (GATE_SHARPNESS / Math.sqrt(CODE_ONES)) * rms;
  stats.pairs.forEach((pair, neuron) => {
    for (const k of codes[pair.current]!) ffnGate.set(neuron, layout.current(k), entry);
    for (const k of codes[pair.previous]!) ffnGate.set(neuron, layout.previous(k), entry);
    ffnGate.set(neuron, layout.bias, -GATE_SHARPNESS * (11 / 6) * rms);
    ffnUp.set(neuron, layout.bias, rms);
    const h = fitContext(space, pair.targets);
    const base = bigram[pair.current]!;
    h.forEach((value, k) => ffnDown.set(layout.context(k), neuron, (CONTEXT_SCALE * (value - base[k]!)) / firing));
  });
  return { ffnGate, ffnUp, ffnDown };
}

/** Floors and codes for the outputs, and a floor for impossible tokens. */
function outputMatrix(stats: Statistics, layout: CoreLayout, space: OutputSpace, rms: number): Matrix {
  const output = new Matrix(stats.vocabulary.pieces.length, layout.width);
  const outputIndex = new Map(stats.outputs.map((token, i) => [token, i]));
  const entry = rms / (CONTEXT_SCALE * Math.sqrt(space.dim));
  for (let token = 0; token < output.rows; token++) {
    const index = outputIndex.get(token);
    if (index === undefined) {
      output.set(token, layout.bias, IMPOSSIBLE_LOGIT * rms);
      continue;
    }
    output.set(token, layout.bias, space.floors[index]! * rms);
    for (let k = 0; k < space.dim; k++) output.set(token, layout.context(k), space.signs[index * space.dim + k]! * entry);
  }
  return output;
}

function binomial(n: number, k: number): number {
  let result = 1;
  for (let i = 0; i < k; i++) result = (result * (n - i)) / (i + 1);
  return result;
}
