/**
 * The vision encoder of a VL model: an `.rknn` model run by Rockchip's RKNN runtime in a worker
 * process (encoder-worker.ts), so that a crash of the runtime fails one image, not the server.
 * Its input size, format and type and its output tokens and width are read from the model with
 * `rknn_query`; the worker is restarted after a crash or a timeout, for the next image.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { fault, type ServerError } from '../../errors.js';
import { TENSOR_FORMATS, TENSOR_TYPES } from './abi.js';
import { ENCODER_MARK, type EncoderReply, type EncoderRequest, type Encoded, type Opened } from './encoder-protocol.js';
import { DEFAULT_IMAGE_LIMITS, prepareImage, type ImageLimits, type InputLayout, type RawImage } from './image.js';

const WORKER = fileURLToPath(new URL('./encoder-worker.js', import.meta.url));
const RKNN = 'rknn';
const KEPT_LINES = 50;
/** How long a failure waits for the runtime's stderr lines that explain it. */
const MARK_WAIT_MS = 1000;
/** How long, after the worker exited, its output may take to arrive. */
const DRAIN_WAIT_MS = 1000;

/** What the encoder logs to: a pino logger fits. */
export interface EncoderLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export interface VisionEncoderOptions {
  /** The encoder model (`--vision-encoder`, setting `engine.rkllm.vision.encoder`). */
  model: string;
  /** The RKNN runtime (`--rknn-lib`); by default `librknnrt.so`, found by the dynamic loader. */
  lib?: string;
  /** `rknn_set_core_mask` (see CORE_MASKS in abi.ts); absent: not called, the runtime chooses. */
  coreMask?: number;
  limits?: ImageLimits;
  /** How long opening the model or encoding one image may take before the worker is killed. Default 120 s. */
  timeoutMs?: number;
  log?: EncoderLog;
}

/** What the model says of itself, through `rknn_query`. */
export interface EncoderShape {
  input: InputLayout & { channels: number; type: string; dims: number[] };
  /** Image tokens per image: the output's element count over its last dimension. */
  tokens: number;
  /** The embedding width: the output's last dimension. */
  width: number;
  outputDims: number[];
}

/** One encoded image, in the words of RKLLM's `multimodal_input`. */
export interface EncodedImage {
  /** `n_image_tokens` rows of `width` floats. */
  embed: Float32Array;
  n_image_tokens: number;
  /** The encoder's input size, as Rockchip's demos pass it. */
  image_width: number;
  image_height: number;
  /** The whole encode: decoding, resizing and the NPU run (for `perf.image_encode_ms`). */
  ms: number;
  /** The runtime's part, from `rknn_inputs_set` to `rknn_outputs_get`. */
  run_ms: number;
  /** The size of the image as sent. */
  source: { width: number; height: number };
}

function engineError(detail: string, reason: string): ServerError {
  return fault('ENGINE_ERROR', 'detail', { detail }, { engine: RKNN, reason });
}

/** The shape of a model from its queried attrs; refuses a model that is not an image encoder this binding can feed. */
export function shapeOf(opened: Opened, model: string): EncoderShape {
  const { input, output } = opened;
  const format = TENSOR_FORMATS[input.fmt];
  const dims = input.dims.slice(0, input.n_dims);
  const outputDims = output.dims.slice(0, output.n_dims);
  const unfit = (why: string): ServerError => engineError(`The vision encoder ${model} ${why}`, 'encoder_unsupported');
  if (opened.n_input !== 1) throw unfit(`has ${opened.n_input} inputs; an image encoder has one`);
  if (format !== 'NHWC' && format !== 'NCHW') throw unfit(`takes its input as ${format ?? input.fmt}; NHWC or NCHW is needed`);
  const [, a = 0, b = 0, c = 0] = dims;
  const [height, width, channels] = format === 'NHWC' ? [a, b, c] : [b, c, a];
  if (dims.length !== 4 || dims[0] !== 1 || channels !== 3)
    throw unfit(`takes input dims [${dims.join(', ')}] (${format}); one RGB image is needed`);
  const last = outputDims.at(-1) ?? 0;
  if (last === 0 || output.n_elems % last !== 0) throw unfit(`gives output dims [${outputDims.join(', ')}]; [tokens, width] is needed`);
  const type = TENSOR_TYPES[input.type] ?? String(input.type);
  return { input: { width, height, format, channels, type, dims }, tokens: output.n_elems / last, width: last, outputDims };
}

/** Refuses an encoder whose embeddings are not as wide as the language model's (a start error). */
export function checkWidth(encoder: { width: number; model: string }, language: { embeddingSize: number; model: string }): void {
  if (encoder.width === language.embeddingSize) return;
  throw engineError(
    `The vision encoder ${encoder.model} gives embeddings ${encoder.width} wide, but the language model ${language.model} ` +
      `takes ${language.embeddingSize}: they are not two halves of one VL model`,
    'width_mismatch',
  );
}

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

