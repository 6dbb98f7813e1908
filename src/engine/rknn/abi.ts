/**
 * The native surface of Rockchip's RKNN runtime (librknnrt.so, rknn_api.h) that a vision encoder
 * uses, typed for koffi. Layouts are LP64 (aarch64 on the boards, x86-64 for the twin), where
 * `rknn_context` is a uint64_t; docs/rknn-abi.md gives every field with its offset.
 */
import koffi, { type LibraryHandle } from 'koffi';
import type { Fields, KoffiFunction, TypeSpec } from '../rkllm/abi.js';

export const RKNN_SUCC = 0;
export const RKNN_QUERY_IN_OUT_NUM = 0;
export const RKNN_QUERY_INPUT_ATTR = 1;
export const RKNN_QUERY_OUTPUT_ATTR = 2;

/** `rknn_tensor_type`, by value. */
export const TENSOR_TYPES = 'FLOAT32 FLOAT16 INT8 UINT8 INT16 UINT16 INT32 UINT32 INT64 BOOL INT4 BFLOAT16'.split(' ');
export const RKNN_TENSOR_UINT8 = 3;
/** `rknn_tensor_format`, by value. */
export const TENSOR_FORMATS = ['NCHW', 'NHWC', 'NC1HWC2', 'UNDEFINED'];

/** `rknn_core_mask`: 0 lets the runtime choose; bits 0..2 are NPU cores 0..2; 0xffff is every core. */
export const CORE_MASKS = { auto: 0, '0': 1, '1': 2, '2': 4, '0_1': 3, '0_1_2': 7, all: 0xffff } as const;

const ioNum = koffi.struct({ n_input: 'uint32_t', n_output: 'uint32_t' });
/** `rknn_tensor_attr`'s fields. */
const TENSOR_ATTR = {
  index: 'uint32_t',
  n_dims: 'uint32_t',
  dims: koffi.array('uint32_t', 16, 'Array'),
  name: koffi.array('char', 256, 'String'),
  n_elems: 'uint32_t',
  size: 'uint32_t',
  fmt: 'int',
  type: 'int',
  qnt_type: 'int',
  fl: 'int8_t',
  zp: 'int32_t',
  scale: 'float',
  w_stride: 'uint32_t',
  size_with_stride: 'uint32_t',
  pass_through: 'uint8_t',
  h_stride: 'uint32_t',
} as const;
/** `rknn_output`'s fields; `buf` is the runtime's pointer after `rknn_outputs_get`. */
const OUTPUT = { want_float: 'uint8_t', is_prealloc: 'uint8_t', index: 'uint32_t', buf: 'void *', size: 'uint32_t' } as const;

/** `rknn_tensor_attr`, as koffi decodes it. */
export type TensorAttr = Omit<Fields<typeof TENSOR_ATTR>, 'dims' | 'name'> & { dims: number[]; name: string };
export type NativeOutput = Fields<typeof OUTPUT>;

export const tensorAttr = koffi.struct(TENSOR_ATTR);
export const rknnInput = koffi.struct({
  index: 'uint32_t',
  buf: 'void *',
  size: 'uint32_t',
  pass_through: 'uint8_t',
  type: 'int',
  fmt: 'int',
});
export const rknnOutput = koffi.struct(OUTPUT);

/** The bound functions. `ctx` is the `rknn_context` (a uint64_t) as a bigint. */
export interface RknnFunctions {
  init(ctx: BigUint64Array, model: Uint8Array, size: number, flag: number, extend: null): number;
  destroy(ctx: bigint): number;
  queryNum(ctx: bigint, cmd: number, info: { n_input: number; n_output: number }, size: number): number;
  queryAttr(ctx: bigint, cmd: number, info: Partial<TensorAttr>, size: number): number;
  setCoreMask(ctx: bigint, mask: number): number;
  inputsSet(ctx: bigint, n: number, inputs: object): number;
  run(ctx: bigint, extend: null): number;
  outputsGet(ctx: bigint, n: number, outputs: NativeOutput, extend: null): number;
  outputsRelease(ctx: bigint, n: number, outputs: NativeOutput): number;
}

export const TENSOR_ATTR_SIZE = koffi.sizeof(tensorAttr);
export const IO_NUM_SIZE = koffi.sizeof(ioNum);

/** Loads `path` and binds the functions; throws naming every symbol that is missing. */
export function bindRknn(path: string): RknnFunctions {
  let lib: LibraryHandle;
  try {
    lib = koffi.load(path);
  } catch (err) {
    throw new Error(`Cannot load the RKNN runtime library ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const missing: string[] = [];
  const fn = (name: string, result: TypeSpec, args: TypeSpec[]): KoffiFunction => {
    try {
      return lib.func(name, result, args);
    } catch {
      missing.push(name);
      return (() => -1) as unknown as KoffiFunction;
    }
  };
  const bound: RknnFunctions = {
    init: fn('rknn_init', 'int', ['uint64_t *', 'void *', 'uint32_t', 'uint32_t', 'void *']),
    destroy: fn('rknn_destroy', 'int', ['uint64_t']),
    queryNum: fn('rknn_query', 'int', ['uint64_t', 'int', koffi.out(koffi.pointer(ioNum)), 'uint32_t']),
    queryAttr: fn('rknn_query', 'int', ['uint64_t', 'int', koffi.inout(koffi.pointer(tensorAttr)), 'uint32_t']),
    setCoreMask: fn('rknn_set_core_mask', 'int', ['uint64_t', 'int']),
    inputsSet: fn('rknn_inputs_set', 'int', ['uint64_t', 'uint32_t', koffi.pointer(rknnInput)]),
    run: fn('rknn_run', 'int', ['uint64_t', 'void *']),
    outputsGet: fn('rknn_outputs_get', 'int', ['uint64_t', 'uint32_t', koffi.inout(koffi.pointer(rknnOutput)), 'void *']),
    outputsRelease: fn('rknn_outputs_release', 'int', ['uint64_t', 'uint32_t', koffi.pointer(rknnOutput)]),
  };
  if (missing.length > 0) throw new Error(`${path} lacks ${[...new Set(missing)].join(', ')}: it is not an RKNN runtime`);
  return bound;
}

/** Copies `count` floats from a runtime pointer. */
export function readFloats(pointer: unknown, count: number): Float32Array {
  return Float32Array.from(koffi.decode(pointer, koffi.array('float', count, 'Typed')) as Float32Array);
}
