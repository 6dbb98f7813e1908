/**
 * The vision encoder of a VL model: an `.rknn` model run by Rockchip's RKNN runtime in a worker
 * process (encoder-worker.ts), so that a crash of the runtime fails one image, not the server.
 * Its input size, format and type and its output tokens and width are read from the model with
 * `rknn_query`; the worker is restarted after a crash or a timeout, for the next image.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fault, type ServerError } from '../../errors.js';
import { errorText } from '../messages.js';
import { WorkerExitError, WorkerFailure, WorkerProcess, WorkerTimeoutError, describeExit, explain } from '../worker-process.js';
import { TENSOR_FORMATS, TENSOR_TYPES } from './abi.js';
import type { EncoderCommand, Encoded, Opened } from './encoder-worker.js';
import { DEFAULT_IMAGE_LIMITS, prepareImage, type ImageLimits, type InputLayout, type RawImage } from './image.js';

const WORKER = fileURLToPath(new URL('./encoder-worker.js', import.meta.url));
const RKNN = 'rknn';

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

type Encoder = WorkerProcess<EncoderCommand>;
type Settled = Required<Pick<VisionEncoderOptions, 'lib' | 'timeoutMs' | 'limits'>> & VisionEncoderOptions;

/** One request; the worker's failures, crashes and timeouts become ENGINE_ERROR. */
async function ask<T>(worker: Encoder, command: EncoderCommand, timeoutMs: number, onTimeout = (): void => undefined): Promise<T> {
  try {
    return (await worker.request<T>(command, timeoutMs)).value;
  } catch (err) {
    if (err instanceof WorkerTimeoutError) {
      onTimeout();
      throw engineError(err.message, 'timeout');
    }
    if (err instanceof WorkerExitError) throw engineError(`${err.message}; it restarts for the next image`, 'crashed');
    if (!(err instanceof WorkerFailure) || !err.refused) throw engineError(errorText(err), 'failed');
    const vars = { function: err.refused.fn, code: err.refused.code, reason: explain(err.log) };
    throw fault('ENGINE_ERROR', 'refused', vars, { engine: RKNN, ...vars });
  }
}

/** A vision encoder: open it once per model, encode images one at a time, close it. */
export class VisionEncoder {
  readonly #options: Settled;
  /** The worker for the next image; a crash or a timeout replaces it. */
  #worker: Promise<Encoder>;
  /** The worker that opened the model and was adopted: only its end restarts it (no loop at start). */
  #live: Encoder | undefined;
  #tail: Promise<unknown> = Promise.resolve();
  #restarts = 0;
  #closed = false;

  private constructor(
    options: Settled,
    readonly shape: EncoderShape,
    first: Encoder,
  ) {
    this.#options = options;
    this.#worker = Promise.resolve(first);
    this.#live = first;
  }

  /** Starts the worker, loads the model and reads its shape. Throws ENGINE_ERROR saying why it cannot. */
  static async open(given: VisionEncoderOptions): Promise<VisionEncoder> {
    const options: Settled = { lib: 'librknnrt.so', timeoutMs: 120_000, limits: DEFAULT_IMAGE_LIMITS, ...given };
    if (!existsSync(options.model)) throw engineError(`The vision encoder ${options.model} does not exist`, 'no_file');
    let encoder: VisionEncoder | undefined;
    const { worker, opened } = await VisionEncoder.#start(options, (gone) => {
      if (encoder) encoder.#retire(gone);
    });
    try {
      encoder = new VisionEncoder(options, shapeOf(opened, options.model), worker);
      return encoder;
    } catch (err) {
      await worker.close();
      throw err;
    }
  }

  static async #start(options: Settled, onGone: (worker: Encoder) => void): Promise<{ worker: Encoder; opened: Opened }> {
    const { log } = options;
    const worker: Encoder = new WorkerProcess({
      module: WORKER,
      name: 'the RKNN vision encoder',
      onOutput: (line, stream) => log?.[stream === 'stderr' ? 'warn' : 'info']({ engine: RKNN, worker_pid: worker.pid }, line),
      onExit: (exit) => {
        log?.error({ engine: RKNN, code: exit.code, signal: exit.signal, output: exit.lastLines }, `${describeExit(exit)}; restarting it`);
        onGone(worker);
      },
    });
    const { lib } = options;
    try {
      const command = { op: 'open' as const, lib, model: options.model, coreMask: options.coreMask ?? null };
      return { worker, opened: await ask<Opened>(worker, command, options.timeoutMs) };
    } catch (err) {
      await worker.close();
      const reason = errorText(err);
      throw fault(
        'ENGINE_ERROR',
        'detail',
        { detail: `The RKNN vision encoder could not start: ${reason}` },
        { engine: RKNN, library: lib, reason },
      );
    }
  }

  /** The adopted worker crashed or was killed: start a new one; the next encode waits for it. */
  #retire(worker: Encoder): void {
    if (worker !== this.#live || this.#closed) return;
    this.#live = undefined;
    this.#restart();
  }

  #restart(): void {
    this.#restarts++;
    this.#worker = VisionEncoder.#start(this.#options, (gone) => this.#retire(gone)).then(async ({ worker, opened }) => {
      const again = shapeOf(opened, this.#options.model);
      if (JSON.stringify(again) !== JSON.stringify(this.shape)) {
        await worker.close();
        throw engineError(`The vision encoder ${this.#options.model} changed shape after a restart`, 'encoder_changed');
      }
      this.#live = worker;
      return worker;
    });
    this.#worker.catch((err: unknown) => this.#options.log?.error({ engine: RKNN, err }, 'restarting the RKNN vision encoder failed'));
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
    let worker: Encoder;
    try {
      worker = await this.#worker;
    } catch {
      this.#restart();
      worker = await this.#worker;
    }
    const command = { op: 'encode' as const, pixels, count: this.shape.tokens * this.shape.width };
    const { embed, run_ms } = await ask<Encoded>(worker, command, this.#options.timeoutMs, () => this.#retire(worker));
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
    const worker = await this.#worker.catch(() => undefined);
    await worker?.close();
  }
}