interface Pending {
  resolve(value: never): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** One worker process: requests with replies, the runtime's output as log lines, and its end. */
class EncoderProcess {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, Pending>();
  readonly #lines: string[] = [];
  readonly #partial = { stdout: '', stderr: '' };
  /** stderr lines since the last mark, and who waits for the next mark. */
  #sinceMark: string[] = [];
  readonly #marks = new Map<number, (lines: string[]) => void>();
  /** Marks that arrived before their reply, with their lines. */
  readonly #early = new Map<number, string[]>();
  #nextId = 1;
  #closing = false;
  /** The worker died or was killed: no more requests; the encoder was told once. */
  #gone = false;
  readonly exited: Promise<void>;

  constructor(
    readonly log: EncoderLog | undefined,
    readonly onCrash: () => void,
  ) {
    this.#child = fork(WORKER, [], { serialization: 'advanced', stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv: [] });
    for (const stream of ['stdout', 'stderr'] as const) {
      this.#child[stream]!.setEncoding('utf8');
      this.#child[stream]!.on('data', (data: string) => this.#onData(stream, data));
    }
    this.#child.on('message', (reply: EncoderReply) => this.#onReply(reply));
    this.#child.on('error', () => undefined);
    // Not the child's "close" event: Node skips it when the parent closed the IPC channel.
    const drained = (['stdout', 'stderr'] as const).map((name) => new Promise((resolve) => this.#child[name]!.once('close', resolve)));
    const exit = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      this.#child.once('exit', (code: number | null, signal: NodeJS.Signals | null) => resolve([code, signal])),
    );
    this.exited = exit.then(async ([code, signal]) => {
      await Promise.race([Promise.all(drained), sleep(DRAIN_WAIT_MS, undefined, { ref: false })]);
      const last = this.#lines.at(-1);
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const detail = `the RKNN vision encoder process ${how}${last ? ` (last output: ${last})` : ''}`;
      for (const id of [...this.#pending.keys()])
        this.#settle(id)?.reject(engineError(`${detail}; it restarts for the next image`, 'crashed'));
      for (const done of this.#marks.values()) done([]);
      if (!this.#closing) {
        this.log?.error({ engine: RKNN, code, signal, output: this.#lines.slice(-5) }, `${detail}; restarting it`);
        this.#die();
      }
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  request<T>(request: WithoutId<EncoderRequest>, timeoutMs: number): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      if (this.#gone || !this.#child.connected) return reject(engineError('the RKNN vision encoder process is not running', 'crashed'));
      const timer = setTimeout(() => {
        // Killed now, so the next request already goes to its successor.
        this.#child.kill('SIGKILL');
        this.#die();
        this.#settle(id)?.reject(
          engineError(`the RKNN vision encoder did not answer ${request.op} within ${timeoutMs} ms; it was stopped`, 'timeout'),
        );
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#child.send({ ...request, id });
    });
  }

  #die(): void {
    if (this.#gone || this.#closing) return;
    this.#gone = true;
    this.onCrash();
  }

  async close(): Promise<void> {
    this.#closing = true;
    if (this.#child.connected) this.#child.disconnect();
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }

  #settle(id: number): Pending | undefined {
    const pending = this.#pending.get(id);
    this.#pending.delete(id);
    if (pending) clearTimeout(pending.timer);
    return pending;
  }

  #onReply(reply: EncoderReply): void {
    const pending = this.#settle(reply.id);
    if (!pending) return;
    if (reply.ok) return pending.resolve(reply.value as never);
    void this.#explained(reply.id).then((lines) => {
      const reason = [reply.message, ...lines].join('; ');
      if (reply.fn === undefined || reply.code === undefined) return pending.reject(engineError(reason, 'failed'));
      const vars = { function: reply.fn, code: reply.code, reason: lines.join('; ') || 'the runtime gave no reason' };
      pending.reject(fault('ENGINE_ERROR', 'refused', vars, { engine: RKNN, ...vars }));
    });
  }

  /** The runtime's stderr lines before the worker's mark for request `id`. */
  #explained(id: number): Promise<string[]> {
    const early = this.#early.get(id);
    this.#early.delete(id);
    if (early) return Promise.resolve(early);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve([]), MARK_WAIT_MS);
      this.#marks.set(id, (lines) => {
        clearTimeout(timer);
        this.#marks.delete(id);
        resolve(lines);
      });
    });
  }

