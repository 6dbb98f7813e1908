/** Progress of long work on stderr: a bar redrawn in place on a TTY, one line when the work ends otherwise. */

/** Where progress goes: `process.stderr` by default. */
export interface ProgressStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

export interface ProgressOptions {
  readonly stream?: ProgressStream;
  /** The line written off a TTY: a JSON log line (the shape of the server's logs) or plain text. */
  readonly line?: 'json' | 'text';
  /** Milliseconds; `performance.now` by default. */
  readonly now?: () => number;
}

/** One piece of long work. */
export interface Progress {
  /** How much is done, from 0 to 1. */
  update(fraction: number): void;
  /** Ends the work: completes the bar, or writes the one line. Idempotent. */
  done(): void;
}

const BAR_WIDTH = 30;
/** pino's number for `info`, so the line reads like the server's own logs. */
const INFO_LEVEL = 30;

export function startProgress(label: string, options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? (() => performance.now());
  const started = now();
  let shown = -1;
  let finished = false;
  const draw = (percent: number, end: string): void => {
    const filled = Math.round((percent / 100) * BAR_WIDTH);
    stream.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${String(percent).padStart(3)}%${end}`);
  };
  return {
    update(fraction) {
      const percent = Math.floor(100 * Math.min(Math.max(fraction, 0), 1));
      if (finished || !stream.isTTY || percent === shown) return;
      shown = percent;
      draw(percent, '');
    },
    done() {
      if (finished) return;
      finished = true;
      const seconds = `${((now() - started) / 1000).toFixed(1)} s`;
      if (stream.isTTY) draw(100, ` ${seconds}\n`);
      else if (options.line === 'json') {
        stream.write(`${JSON.stringify({ level: INFO_LEVEL, time: Date.now(), pid: process.pid, msg: `${label}: ${seconds}` })}\n`);
      } else stream.write(`${label}: ${seconds}\n`);
    },
  };
}
