/**
 * A native runtime in a worker process, so a fault inside it ends that process and not the server:
 * both the RKLLM runtime (rkllm/worker.ts) and the RKNN vision encoder (rknn/encoder-worker.ts).
 * The messages travel over Node's IPC channel with the "advanced" serialization, so typed arrays
 * cross as they are. The parent sends requests, each with an id; the worker answers each with
 * exactly one `reply` or `failure`, and may send events (such as a run's callbacks) before it.
 */
import { fork, type ChildProcess } from 'node:child_process';
import koffi from 'koffi';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Request<C> {
  id: number;
  command: C;
}

/** A request that could not be carried out (a thrown error, not a runtime status code). */
export interface FailureMessage {
  type: 'failure';
  id: number;
  message: string;
  /** The runtime function that answered a failure status, and that status. */
  refused?: { fn: string; code: number };
}

export interface ReplyMessage {
  type: 'reply';
  id: number;
  value: unknown;
  /** The runtime refused the request; the worker wrote a mark after the runtime's output (see OUTPUT_MARK). */
  marked: boolean;
}

/**
 * Written by the worker to its stdout and stderr, followed by the request id and a newline, after
 * a request failed, so the parent can tell which of the runtime's log lines came before the
 * failure (each pipe keeps its order).
 */
const OUTPUT_MARK = '\u0001rkllm-mcp-mark ';

/** Runtime output lines kept for error messages. */
const KEPT_LINES = 200;

/** How long a failure waits for the runtime's output that explains it. */
const MARK_WAIT_MS = 1000;

/** How long `close` waits for the worker to exit before killing it. */
const CLOSE_WAIT_MS = 5000;

/** How long, after the worker exited, its output may take to arrive. */
const DRAIN_WAIT_MS = 1000;

/** How the worker process ended. */
export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The runtime's last output lines, oldest first. */
  lastLines: string[];
  /** The process's name in messages: "the RKLLM runtime process". */
  name: string;
}

/** "the RKLLM runtime process was killed by SIGSEGV (last output: ...)". */
export function describeExit(exit: WorkerExit): string {
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  const last = exit.lastLines.at(-1);
  return `${exit.name} ${how}${last ? ` (last output: ${last})` : ''}`;
}

/** The worker process ended while a request was open. */
export class WorkerExitError extends Error {
  constructor(readonly exit: WorkerExit) {
    super(describeExit(exit));
  }
}

/** A request that did not answer in time; the worker was killed. */
export class WorkerTimeoutError extends Error {}

/** The worker failed a request; the message ends with the runtime's output that explains it. */
export class WorkerFailure extends Error {
  constructor(
    reason: string,
    readonly log: string[],
    readonly refused: FailureMessage['refused'],
  ) {
    super([reason, ...log].join('; '));
  }
}

/**
 * The reason a refusal gives: the runtime's error and warning lines ("E rkllm: ...", "W rkllm: ...")
 * among what it wrote during the request, or all of it when it wrote none.
 */
export function explain(log: string[]): string {
  const problems = log.filter((line) => /^[EW]\b/.test(line));
  const lines = problems.length > 0 ? problems : log;
  return lines.length > 0 ? lines.join('; ') : 'the runtime gave no reason';
}

/** What a request answered, and the runtime's output lines that explain a refusal. */
export interface Reply<T> {
  value: T;
  /** The runtime's output while the request ran, when the worker marked it as refused. */
  log: string[];
}

export interface WorkerProcessOptions<E> {
  /** The worker module's path. */
  module: string;
  /** The runtime's name in messages: "the RKLLM runtime" (the process is "the RKLLM runtime process"). */
  name: string;
  /** Each message of the worker that is not a reply, in order. */
  onEvent?(message: E): void;
  /** Every output line of the runtime (its own logs on stdout and stderr). */
  onOutput(line: string, stream: 'stdout' | 'stderr'): void;
  /** The process ended without `close` being asked (a crash, or a kill after a timeout). */
  onExit(exit: WorkerExit): void;
}

interface Pending {
  resolve(reply: Reply<unknown>): void;
  reject(err: Error): void;
  /** The output line count when the request was sent: its log starts there. */
  from: number;
  timer: NodeJS.Timeout | undefined;
}

