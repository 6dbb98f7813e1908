/**
 * The vocabulary: <unk> <s> </s>, 256 byte tokens, one token per printable ASCII character of the
 * corpus. Everything else is spelled with byte tokens.
 */

/** Token id of `<unk>`. */
export const UNK_TOKEN_ID = 0;
/** Token id of `<s>` (beginning of sequence; the metadata asks for it to be prepended). */
export const BOS_TOKEN_ID = 1;
/** Token id of `</s>` (end of sequence: the model emits it where a corpus paragraph ends). */
export const EOS_TOKEN_ID = 2;
/** Token id of the byte-fallback token `<0x00>`; byte `b` is token `BYTE_TOKEN_OFFSET + b`. */
export const BYTE_TOKEN_OFFSET = 3;

const TOKEN_TYPE_NORMAL = 1;
const TOKEN_TYPE_UNKNOWN = 2;
const TOKEN_TYPE_CONTROL = 3;
const TOKEN_TYPE_BYTE = 6;
/** SentencePiece's stand-in for a space. */
const SPACE_PIECE = '\u2581';

export interface Vocabulary {
  readonly pieces: readonly string[];
  readonly types: readonly number[];
  /** Token id of each printable ASCII character that has its own token. */
  readonly charTokens: ReadonlyMap<string, number>;
}

function isPrintableAscii(char: string): boolean {
  const code = char.codePointAt(0)!;
  return code >= 0x20 && code <= 0x7e;
}

export function buildVocabulary(texts: readonly string[]): Vocabulary {
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
export function tokenize(text: string, vocabulary: Vocabulary): number[] {
  const tokens: number[] = [];
  for (const char of text) {
    const token = vocabulary.charTokens.get(char);
    if (token !== undefined) tokens.push(token);
    else for (const byte of Buffer.from(char, 'utf8')) tokens.push(BYTE_TOKEN_OFFSET + byte);
  }
  return tokens;
}