  #onData(stream: 'stdout' | 'stderr', data: string): void {
    const lines = (this.#partial[stream] + data).split('\n');
    this.#partial[stream] = lines.pop() ?? '';
    for (const line of lines) {
      if (line.startsWith(ENCODER_MARK)) {
        const id = Number(line.slice(ENCODER_MARK.length));
        const waiting = this.#marks.get(id);
        if (waiting) waiting(this.#sinceMark);
        else this.#early.set(id, this.#sinceMark);
        this.#sinceMark = [];
        continue;
      }
      if (line.trim() === '') continue;
      this.#lines.push(line);
      if (this.#lines.length > KEPT_LINES) this.#lines.shift();
      if (stream === 'stderr') this.#sinceMark.push(line);
      this.log?.[stream === 'stderr' ? 'warn' : 'info']({ engine: RKNN, worker_pid: this.pid }, line);
    }
  }
}

/** A vision encoder: open it once per model, encode images one at a time, close it. */
export class VisionEncoder {
  readonly #options: Required<Pick<VisionEncoderOptions, 'lib' | 'timeoutMs' | 'limits'>> & VisionEncoderOptions;
  #process: Promise<EncoderProcess>;
  #tail: Promise<unknown> = Promise.resolve();
  #restarts = 0;
  #closed = false;

  private constructor(
    options: VisionEncoderOptions,
    readonly shape: EncoderShape,
    first: EncoderProcess,
  ) {
    this.#options = { lib: 'librknnrt.so', timeoutMs: 120_000, limits: DEFAULT_IMAGE_LIMITS, ...options };
    this.#process = Promise.resolve(first);
  }

  /** Starts the worker, loads the model and reads its shape. Throws ENGINE_ERROR saying why it cannot. */
  static async open(options: VisionEncoderOptions): Promise<VisionEncoder> {
    if (!existsSync(options.model)) throw engineError(`The vision encoder ${options.model} does not exist`, 'no_file');
    let encoder: VisionEncoder | undefined;
    const { process, opened } = await VisionEncoder.#start(options, () => {
      if (encoder) encoder.#restart();
    });
    try {
      encoder = new VisionEncoder(options, shapeOf(opened, options.model), process);
      return encoder;
    } catch (err) {
      await process.close();
      throw err;
    }
  }

  static async #start(options: VisionEncoderOptions, onCrash: () => void): Promise<{ process: EncoderProcess; opened: Opened }> {
    // A crash while opening fails the start; only a worker that opened is restarted (no loop).
    let adopted = false;
    const process = new EncoderProcess(options.log, () => adopted && onCrash());
    const lib = options.lib ?? 'librknnrt.so';
    try {
      const request = { op: 'open' as const, lib, model: options.model, coreMask: options.coreMask ?? null };
      const opened = await process.request<Opened>(request, options.timeoutMs ?? 120_000);
      adopted = true;
      return { process, opened };
    } catch (err) {
      await process.close();
      const reason = err instanceof Error ? err.message : String(err);
      throw fault(
        'ENGINE_ERROR',
        'detail',
        { detail: `The RKNN vision encoder could not start: ${reason}` },
        { engine: RKNN, library: lib, reason },
      );
    }
  }

  /** Starts a new worker after a crash; the next encode waits for it. */
  #restart(): void {
    if (this.#closed) return;
    this.#restarts++;
    this.#process = VisionEncoder.#start(this.#options, () => this.#restart()).then(async ({ process, opened }) => {
      const again = shapeOf(opened, this.#options.model);
      if (JSON.stringify(again) === JSON.stringify(this.shape)) return process;
      await process.close();
      throw engineError(`The vision encoder ${this.#options.model} changed shape after a restart`, 'encoder_changed');
    });
    this.#process.catch((err: unknown) => this.#options.log?.error({ engine: RKNN, err }, 'restarting the RKNN vision encoder failed'));
  }

  get inputSize(): { width: number; height: number } {
    return { width: this.shape.input.width, height: this.shape.input.height };
  }

  get tokens(): number {
    return this.shape.tokens;
  }

  get width(): number {
    return this.shape.width;
  }

  /** How many times the worker was restarted after a crash or a timeout. */
  get restarts(): number {
    return this.#restarts;
  }

  /** Encodes one image (PNG, JPEG or WebP bytes, or raw RGB), after the images before it. */
  encode(image: Uint8Array | RawImage): Promise<EncodedImage> {
    const result = this.#tail.then(() => this.#encode(image));
    this.#tail = result.catch(() => undefined);
    return result;
  }

  async #encode(image: Uint8Array | RawImage): Promise<EncodedImage> {
    if (this.#closed) throw engineError('The vision encoder is closed', 'closed');
    const start = performance.now();
    const { pixels, width, height } = await prepareImage(image, this.shape.input, this.#options.limits);
    let process: EncoderProcess;
    try {
      process = await this.#process;
    } catch {
      this.#restart();
      process = await this.#process;
    }
    const count = this.shape.tokens * this.shape.width;
    const { embed, run_ms } = await process.request<Encoded>({ op: 'encode', pixels, count }, this.#options.timeoutMs);
    const { input, tokens } = this.shape;
    return {
      embed,
      n_image_tokens: tokens,
      image_width: input.width,
      image_height: input.height,
      ms: performance.now() - start,
      run_ms,
      source: { width, height },
    };
  }

  /** Destroys the context and stops the worker. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#tail;
    const process = await this.#process.catch(() => undefined);
    await process?.close();
  }
}