/**
 * One worker process, seen from the parent: requests with replies, events, the runtime's output
 * as lines, and the exit. A crash rejects every open request with a WorkerExitError.
 */
export class WorkerProcess<C extends { op: string }, E = never> {
  readonly #child: ChildProcess;
  readonly #options: WorkerProcessOptions<E>;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #lines: string[] = [];
  #lineCount = 0;
  readonly #partial = { stdout: '', stderr: '' };
  /** Marks seen per request id, and who waits for both streams' marks. */
  readonly #marks = new Map<number, { seen: number; at: number; done?: () => void }>();
  #closing = false;
  readonly #closed: Promise<WorkerExit>;

  constructor(options: WorkerProcessOptions<E>) {
    this.#options = options;
    this.#child = fork(options.module, [], { serialization: 'advanced', stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv: [] });
    for (const stream of ['stdout', 'stderr'] as const) {
      this.#child[stream]!.setEncoding('utf8');
      this.#child[stream]!.on('data', (data: string) => this.#onData(stream, data));
    }
    this.#child.on('message', (message: ReplyMessage | FailureMessage | E) => this.#onMessage(message));
    // Without a listener, a failed spawn or a write to a dead channel would throw.
    this.#child.on('error', () => undefined);
    this.#closed = this.#ended().then(({ code, signal }) => this.#onClose(code, signal));
  }

