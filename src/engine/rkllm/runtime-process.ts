import { fork, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { fault, type ServerError } from '../../errors.js';
import { errorText } from '../messages.js';
import { OUTPUT_MARK, type Call, type Command, type ResultMessage, type WorkerMessage } from './protocol.js';

/** The worker module, next to this one (in dist/ once compiled). */
const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

/** Runtime output lines kept for error messages. */
const KEPT_LINES = 200;

/** How long a failure waits for the runtime's output that explains it. */
const MARK_WAIT_MS = 1000;

/** How long `close` waits for the worker to exit before killing it. */
const CLOSE_WAIT_MS = 5000;

/** How long, after the worker exited, its output may take to arrive. */
const DRAIN_WAIT_MS = 1000;

/** How the worker process ended. */
export interface RuntimeExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The runtime's last output lines, oldest first. */
  lastLines: string[];
}

/** The worker process ended while a request was open. */
export class RuntimeExitError extends Error {
  constructor(readonly exit: RuntimeExit) {
    super(describeExit(exit));
  }
}

/** A request that did not answer in time; the worker was killed. */
export class RuntimeTimeoutError extends Error {}

/** "the RKLLM runtime process was killed by SIGSEGV (last output: ...)". */
export function describeExit(exit: RuntimeExit): string {
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  const last = exit.lastLines.at(-1);
  return `the RKLLM runtime process ${how}${last ? ` (last output: ${last})` : ''}`;
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

export interface RuntimeProcessOptions {
  /** Each callback of a run, in order. */
  onResult(message: ResultMessage): void;
  /** Every output line of the runtime (its own logs on stdout and stderr). */
  onOutput(line: string, stream: 'stdout' | 'stderr'): void;
  /** The process ended without `close` being asked (a crash, or a kill after a timeout). */
  onExit(exit: RuntimeExit): void;
}

interface Pending {
  resolve(reply: Reply<unknown>): void;
  reject(err: Error): void;
  /** The output line count when the request was sent: its log starts there. */
  from: number;
  timer: NodeJS.Timeout | undefined;
}

/**
 * One runtime worker process, seen from the engine: requests with replies, a run's callbacks as
 * events, the runtime's output as lines, and the exit. A crash rejects every open request with a
 * RuntimeExitError.
 */
export class RuntimeProcess {
  readonly #child: ChildProcess;
  readonly #options: RuntimeProcessOptions;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #lines: string[] = [];
  #lineCount = 0;
  readonly #partial = { stdout: '', stderr: '' };
  /** Marks seen per request id, and who waits for both streams' marks. */
  readonly #marks = new Map<number, { seen: number; at: number; done?: () => void }>();
  #closing = false;
  readonly #closed: Promise<RuntimeExit>;

  constructor(options: RuntimeProcessOptions) {
    this.#options = options;
    this.#child = fork(WORKER, [], { serialization: 'advanced', stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv: [] });
    for (const stream of ['stdout', 'stderr'] as const) {
      this.#child[stream]!.setEncoding('utf8');
      this.#child[stream]!.on('data', (data: string) => this.#onData(stream, data));
    }
    this.#child.on('message', (message: WorkerMessage) => this.#onMessage(message));
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
  request<T>(command: Command, timeoutMs?: number): Promise<Reply<T>> {
    const id = this.#nextId++;
    return new Promise<Reply<T>>((resolve, reject) => {
      if (!this.#child.connected) {
        reject(new RuntimeExitError({ code: this.#child.exitCode, signal: this.#child.signalCode, lastLines: this.#lines.slice(-5) }));
        return;
      }
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.#settle(id)?.reject(
                new RuntimeTimeoutError(`the RKLLM runtime did not answer ${command.op} within ${timeoutMs} ms; it was stopped`),
              );
              this.kill();
            }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (reply: Reply<unknown>) => void, reject, from: this.#lineCount, timer });
      this.#child.send({ id, command });
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

  #onMessage(message: WorkerMessage): void {
    if (message.type === 'result') {
      this.#options.onResult(message);
      return;
    }
    const pending = this.#settle(message.id);
    if (!pending) return;
    const marked = message.type === 'failure' || message.marked;
    void this.#logOf(message.id, pending.from, marked).then((log) => {
      if (message.type === 'reply') pending.resolve({ value: message.value, log });
      else pending.reject(new Error([message.message, ...log].join('; ')));
    });
  }

  /** The lines the runtime wrote while request `id` ran, once its marks have arrived on both streams. */
  async #logOf(id: number, from: number, marked: boolean): Promise<string[]> {
    if (!marked) return [];
    const mark = this.#marks.get(id) ?? { seen: 0, at: this.#lineCount };
    this.#marks.set(id, mark);
    if (mark.seen < 2) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, MARK_WAIT_MS);
        mark.done = () => {
          clearTimeout(timer);
          resolve();
        };
      });
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

  #onClose(code: number | null, signal: NodeJS.Signals | null): RuntimeExit {
    for (const stream of ['stdout', 'stderr'] as const) if (this.#partial[stream]) this.#onLine(stream, this.#partial[stream]);
    const exit: RuntimeExit = { code, signal, lastLines: this.#lines.slice(-5) };
    for (const id of [...this.#pending.keys()]) this.#settle(id)?.reject(new RuntimeExitError(exit));
    for (const mark of this.#marks.values()) mark.done?.();
    if (!this.#closing) this.#options.onExit(exit);
    return exit;
  }
}

// Requests to a runtime worker, with the runtime's failures and refusals turned into ENGINE_ERROR.
/** The engine's name in messages and in `data.engine`. */
export const RKLLM = 'rkllm';

/** The runtime answered a non-zero status code. `data` carries the code and the runtime's reason. */
export function refused(fn: string, code: number, log: string[]): ServerError {
  const reason = explain(log);
  return fault('ENGINE_ERROR', 'refused', { function: fn, code, reason }, { engine: RKLLM, function: fn, code, reason });
}

/** One request; a worker that fails it (a crash, a timeout) becomes ENGINE_ERROR. */
export async function request<T>(
  runtime: RuntimeProcess,
  command: Parameters<RuntimeProcess['request']>[0],
  timeoutMs: number,
): Promise<Reply<T>> {
  try {
    return await runtime.request<T>(command, timeoutMs);
  } catch (err) {
    const reason = errorText(err);
    throw fault('ENGINE_ERROR', 'runtime_failed', { reason }, { engine: RKLLM, reason });
  }
}

/** Makes one runtime call; a non-zero status code becomes ENGINE_ERROR with the runtime's reason. */
export async function invoke(runtime: RuntimeProcess, call: Call, timeoutMs: number): Promise<void> {
  const { value, log } = await request<number>(runtime, { op: 'call', call }, timeoutMs);
  if (value !== 0) throw refused(call.fn, value, log);
}
