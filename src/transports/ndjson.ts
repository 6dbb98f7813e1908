/** One frame cut from a newline-delimited byte stream. */
export type LineFrame =
  /** A complete, non-blank line, without its newline. */
  | { kind: 'line'; data: Buffer }
  /** A line grew past the limit; its bytes were discarded up to the next newline. */
  | { kind: 'oversize' };

const NEWLINE = 0x0a;

function isBlank(line: Buffer): boolean {
  for (const byte of line) if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0d) return false;
  return true;
}

/**
 * Cuts newline-delimited JSON (NDJSON) into lines, with a hard limit on a line's length: framing
 * only, no I/O, so TCP and stdio share it. It never holds more than `maxLineBytes` of a line.
 * Blank lines are skipped; a trailing "\r" is left to the JSON parser, which ignores it.
 */
export class LineSplitter {
  readonly #maxLineBytes: number;
  #parts: Buffer[] = [];
  #size = 0;
  /** Inside an oversize line: drop bytes until the next newline. */
  #discarding = false;

  constructor(maxLineBytes: number) {
    this.#maxLineBytes = maxLineBytes;
  }

  /** Feeds bytes; returns the frames they complete. */
  push(data: Buffer): LineFrame[] {
    const frames: LineFrame[] = [];
    let start = 0;
    for (;;) {
      const newline = data.indexOf(NEWLINE, start);
      this.#append(data.subarray(start, newline === -1 ? data.length : newline), frames);
      if (newline === -1) return frames;
      this.#finishLine(frames);
      start = newline + 1;
    }
  }

  /** The input has ended: an unterminated last line becomes a frame of its own. */
  end(): LineFrame[] {
    const frames: LineFrame[] = [];
    this.#finishLine(frames);
    return frames;
  }

  #append(piece: Buffer, frames: LineFrame[]): void {
    if (this.#discarding || piece.length === 0) return;
    if (this.#size + piece.length > this.#maxLineBytes) {
      this.#parts = [];
      this.#size = 0;
      this.#discarding = true;
      frames.push({ kind: 'oversize' });
      return;
    }
    this.#parts.push(piece);
    this.#size += piece.length;
  }

  #finishLine(frames: LineFrame[]): void {
    if (this.#size > 0) {
      const line = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#size);
      if (!isBlank(line)) frames.push({ kind: 'line', data: line });
    }
    this.#parts = [];
    this.#size = 0;
    this.#discarding = false;
  }
}
