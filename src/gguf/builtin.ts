/**
 * The project's own deterministic GGUF models, generated on demand from the
 * texts in `corpus/`: no downloads, no training loop.
 *
 * Both models are llama-architecture word-level language models whose weights
 * are written from corpus statistics (see `builtin/core-weights.ts`):
 *
 * - The vocabulary has a token for every corpus word (with and without a
 *   leading space) and for each of its prefixes, so llama.cpp's SentencePiece
 *   merges grow every corpus word into one token; other text is spelled with
 *   characters and UTF-8 byte tokens.
 * - The token embedding holds a three-hot code of the token's context class
 *   and the token's bigram "context vector". The output matrix scores each
 *   word as a floor plus a fixed random code dotted with the context vector;
 *   each context vector is the least-norm fit of that word's most frequent
 *   successors (`builtin/fit.ts`).
 * - Layer 0 has a previous-token attention head (RoPE peaking at distance 1)
 *   that copies the previous token's code, and one SwiGLU neuron per
 *   corrected (previous, current) pair that adds the trigram correction.
 *   The bias dimension dominates every RMSNorm, which makes the
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
import { elementCount } from './gguf-writer.js';

export { builtinModelPath, ensureBuiltinModel, type BuiltinModelOptions } from './builtin/cache.js';
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
  endsWithEos: 'shall not perish from the earth',
  /** The greedy continuation contains a multi-byte UTF-8 character within 100 tokens. */
  multiByte: 'The Queen said',
} as const;

/** Shape and parameter count of a built-in model (computed without writing it). */
export function describeBuiltinModel(kind: BuiltinModelKind, corpus?: readonly string[]): BuiltinModelShape {
  const { shape, file } = buildModel(kind, corpus);
  const parameterCount = file.tensors.reduce((sum, tensor) => sum + elementCount(tensor.dims), 0);
  return { ...shape, parameterCount };
}
