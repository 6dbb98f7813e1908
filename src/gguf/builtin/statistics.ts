/**
 * Statistics: target logits of a word bigram model, with trigram corrections for the pairs of
 * tokens where they matter most.
 *
 * Tokens are grouped into context classes: one for the file boundary (<s> and </s>), one for every
 * token the corpus never uses, and one for each token it does use. Every corpus file is read as
 * `<s> paragraph \n paragraph \n ... paragraph </s>`.
 */
import { BOS_TOKEN_ID, BYTE_TOKEN_OFFSET, EOS_TOKEN_ID, buildVocabulary, tokenize, type Vocabulary } from './vocabulary.js';

/** Minimum gap, in logits, between the greedy choice and the runner-up at every step. */
export const GREEDY_MARGIN = 1.5;
/** Successors kept per context: the most frequent ones. */
const KEPT_SUCCESSORS = 12;
/** Trigram corrections: at most this many (previous, current) pairs. */
export const MAX_PAIRS = 480;

const BOUNDARY_CLASS = 0;
const UNSEEN_CLASS = 1;
const NEWLINE_TOKEN_ID = BYTE_TOKEN_OFFSET + 0x0a;
/** Logit of a token that never occurs in the corpus (<unk>, <s>, unused bytes, word prefixes). */
export const IMPOSSIBLE_LOGIT = -32;

/** Sparse target logits over the outputs: what the model should score after one context. */
export interface Targets {
  /** Indices into `Statistics.outputs`, most likely first. */
  readonly outputs: readonly number[];
  readonly logits: readonly number[];
}

export interface PairTargets {
  readonly previous: number;
  readonly current: number;
  readonly targets: Targets;
}

export interface Statistics {
  readonly vocabulary: Vocabulary;
  /** Context class of each token id. */
  readonly classOf: Int32Array;
  readonly classCount: number;
  /** The token ids the model can produce (</s> and every corpus token), in output order. */
  readonly outputs: readonly number[];
  /** Log unigram probability of each output. */
  readonly unigram: Float64Array;
  /** Targets given only the current token's class, per class. */
  readonly bigram: readonly Targets[];
  /** Targets for the (previous, current) class pairs that get a trigram correction. */
  readonly pairs: readonly PairTargets[];
}

/** `files` are corpus files, each a list of paragraphs. */
export function buildStatistics(files: readonly (readonly string[])[]): Statistics {
  const vocabulary = buildVocabulary(files.flat());
  const sequences = files.map((paragraphs) => [
    BOS_TOKEN_ID,
    ...paragraphs.flatMap((paragraph, i) => [...(i > 0 ? [NEWLINE_TOKEN_ID] : []), ...tokenize(paragraph, vocabulary)]),
    EOS_TOKEN_ID,
  ]);
  const used = [...new Set(sequences.flat())].filter((t) => t !== BOS_TOKEN_ID && t !== EOS_TOKEN_ID).sort((a, b) => a - b);

  const classOf = new Int32Array(vocabulary.pieces.length).fill(UNSEEN_CLASS);
  classOf[BOS_TOKEN_ID] = BOUNDARY_CLASS;
  classOf[EOS_TOKEN_ID] = BOUNDARY_CLASS;
  used.forEach((token, i) => (classOf[token] = UNSEEN_CLASS + 1 + i));
  const classCount = UNSEEN_CLASS + 1 + used.length;

  const outputs = [EOS_TOKEN_ID, ...used];
  const outputIndex = new Map(outputs.map((token, i) => [token, i]));
  const classCounts = Array.from({ length: classCount }, () => new Map<number, number>());
  const pairCounts = new Map<number, Map<number, number>>();
  const unigramCounts = new Map<number, number>();
  for (const sequence of sequences) {
    for (let i = 0; i + 1 < sequence.length; i++) {
      // At position 0 the previous-token head can only attend to the token itself.
      const previous = classOf[sequence[Math.max(i - 1, 0)]!]!;
      const current = classOf[sequence[i]!]!;
      const next = outputIndex.get(sequence[i + 1]!)!;
      increment(classCounts[current]!, next);
      increment(unigramCounts, next);
      const key = previous * classCount + current;
      if (!pairCounts.has(key)) pairCounts.set(key, new Map());
      increment(pairCounts.get(key)!, next);
    }
  }
  // After a token the corpus never uses, predict plain token frequencies.
  classCounts[UNSEEN_CLASS] = unigramCounts;
  const total = sum(unigramCounts.values());
  const unigram = Float64Array.from(outputs, (_, i) => Math.log((unigramCounts.get(i) ?? 0) / total));

  const isByte = (tokenClass: number): boolean => {
    const token = used[tokenClass - UNSEEN_CLASS - 1];
    return token !== undefined && token >= BYTE_TOKEN_OFFSET && token < BYTE_TOKEN_OFFSET + 256 && token !== NEWLINE_TOKEN_ID;
  };
  const pairs = [...pairCounts]
    .map(([key, counts]) => {
      const current = key % classCount;
      const own = targets(counts);
      // After a byte the next byte depends on the character being spelled; a file's last words lead to </s>.
      const required = isByte(current) || own.outputs[0] === 0;
      return { key, current, own, required, size: sum(counts.values()), gain: gain(counts, classCounts[current]!) };
    })
    .filter(({ required, size, gain }) => required || (size > 1 && gain > 0))
    .sort((a, b) => Number(b.required) - Number(a.required) || b.gain - a.gain || a.key - b.key)
    .slice(0, MAX_PAIRS)
    .sort((a, b) => a.key - b.key)
    .map(({ key, current, own }) => ({ previous: Math.floor(key / classCount), current, targets: own }));
  return { vocabulary, classOf, classCount, outputs, unigram, bigram: classCounts.map(targets), pairs };
}

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}

function increment(counts: Map<number, number>, key: number): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

/** Log-likelihood the pair's own counts gain over the current class's bigram counts. */
function gain(pair: Map<number, number>, bigram: Map<number, number>): number {
  const pairTotal = sum(pair.values());
  const bigramTotal = sum(bigram.values());
  let total = 0;
  for (const [next, count] of pair) total += count * (Math.log(count / pairTotal) - Math.log(bigram.get(next)! / bigramTotal));
  return total;
}

/**
 * Log-probabilities of the most frequent successors (the first output on a tie), with the most
 * frequent one raised to at least {@link GREEDY_MARGIN} above the runner-up.
 */
function targets(counts: Map<number, number>): Targets {
  const total = sum(counts.values());
  const kept = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, KEPT_SUCCESSORS);
  const logits = kept.map(([, count]) => Math.log(count / total));
  if (logits.length > 1) logits[0] = Math.max(logits[0]!, logits[1]! + GREEDY_MARGIN);
  return { outputs: kept.map(([output]) => output), logits };
}
