const NEWLINE = 0x0a;

function isBlank(line: Buffer): boolean {
  for (const byte of line) if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0d) return false;
  return true;
}

/**
 * Cuts newline-delimited JSON (NDJSON) into lines, with a hard limit on a line's length: framing
 * only, no I/O, so TCP, stdio and the client's TCP wire share it. It never holds more than
 * `maxLineBytes` of a line. Each complete, non-blank line goes to `onLine` without its newline;
 * blank lines are skipped, and a trailing "\r" is left to the JSON parser, which ignores it. A
 * line that grows past the limit is reported once to `onOversize`, and its bytes are discarded up
 * to the next newline.
 */
export class LineSplitter {
  readonly #maxLineBytes: number;
  readonly #onLine: (line: Buffer) => void;
  readonly #onOversize: () => void;
  #parts: Buffer[] = [];
  #size = 0;
  /** Inside an oversize line: drop bytes until the next newline. */
  #discarding = false;

  constructor(maxLineBytes: number, onLine: (line: Buffer) => void, onOversize: () => void = () => {}) {
    this.#maxLineBytes = maxLineBytes;
    this.#onLine = onLine;
    this.#onOversize = onOversize;
  }

  /** Feeds bytes. */
  push(data: Buffer): void {
    let start = 0;
    for (;;) {
      const newline = data.indexOf(NEWLINE, start);
      this.#append(data.subarray(start, newline === -1 ? data.length : newline));
      if (newline === -1) return;
      this.#finishLine();
      start = newline + 1;
    }
  }

  /** The input has ended: an unterminated last line is handed over too. */
  end(): void {
    this.#finishLine();
  }

  #append(piece: Buffer): void {
    if (this.#discarding || piece.length === 0) return;
    if (this.#size + piece.length > this.#maxLineBytes) {
      this.#parts = [];
      this.#size = 0;
      this.#discarding = true;
      this.#onOversize();
      return;
    }
    this.#parts.push(piece);
    this.#size += piece.length;
  }

  #finishLine(): void {
    if (this.#size > 0) {
      const line = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#size);
      if (!isBlank(line)) this.#onLine(line);
    }
    this.#parts = [];
    this.#size = 0;
    this.#discarding = false;
  }
}
