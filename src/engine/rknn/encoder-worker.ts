/**
 * The RKNN encoder worker: a child process (forked by VisionEncoder) that loads librknnrt.so and
 * owns the context, so a fault inside the runtime ends this process and not the server. It
 * serves the requests below (over the channel of worker-process.ts) and exits when the channel
 * closes.
 */
import { readFileSync } from 'node:fs';
import { serveRequests } from '../worker-process.js';
import {
  IO_NUM_SIZE,
  RKNN_QUERY_INPUT_ATTR,
  RKNN_QUERY_IN_OUT_NUM,
  RKNN_QUERY_OUTPUT_ATTR,
  RKNN_SUCC,
  RKNN_TENSOR_UINT8,
  TENSOR_ATTR_SIZE,
  bindRknn,
  readFloats,
  type NativeOutput,
  type RknnFunctions,
  type TensorAttr,
} from './abi.js';

export type EncoderCommand =
  /** Loads the library, `rknn_init` from the bytes of the model file, `rknn_set_core_mask` unless null, and the queries. Replies {@link Opened}. */
  | { op: 'open'; lib: string; model: string; coreMask: number | null }
  /** Sets the input (laid out as the input attr asks), runs, and gets `count` floats. Replies {@link Encoded}. */
  | { op: 'encode'; pixels: Uint8Array; count: number };

/** What the model says of itself. */
export interface Opened {
  n_input: number;
  n_output: number;
  input: TensorAttr;
  output: TensorAttr;
}

export interface Encoded {
  embed: Float32Array;
  /** From `rknn_inputs_set` to the end of `rknn_outputs_get`. */
  run_ms: number;
}

let fns: RknnFunctions | undefined;
let ctx: bigint | undefined;
let input: TensorAttr | undefined;

/** A status other than RKNN_SUCC throws; `fn` and `code` reach the engine as the refusal's (see serveRequests). */
function check(fn: string, code: number): void {
  if (code !== RKNN_SUCC) throw Object.assign(new Error(`${fn} failed with code ${code}`), { fn, code });
}

function open(lib: string, path: string, coreMask: number | null): Opened {
  fns = bindRknn(lib);
  const model = readFileSync(path);
  const out = new BigUint64Array(1);
  check('rknn_init', fns.init(out, model, model.byteLength, 0, null));
  ctx = out[0]!;
  if (coreMask !== null) check('rknn_set_core_mask', fns.setCoreMask(ctx, coreMask));
  const num = { n_input: 0, n_output: 0 };
  check('rknn_query', fns.queryNum(ctx, RKNN_QUERY_IN_OUT_NUM, num, IO_NUM_SIZE));
  const attr = (cmd: number): TensorAttr => {
    const value: Partial<TensorAttr> = { index: 0 };
    check('rknn_query', fns!.queryAttr(ctx!, cmd, value, TENSOR_ATTR_SIZE));
    return value as TensorAttr;
  };
  input = attr(RKNN_QUERY_INPUT_ATTR);
  return { ...num, input, output: attr(RKNN_QUERY_OUTPUT_ATTR) };
}

function encode(pixels: Uint8Array, count: number): Encoded {
  if (!fns || ctx === undefined || !input) throw new Error('the encoder is not open');
  const start = performance.now();
  const given = { index: 0, buf: pixels, size: pixels.byteLength, pass_through: 0, type: RKNN_TENSOR_UINT8, fmt: input.fmt };
  check('rknn_inputs_set', fns.inputsSet(ctx, 1, given));
  check('rknn_run', fns.run(ctx, null));
  const output: NativeOutput = { want_float: 1, is_prealloc: 0, index: 0, buf: null, size: 0 };
  check('rknn_outputs_get', fns.outputsGet(ctx, 1, output, null));
  try {
    if (output.size !== count * 4) throw new Error(`rknn_outputs_get gave ${output.size} bytes; ${count} floats were expected`);
    return { embed: readFloats(output.buf, count), run_ms: performance.now() - start };
  } finally {
    check('rknn_outputs_release', fns.outputsRelease(ctx, 1, output));
  }
}

serveRequests<EncoderCommand>(
  (command) => ({
    value: command.op === 'open' ? open(command.lib, command.model, command.coreMask) : encode(command.pixels, command.count),
    failed: false,
  }),
  () => {
    if (fns && ctx !== undefined) fns.destroy(ctx);
  },
);
