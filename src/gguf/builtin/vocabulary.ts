/**
 * The vocabulary: <unk> <s> </s>, 256 byte tokens, one token per printable ASCII character of the
 * corpus, and one token per word of the corpus (with and without a leading space) together with
 * every prefix of it. Everything else is spelled with byte tokens.
 *
 * llama.cpp's SentencePiece tokenizer merges adjacent pieces pairwise, the best score first, and a
 * merge needs the merged text to be a token: the prefixes are the steps by which a word grows from
 * its first letters, and a piece's score is its length, so the leftmost growing prefix always wins
 * and every corpus word becomes its own token.
 */
import { GgufMetadataTokenizerTokenType as TokenType } from 'node-llama-cpp';

/** Token id of `<unk>`. */
export const UNK_TOKEN_ID = 0;
/** Token id of `<s>` (beginning of sequence; the metadata asks for it to be prepended). */
export const BOS_TOKEN_ID = 1;
/** Token id of `</s>` (end of sequence: the model emits it where a corpus file ends). */
export const EOS_TOKEN_ID = 2;
/** Token id of the byte-fallback token `<0x00>`; byte `b` is token `BYTE_TOKEN_OFFSET + b`. */
export const BYTE_TOKEN_OFFSET = 3;

/** SentencePiece's stand-in for a space. */
export const SPACE_PIECE = '\u2581';

/** A word: letters, with apostrophes inside (`didn't`), after an optional space. */
const WORD = /▁?[A-Za-z]+(?:'[A-Za-z]+)*/gu;
/** Runs no piece can span: a possible word (a space, then letters and apostrophes), or one character. */
const RUN = /▁?[A-Za-z']+|[^]/gu;

export interface Vocabulary {
  readonly pieces: readonly string[];
  readonly types: readonly number[];
  /** SentencePiece scores: the length of a word piece, 0 for the others. */
  readonly scores: Float32Array;
  /** Token id of each piece that is text (characters and word pieces). */
  readonly ids: ReadonlyMap<string, number>;
}

function isPrintableAscii(char: string): boolean {
  const code = char.codePointAt(0)!;
  return code >= 0x20 && code <= 0x7e;
}

/** `texts` are read with spaces as they are; they become `▁` here. */
export function buildVocabulary(texts: readonly string[]): Vocabulary {
  const chars = new Set<string>();
  const words = new Set<string>();
  for (const text of texts) {
    for (const char of text) if (isPrintableAscii(char)) chars.add(char === ' ' ? SPACE_PIECE : char);
    for (const [word] of text.replaceAll(' ', SPACE_PIECE).matchAll(WORD)) {
      const letters = [...word];
      for (let end = 2; end <= letters.length; end++) words.add(letters.slice(0, end).join(''));
    }
  }
  // The default order (UTF-16 code units) is the code point order here: every piece is in the BMP.
  const sortedChars = [...chars].sort();
  const sortedWords = [...words].sort();
  const bytePieces = Array.from({ length: 256 }, (_, byte) => `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`);
  const pieces = ['<unk>', '<s>', '</s>', ...bytePieces, ...sortedChars, ...sortedWords];
  const charOffset = BYTE_TOKEN_OFFSET + bytePieces.length;
  const wordOffset = charOffset + sortedChars.length;
  const scores = new Float32Array(pieces.length);
  sortedWords.forEach((word, i) => (scores[wordOffset + i] = [...word].length));
  return {
    pieces,
    types: [
      TokenType.unknown,
      TokenType.control,
      TokenType.control,
      ...bytePieces.map(() => TokenType.byte),
      ...sortedChars.map(() => TokenType.normal),
      ...sortedWords.map(() => TokenType.normal),
    ],
    scores,
    ids: new Map(pieces.slice(charOffset).map((piece, i) => [piece, charOffset + i])),
  };
}

/**
 * Tokenizes like llama.cpp does with this vocabulary (no space prefix, byte fallback): spaces
 * become `▁`, then within each run the adjacent pair whose merge is a token with the best score
 * (the leftmost on a tie) merges, until none does.
 */
export function tokenize(text: string, vocabulary: Vocabulary): number[] {
  const tokens: number[] = [];
  for (const [run] of text.replaceAll(' ', SPACE_PIECE).matchAll(RUN)) {
    for (const symbol of mergeRun([...run], vocabulary)) {
      const id = vocabulary.ids.get(symbol);
      if (id !== undefined) tokens.push(id);
      else for (const byte of Buffer.from(symbol, 'utf8')) tokens.push(BYTE_TOKEN_OFFSET + byte);
    }
  }
  return tokens;
}

function mergeRun(symbols: string[], vocabulary: Vocabulary): string[] {
  for (;;) {
    let best = -1;
    let bestScore = -Infinity;
    for (let i = 0; i + 1 < symbols.length; i++) {
      const id = vocabulary.ids.get(symbols[i]! + symbols[i + 1]!);
      if (id !== undefined && vocabulary.scores[id]! > bestScore) {
        best = i;
        bestScore = vocabulary.scores[id]!;
      }
    }
    if (best < 0) return symbols;
    symbols.splice(best, 2, symbols[best]! + symbols[best + 1]!);
  }
}
