/**
 * Core weights: the trigram model as one llama layer.
 *
 * Residual layout: [bias | current class one-hot | previous class one-hot | logit block (one dim per
 * output) | zero padding]. The bias and the one-hot entries are all 1, so every RMSNorm input has a
 * fixed energy and the norm is a known scaling.
 */
import { Matrix } from './matrix.js';
import { IMPOSSIBLE_LOGIT, type Statistics } from './statistics.js';

/** Head dimension (= RoPE dimension count); must hold a one-hot class code. */
export const HEAD_DIM = 128;
/**
 * RoPE base. Below 1 the rotation frequencies range from 1 to ~4.9 rad per
 * position, which makes the "distance 1" pattern stand out: every other
 * distance below 8192 scores at most 28% of its peak.
 */
export const ROPE_FREQ_BASE = 0.2;
/** Query and key amplitude per rotary pair; gives a softmax margin of ~37 nats. */
const ATTENTION_AMPLITUDE = 3;
/** Gate pre-activation is +SHARPNESS/2 for the right previous token, -SHARPNESS/2 otherwise. */
const GATE_SHARPNESS = 40;
/** The FFN writes corrections scaled by this, so they barely change the final norm. */
const LOGIT_BLOCK_SCALE = 1e-4;
export const RMS_NORM_EPS = 1e-5;
/** Dimension counts are rounded up to multiples of this. */
const DIM_ALIGNMENT = 32;

/** Where the core's residual dimensions are. */
export class CoreLayout {
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

/**
 * Builds the core for a model whose residual stream has `modelWidth`
 * dimensions (at least the layout's width; extra dimensions stay near zero).
 */
export function buildCoreWeights(stats: Statistics, layout: CoreLayout, modelWidth: number): CoreWeights {
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

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}
