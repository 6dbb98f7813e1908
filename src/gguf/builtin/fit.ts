/**
 * The output space: the model scores output `u` after a context as `floor[u] + r[u] · h`, where
 * `r[u]` is a fixed pseudo-random sign code of `dim` dimensions (scaled by 1/sqrt(dim)) and `h` is
 * the context's vector. A context's `h` is the least-norm vector that gives its targets exactly;
 * any other output that comes too close to the greedy choice is pinned to its floor and the fit
 * is solved again, so greedy decoding keeps its margin.
 */
import { mulberry32 } from './noise.js';
import { GREEDY_MARGIN, type Statistics, type Targets } from './statistics.js';

const CODE_SEED = 0xc0de_2025;
/** Floors are the unigram log-probabilities lowered by this much. */
const FLOOR_OFFSET = -6;
/** Pins added to a fit at most; past that the fit gives up (it never does on the corpus). */
const MAX_PINNED = 64;

export interface OutputSpace {
  readonly dim: number;
  /** Score of each output when `h` is zero. */
  readonly floors: Float64Array;
  /** `outputs x dim` signs (+1 or -1) of the codes, row by row. */
  readonly signs: Int8Array;
}

export function outputSpace(stats: Statistics, dim: number): OutputSpace {
  const random = mulberry32(CODE_SEED);
  const signs = Int8Array.from({ length: stats.outputs.length * dim }, () => (random() < 0.5 ? -1 : 1));
  return { dim, floors: stats.unigram.map((logit) => logit + FLOOR_OFFSET), signs };
}

/** Scores of every output for the context vector `h`. */
export function scores(space: OutputSpace, h: Float64Array): Float64Array {
  const { dim, floors, signs } = space;
  const scale = 1 / Math.sqrt(dim);
  return floors.map((floor, u) => {
    let dot = 0;
    for (let k = 0; k < dim; k++) dot += signs[u * dim + k]! * h[k]!;
    return floor + dot * scale;
  });
}

/** The context vector for `targets`; the first target is the greedy choice. */
export function fitContext(space: OutputSpace, targets: Targets): Float64Array {
  const outputs = [...targets.outputs];
  const wanted = targets.logits.map((logit, i) => logit - space.floors[outputs[i]!]!);
  for (;;) {
    const h = leastNorm(space, outputs, wanted);
    const all = scores(space, h);
    const limit = all[outputs[0]!]! - GREEDY_MARGIN;
    const intruders = [...all.keys()].filter((u) => all[u]! > limit && !outputs.includes(u));
    if (intruders.length === 0) return h;
    if (outputs.length + intruders.length > targets.outputs.length + MAX_PINNED) {
      throw new Error(`cannot keep a greedy margin of ${GREEDY_MARGIN} for a context (${intruders.length} outputs too close)`);
    }
    for (const u of intruders) {
      outputs.push(u);
      wanted.push(0);
    }
  }
}

/** h = R^T (R R^T)^-1 y over the codes R of `outputs`. */
function leastNorm(space: OutputSpace, outputs: readonly number[], wanted: readonly number[]): Float64Array {
  const { dim, signs } = space;
  const n = outputs.length;
  const gram = Array.from({ length: n }, (_, i) =>
    Float64Array.from({ length: n }, (_, j) => {
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += signs[outputs[i]! * dim + k]! * signs[outputs[j]! * dim + k]!;
      return dot / dim;
    }),
  );
  const a = solve(gram, Float64Array.from(wanted));
  const h = new Float64Array(dim);
  const scale = 1 / Math.sqrt(dim);
  outputs.forEach((u, i) => {
    for (let k = 0; k < dim; k++) h[k] = h[k]! + a[i]! * signs[u * dim + k]! * scale;
  });
  return h;
}

/** Solves `m x = b` by Gaussian elimination with partial pivoting (m and b are overwritten). */
function solve(m: Float64Array[], b: Float64Array): Float64Array {
  const n = b.length;
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let row = col + 1; row < n; row++) if (Math.abs(m[row]![col]!) > Math.abs(m[pivot]![col]!)) pivot = row;
    [m[col], m[pivot]] = [m[pivot]!, m[col]!];
    [b[col], b[pivot]] = [b[pivot]!, b[col]!];
    for (let row = col + 1; row < n; row++) {
      const factor = m[row]![col]! / m[col]![col]!;
      for (let k = col; k < n; k++) m[row]![k]! -= factor * m[col]![k]!;
      b[row]! -= factor * b[col]!;
    }
  }
  const x = new Float64Array(n);
  for (let row = n - 1; row >= 0; row--) {
    let rest = b[row]!;
    for (let k = row + 1; k < n; k++) rest -= m[row]![k]! * x[k]!;
    x[row] = rest / m[row]![row]!;
  }
  return x;
}
