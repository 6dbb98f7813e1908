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
import { buildModel, type BuiltinModelKind, type BuiltinModelShape } from './builtin/model.js';

export { builtinModelPath, ensureBuiltinModel } from './builtin/cache.js';
export { BUILTIN_CONTEXT_LENGTH, BUILTIN_MODEL_KINDS, type BuiltinModelKind, type BuiltinModelShape } from './builtin/model.js';
export { GREEDY_MARGIN } from './builtin/statistics.js';
export { BOS_TOKEN_ID, BYTE_TOKEN_OFFSET, EOS_TOKEN_ID, UNK_TOKEN_ID } from './builtin/vocabulary.js';

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

/** Shape and parameter count of a built-in model (computed without writing it). */
export function describeBuiltinModel(kind: BuiltinModelKind): BuiltinModelShape {
  const { shape, file } = buildModel(kind);
  const parameterCount = file.tensors.reduce((sum, tensor) => sum + elementCount(tensor.dims), 0);
  return { ...shape, parameterCount };
}

function elementCount(dims: readonly number[]): number {
  return dims.reduce((product, dim) => product * dim, 1);
}
