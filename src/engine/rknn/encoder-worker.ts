/**
 * The RKNN encoder worker: a child process (forked by VisionEncoder) that loads librknnrt.so and
 * owns the context, so a fault inside the runtime ends this process and not the server. It
 * answers each request of encoder-protocol.ts with one reply, and exits when the channel closes.
 */
import { readFileSync, writeSync } from 'node:fs';
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
import { ENCODER_MARK, type EncoderReply, type EncoderRequest, type Opened } from './encoder-protocol.js';

/** A runtime function answered a status other than RKNN_SUCC. */
class Refused extends Error {
  constructor(
    readonly fn: string,
    readonly code: number,
  ) {
    super(`${fn} failed with code ${code}`);
  }
}

let fns: RknnFunctions | undefined;
let ctx: bigint | undefined;
let input: TensorAttr | undefined;

function check(fn: string, code: number): void {
  if (code !== RKNN_SUCC) throw new Refused(fn, code);
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

function encode(pixels: Uint8Array, count: number): { embed: Float32Array; run_ms: number } {
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

function serve(request: EncoderRequest): void {
  let reply: EncoderReply;
  try {
    const value = request.op === 'open' ? open(request.lib, request.model, request.coreMask) : encode(request.pixels, request.count);
    reply = { id: request.id, ok: true, value };
  } catch (err) {
    // After the runtime's own lines on stderr: the engine takes those before the mark as the reason.
    writeSync(2, `${ENCODER_MARK}${request.id}\n`);
    const refused = err instanceof Refused ? { fn: err.fn, code: err.code } : {};
    reply = { id: request.id, ok: false, message: err instanceof Error ? err.message : String(err), ...refused };
  }
  process.send?.(reply);
}

process.on('message', (request: EncoderRequest) => serve(request));
process.on('disconnect', () => {
  if (fns && ctx !== undefined) fns.destroy(ctx);
  process.exit(0);
});