  /**
   * Resolves once the process has exited and its output is read to the end. (The child's "close"
   * event is not enough: Node skips it when the parent closed the IPC channel.)
   */
  async #ended(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const drained = (['stdout', 'stderr'] as const).map((name) => new Promise((resolve) => this.#child[name]!.once('close', resolve)));
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      this.#child.once('exit', (code: number | null, signal: NodeJS.Signals | null) => resolve({ code, signal })),
    );
    // A process the runtime started could hold the pipes open: do not wait for them forever.
    await Promise.race([Promise.all(drained), sleep(DRAIN_WAIT_MS, undefined, { ref: false })]);
    return exit;
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Sends a command; resolves with its reply. `timeoutMs` kills the worker if no reply comes in time. */
  request<T>(command: C, timeoutMs?: number): Promise<Reply<T>> {
    const id = this.#nextId++;
    return new Promise<Reply<T>>((resolve, reject) => {
      if (!this.#child.connected) {
        reject(new WorkerExitError(this.#exit(this.#child.exitCode, this.#child.signalCode)));
        return;
      }
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.#settle(id)?.reject(
                new WorkerTimeoutError(`${this.#options.name} did not answer ${command.op} within ${timeoutMs} ms; it was stopped`),
              );
              this.kill();
            }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (reply: Reply<unknown>) => void, reject, from: this.#lineCount, timer });
      this.#child.send({ id, command } satisfies Request<C>);
    });
  }

  /** Stops the worker at once (SIGKILL). The exit is reported to `onExit`. */
  kill(): void {
    this.#child.kill('SIGKILL');
  }

  /** Asks the worker to exit (closing its channel), kills it if it does not, and waits until it has. */
  async close(): Promise<void> {
    this.#closing = true;
    if (this.#child.connected) this.#child.disconnect();
    const timer = setTimeout(() => this.kill(), CLOSE_WAIT_MS);
    await this.#closed;
    clearTimeout(timer);
  }

  #settle(id: number): Pending | undefined {
    const pending = this.#pending.get(id);
    if (!pending) return undefined;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    return pending;
  }

  #onMessage(message: ReplyMessage | FailureMessage | E): void {
    const type = (message as { type?: unknown }).type;
    if (type !== 'reply' && type !== 'failure') {
      this.#options.onEvent?.(message as E);
      return;
    }
    const answer = message as ReplyMessage | FailureMessage;
    const pending = this.#settle(answer.id);
    if (!pending) return;
    const marked = answer.type === 'failure' || answer.marked;
    void this.#logOf(answer.id, pending.from, marked).then((log) => {
      if (answer.type === 'reply') pending.resolve({ value: answer.value, log });
      else pending.reject(new WorkerFailure(answer.message, log, answer.refused));
    });
  }

  /** The lines the runtime wrote while request `id` ran, once its marks have arrived on both streams. */
  async #logOf(id: number, from: number, marked: boolean): Promise<string[]> {
    if (!marked) return [];
    const mark = this.#marks.get(id) ?? { seen: 0, at: this.#lineCount };
    this.#marks.set(id, mark);
    if (mark.seen < 2) {
      const marked = new AbortController();
      mark.done = () => marked.abort();
      await sleep(MARK_WAIT_MS, undefined, { signal: marked.signal }).catch(() => undefined);
    }
    this.#marks.delete(id);
    const kept = this.#lineCount - this.#lines.length;
    return this.#lines.slice(Math.max(from - kept, 0), Math.max(mark.at - kept, 0));
  }

  #onData(stream: 'stdout' | 'stderr', data: string): void {
    const lines = (this.#partial[stream] + data).split('\n');
    this.#partial[stream] = lines.pop() ?? '';
    for (const line of lines) this.#onLine(stream, line);
  }

  #onLine(stream: 'stdout' | 'stderr', line: string): void {
    if (line.startsWith(OUTPUT_MARK)) {
      const id = Number(line.slice(OUTPUT_MARK.length));
      const mark = this.#marks.get(id) ?? { seen: 0, at: this.#lineCount };
      mark.seen++;
      mark.at = Math.max(mark.at, this.#lineCount);
      this.#marks.set(id, mark);
      if (mark.seen === 2) mark.done?.();
      return;
    }
    if (line.trim() === '') return;
    this.#lines.push(line);
    this.#lineCount++;
    if (this.#lines.length > KEPT_LINES) this.#lines.shift();
    this.#options.onOutput(line, stream);
  }

  #exit(code: number | null, signal: NodeJS.Signals | null): WorkerExit {
    return { code, signal, lastLines: this.#lines.slice(-5), name: `${this.#options.name} process` };
  }

  #onClose(code: number | null, signal: NodeJS.Signals | null): WorkerExit {
    for (const stream of ['stdout', 'stderr'] as const) if (this.#partial[stream]) this.#onLine(stream, this.#partial[stream]);
    const exit = this.#exit(code, signal);
    for (const id of [...this.#pending.keys()]) this.#settle(id)?.reject(new WorkerExitError(exit));
    for (const mark of this.#marks.values()) mark.done?.();
    if (!this.#closing) this.#options.onExit(exit);
    return exit;
  }
}

/** What a request produced, and whether the runtime refused it (so its log lines matter). */
export interface Outcome {
  value: unknown;
  failed: boolean;
}

/**
 * The worker's side: answers each request with `handle`'s outcome, or a failure for what it
 * throws (with `refused` when the error has `fn` and `code`), marking the runtime's output after
 * each failure. Exits when the parent is gone (closed the channel or died).
 */
export function serveRequests<C>(handle: (command: C) => Outcome | Promise<Outcome>, onDisconnect?: () => void): void {
  const fflush = koffi.load(null).func('int fflush(void *stream)');
  const mark = (id: number): void => {
    // After the runtime's own buffered output, so the parent knows which lines came before.
    fflush(null);
    process.stdout.write(`${OUTPUT_MARK}${id}\n`);
    process.stderr.write(`${OUTPUT_MARK}${id}\n`);
  };
  const send = (message: ReplyMessage | FailureMessage): void => void process.send?.(message);
  const serve = async ({ id, command }: Request<C>): Promise<void> => {
    try {
      const { value, failed } = await handle(command);
      if (failed) mark(id);
      send({ type: 'reply', id, value, marked: failed });
    } catch (err) {
      mark(id);
      const { fn, code } = err as { fn?: unknown; code?: unknown };
      const refused = typeof fn === 'string' && typeof code === 'number' ? { fn, code } : undefined;
      send({ type: 'failure', id, message: err instanceof Error ? err.message : String(err), refused });
    }
  };
  process.on('message', (request: Request<C>) => void serve(request));
  process.on('disconnect', () => {
    onDisconnect?.();
    process.exit(0);
  });
}
