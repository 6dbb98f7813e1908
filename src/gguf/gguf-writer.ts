/**
 * A small GGUF v3 writer (little-endian).
 *
 * The header (metadata and tensor infos) is encoded in memory, which is cheap,
 * while tensor data is pulled chunk by chunk from each tensor's producer and
 * streamed to the file, so models of hundreds of megabytes never exist as one
 * buffer.
 *
 * Format reference: ggml `docs/gguf.md`.
 */
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { toHalfBits } from './half-float.js';

/** A typed GGUF metadata value, encoded (type code, then value) when the header is written; made by {@link gguf}. */
export type GgufValue = (out: ByteWriter) => void;

const ARRAY = 9;

/** The one value and the array of values of a GGUF value type `code`. */
function valueType<T>(code: number, write: (out: ByteWriter, value: T) => void) {
  return {
    one:
      (value: T): GgufValue =>
      (out) => {
        out.uint32(code);
        write(out, value);
      },
    array:
      (values: ArrayLike<T>): GgufValue =>
      (out) => {
        out.uint32(ARRAY);
        out.uint32(code);
        out.uint64(values.length);
        for (let i = 0; i < values.length; i++) write(out, values[i]!);
      },
  };
}

const INT32 = valueType<number>(5, (out, value) => out.int32(value));
const FLOAT32 = valueType<number>(6, (out, value) => out.float32(value));
const STRING = valueType<string>(8, (out, value) => out.string(value));

/** Constructors for {@link GgufValue}s (the subset of GGUF value types this project needs), e.g. `gguf.uint32(4096)`. */
export const gguf = {
  uint32: valueType<number>(4, (out, value) => out.uint32(value)).one,
  int32: INT32.one,
  float32: FLOAT32.one,
  bool: valueType<boolean>(7, (out, value) => out.raw(Uint8Array.of(value ? 1 : 0))).one,
  string: STRING.one,
  stringArray: STRING.array,
  float32Array: FLOAT32.array,
  int32Array: INT32.array,
} as const;

/** Element types supported for tensor data. */
export type GgmlTensorType = keyof typeof TENSOR_TYPES;

/** One tensor to be written. */
export interface GgufTensor {
  /** Tensor name, e.g. `blk.0.attn_q.weight` (at most 63 UTF-8 bytes). */
  readonly name: string;
  /**
   * ggml dimensions, innermost first: a weight mapping n_in -> n_out has
   * dims `[n_in, n_out]` and is stored as n_out rows of n_in values.
   */
  readonly dims: readonly number[];
  readonly type: GgmlTensorType;
  /**
   * Produces the elements in storage order, in chunks of any size. It is
   * called once, while the tensor is written; the chunks must add up to
   * exactly the product of `dims` elements.
   */
  readonly data: () => Iterable<Float32Array>;
}

/** Everything that goes into a GGUF file. */
export interface GgufFile {
  /** Metadata in file order. `general.alignment` is added by the writer. */
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: readonly GgufTensor[];
  /** Alignment of the tensor data section and of each tensor; default 32. */
  readonly alignment?: number;
}

const GGUF_MAGIC = 'GGUF';
const GGUF_VERSION = 3;
const DEFAULT_ALIGNMENT = 32;
const MAX_TENSOR_DIMS = 4;
const MAX_TENSOR_NAME_BYTES = 63;
/** How much the file stream gathers before it writes: small tensor chunks go to disk in large writes. */
const WRITE_CHUNK_BYTES = 1 << 20;

/** ggml type codes and element sizes, and how one element is written. */
const TENSOR_TYPES = {
  F32: { code: 0, bytes: 4, set: (to: DataView, at: number, value: number) => to.setFloat32(at, value, true) },
  F16: { code: 1, bytes: 2, set: (to: DataView, at: number, value: number) => to.setUint16(at, toHalfBits(value), true) },
};

/**
 * Writes `file` to `path` (created or truncated), calling `onProgress` with the
 * fraction of tensor data written after each tensor.
 *
 * @throws if a value is out of range for its type, a tensor is malformed, or a
 * tensor's producer yields a different number of elements than its dims say.
 */
export async function writeGguf(path: string, file: GgufFile, onProgress?: (fraction: number) => void): Promise<void> {
  const alignment = file.alignment ?? DEFAULT_ALIGNMENT;
  if (!Number.isSafeInteger(alignment) || alignment < 1 || (alignment & (alignment - 1)) !== 0) {
    throw new Error(`alignment must be a power of two, got ${alignment}`);
  }
  if (file.metadata.has('general.alignment')) {
    throw new Error('general.alignment is set by the writer; pass GgufFile.alignment instead');
  }
  const header = encodeHeader(file, alignment);
  const total = file.tensors.reduce((sum, tensor) => sum + tensorByteLength(tensor), 0);
  const bytes = function* (): Generator<Uint8Array> {
    yield header;
    let written = 0;
    for (const tensor of file.tensors) {
      yield* tensorBytes(tensor, alignment);
      written += tensorByteLength(tensor);
      onProgress?.(total === 0 ? 1 : written / total);
    }
  };
  await pipeline(bytes, createWriteStream(path, { highWaterMark: WRITE_CHUNK_BYTES }));
}

