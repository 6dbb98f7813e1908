/**
 * Statistics: target logits of a backed-off character trigram model.
 *
 * Tokens are grouped into context classes: one for the paragraph boundary (<s> and </s>), one for
 * every token the corpus never uses, and one for each token it does use. Every paragraph is read as
 * `<s> text </s>`.
 */
import { BOS_TOKEN_ID, EOS_TOKEN_ID, buildVocabulary, tokenize, type Vocabulary } from './vocabulary.js';

/** Minimum gap, in logits, between the greedy choice and the runner-up at every step. */
export const GREEDY_MARGIN = 1.5;

const BOUNDARY_CLASS = 0;
const UNSEEN_CLASS = 1;
/** Logit of a corpus token never seen in the current context. */
const UNSEEN_LOGIT = -16;
/** Logit of a token that never occurs in the corpus (<unk>, <s>, unused bytes). */
export const IMPOSSIBLE_LOGIT = -32;

export interface PairLogits {
  readonly previous: number;
  readonly current: number;
  /** Trigram target logits minus the current class's bigram logits, per output. */
  readonly correction: Float32Array;
}

export interface Statistics {
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

export function buildStatistics(texts: readonly string[]): Statistics {
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
