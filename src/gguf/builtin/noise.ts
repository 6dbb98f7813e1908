/** The bench model's filler: seeded pseudo-random weights around the core, never written into its dimensions. */
import type { GgmlTensorType, GgufTensor } from '../gguf-writer.js';
import type { Matrix } from './matrix.js';

const BENCH_SEED = 0x5eed_2024;

/** Amplitudes of the uniform noise outside the core. */
export interface NoiseAmplitudes {
  /** For weights that read the residual stream (q, k, v, gate, up). */
  readonly read: number;
  /** For weights that write to the residual stream outside the core's dimensions. */
  readonly write: number;
}

export const NO_NOISE: NoiseAmplitudes = { read: 0, write: 0 };
export const BENCH_NOISE: NoiseAmplitudes = { read: 0.02, write: 1e-4 };

/**
 * A `rows` x `cols` weight whose top-left corner is `core` (zero-padded to
 * `cols`) and whose remaining rows are uniform noise in [-amplitude, amplitude),
 * seeded by the tensor name. Rows are produced one at a time.
 */
export function embedded(
  name: string,
  core: Matrix,
  rows: number,
  cols: number,
  amplitude: number,
  type: GgmlTensorType = 'F32',
): GgufTensor {
  if (core.rows > rows || core.cols > cols) {
    throw new Error(`the ${core.rows}x${core.cols} core of ${name} does not fit in ${rows}x${cols}`);
  }
  return {
    name,
    dims: [cols, rows],
    type,
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

/** 32-bit FNV-1a hash of a string's UTF-8 bytes. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

/** The mulberry32 PRNG: uniform floats in [0, 1) from a 32-bit seed. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