/** Number of bytes a tensor's data occupies, without padding. */
function tensorByteLength(tensor: Pick<GgufTensor, 'dims' | 'type'>): number {
  return elementCount(tensor.dims) * TENSOR_TYPES[tensor.type].bytes;
}

function encodeHeader(file: GgufFile, alignment: number): Uint8Array {
  const out = new ByteWriter();
  out.raw(new TextEncoder().encode(GGUF_MAGIC));
  out.uint32(GGUF_VERSION);
  out.uint64(file.tensors.length);
  out.uint64(file.metadata.size + 1);
  for (const [key, value] of file.metadata) {
    out.string(key);
    value(out);
  }
  out.string('general.alignment');
  gguf.uint32(alignment)(out);
  const names = new Set<string>();
  let offset = 0;
  for (const tensor of file.tensors) {
    checkTensor(tensor, names);
    out.string(tensor.name);
    out.uint32(tensor.dims.length);
    for (const dim of tensor.dims) out.uint64(dim);
    out.uint32(TENSOR_TYPES[tensor.type].code);
    out.uint64(offset);
    offset += alignUp(tensorByteLength(tensor), alignment);
  }
  out.padTo(alignment);
  return out.bytes();
}

/** Refuses a malformed tensor, or one whose name is in `names` (to which it adds its own). */
function checkTensor(tensor: GgufTensor, names: Set<string>): void {
  if (names.has(tensor.name)) throw new Error(`duplicate tensor name ${tensor.name}`);
  names.add(tensor.name);
  const nameBytes = Buffer.byteLength(tensor.name, 'utf8');
  if (nameBytes === 0 || nameBytes > MAX_TENSOR_NAME_BYTES) {
    throw new Error(`tensor name must be 1..${MAX_TENSOR_NAME_BYTES} bytes: ${JSON.stringify(tensor.name)}`);
  }
  if (tensor.dims.length < 1 || tensor.dims.length > MAX_TENSOR_DIMS) {
    throw new Error(`tensor ${tensor.name} must have 1..${MAX_TENSOR_DIMS} dims`);
  }
  for (const dim of tensor.dims) {
    if (!Number.isSafeInteger(dim) || dim < 1) {
      throw new Error(`tensor ${tensor.name} has an invalid dim ${dim}`);
    }
  }
}

function* tensorBytes(tensor: GgufTensor, alignment: number): Generator<Uint8Array> {
  const expected = elementCount(tensor.dims);
  const { bytes, set } = TENSOR_TYPES[tensor.type];
  let written = 0;
  for (const chunk of tensor.data()) {
    written += chunk.length;
    if (written > expected) {
      throw new Error(`tensor ${tensor.name} produced more than the ${expected} elements its dims allow`);
    }
    const out = new DataView(new ArrayBuffer(chunk.length * bytes));
    for (let i = 0; i < chunk.length; i++) set(out, i * bytes, chunk[i]!);
    yield new Uint8Array(out.buffer);
  }
  if (written !== expected) {
    throw new Error(`tensor ${tensor.name} produced ${written} elements, expected ${expected}`);
  }
  const length = tensorByteLength(tensor);
  yield new Uint8Array(alignUp(length, alignment) - length);
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((product, dim) => product * dim, 1);
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

function checkInteger(value: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${what} out of range: ${value}`);
  }
}

/** The header's little-endian bytes, gathered part by part. */
class ByteWriter {
  readonly #parts: Uint8Array[] = [];
  #length = 0;

  uint32(value: number): void {
    checkInteger(value, 0, 0xffff_ffff, 'uint32');
    this.#put(4, (to) => to.writeUInt32LE(value));
  }

  int32(value: number): void {
    checkInteger(value, -0x8000_0000, 0x7fff_ffff, 'int32');
    this.#put(4, (to) => to.writeInt32LE(value));
  }

  uint64(value: number): void {
    checkInteger(value, 0, Number.MAX_SAFE_INTEGER, 'uint64');
    this.#put(8, (to) => to.writeBigUInt64LE(BigInt(value)));
  }

  float32(value: number): void {
    this.#put(4, (to) => to.writeFloatLE(value));
  }

  /** A GGUF string: uint64 byte length followed by UTF-8 bytes, no terminator. */
  string(value: string): void {
    const bytes = Buffer.from(value, 'utf8');
    this.uint64(bytes.length);
    this.raw(bytes);
  }

  raw(bytes: Uint8Array): void {
    this.#parts.push(bytes);
    this.#length += bytes.length;
  }

  padTo(alignment: number): void {
    this.raw(new Uint8Array(alignUp(this.#length, alignment) - this.#length));
  }

  bytes(): Uint8Array {
    return Buffer.concat(this.#parts);
  }

  #put(size: number, write: (to: Buffer) => void): void {
    const bytes = Buffer.alloc(size);
    write(bytes);
    this.raw(bytes);
  }
}
