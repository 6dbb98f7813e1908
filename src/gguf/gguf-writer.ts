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
import { open, type FileHandle } from 'node:fs/promises';
import { toHalfBits } from './half-float.js';

/** A typed GGUF metadata value (the subset of GGUF value types this project needs). */
export type GgufValue =
  | { readonly type: 'uint32'; readonly value: number }
  | { readonly type: 'int32'; readonly value: number }
  | { readonly type: 'float32'; readonly value: number }
  | { readonly type: 'bool'; readonly value: boolean }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'string[]'; readonly value: readonly string[] }
  | { readonly type: 'float32[]'; readonly value: ArrayLike<number> }
  | { readonly type: 'int32[]'; readonly value: ArrayLike<number> };

/** Constructors for {@link GgufValue}s, e.g. `gguf.uint32(4096)`. */
export const gguf = {
  uint32: (value: number): GgufValue => ({ type: 'uint32', value }),
  int32: (value: number): GgufValue => ({ type: 'int32', value }),
  float32: (value: number): GgufValue => ({ type: 'float32', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  string: (value: string): GgufValue => ({ type: 'string', value }),
  stringArray: (value: readonly string[]): GgufValue => ({ type: 'string[]', value }),
  float32Array: (value: ArrayLike<number>): GgufValue => ({ type: 'float32[]', value }),
  int32Array: (value: ArrayLike<number>): GgufValue => ({ type: 'int32[]', value }),
} as const;

/** Element types supported for tensor data. */
export type GgmlTensorType = 'F32' | 'F16';

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
/** Size of the staging buffer used to batch tensor-data writes. */
const WRITE_CHUNK_BYTES = 1 << 20;

/** GGUF value type codes. */
const enum ValueType {
  Uint32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
}

/** ggml type codes and element sizes. */
const TENSOR_TYPES: Record<GgmlTensorType, { readonly code: number; readonly bytes: number }> = {
  F32: { code: 0, bytes: 4 },
  F16: { code: 1, bytes: 2 },
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
  validateAlignment(alignment);
  if (file.metadata.has('general.alignment')) {
    throw new Error('general.alignment is set by the writer; pass GgufFile.alignment instead');
  }
  const header = encodeHeader(file, alignment);
  const handle = await open(path, 'w');
  try {
    const sink = new FileSink(handle);
    await sink.write(header);
    const total = file.tensors.reduce((sum, tensor) => sum + tensorByteLength(tensor), 0);
    let written = 0;
    for (const tensor of file.tensors) {
      await writeTensorData(sink, tensor, alignment);
      written += tensorByteLength(tensor);
      onProgress?.(total === 0 ? 1 : written / total);
    }
    await sink.flush();
  } finally {
    await handle.close();
  }
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
    writeValue(out, value);
  }
  out.string('general.alignment');
  writeValue(out, gguf.uint32(alignment));
  writeTensorInfos(out, file.tensors, alignment);
  out.padTo(alignment);
  return out.bytes();
}

function writeValue(out: ByteWriter, value: GgufValue): void {
  switch (value.type) {
    case 'uint32':
      out.uint32(ValueType.Uint32);
      out.uint32(value.value);
      return;
    case 'int32':
      out.uint32(ValueType.Int32);
      out.int32(value.value);
      return;
    case 'float32':
      out.uint32(ValueType.Float32);
      out.float32(value.value);
      return;
    case 'bool':
      out.uint32(ValueType.Bool);
      out.uint8(value.value ? 1 : 0);
      return;
    case 'string':
      out.uint32(ValueType.String);
      out.string(value.value);
      return;
    case 'string[]':
      writeArrayHeader(out, ValueType.String, value.value.length);
      for (const item of value.value) out.string(item);
      return;
    case 'float32[]':
      writeArrayHeader(out, ValueType.Float32, value.value.length);
      for (let i = 0; i < value.value.length; i++) out.float32(value.value[i]!);
      return;
    case 'int32[]':
      writeArrayHeader(out, ValueType.Int32, value.value.length);
      for (let i = 0; i < value.value.length; i++) out.int32(value.value[i]!);
      return;
  }
}

function writeArrayHeader(out: ByteWriter, itemType: ValueType, length: number): void {
  out.uint32(ValueType.Array);
  out.uint32(itemType);
  out.uint64(length);
}

function writeTensorInfos(out: ByteWriter, tensors: readonly GgufTensor[], alignment: number): void {
  const names = new Set<string>();
  let offset = 0;
  for (const tensor of tensors) {
    validateTensor(tensor, names);
    names.add(tensor.name);
    out.string(tensor.name);
    out.uint32(tensor.dims.length);
    for (const dim of tensor.dims) out.uint64(dim);
    out.uint32(TENSOR_TYPES[tensor.type].code);
    out.uint64(offset);
    offset += alignUp(tensorByteLength(tensor), alignment);
  }
}

function validateTensor(tensor: GgufTensor, seenNames: ReadonlySet<string>): void {
  if (seenNames.has(tensor.name)) throw new Error(`duplicate tensor name ${tensor.name}`);
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

async function writeTensorData(sink: FileSink, tensor: GgufTensor, alignment: number): Promise<void> {
  const expected = elementCount(tensor.dims);
  let written = 0;
  for (const chunk of tensor.data()) {
    written += chunk.length;
    if (written > expected) {
      throw new Error(`tensor ${tensor.name} produced more than the ${expected} elements its dims allow`);
    }
    if (tensor.type === 'F16') await sink.writeFloat16(chunk);
    else await sink.writeFloat32(chunk);
  }
  if (written !== expected) {
    throw new Error(`tensor ${tensor.name} produced ${written} elements, expected ${expected}`);
  }
  const length = tensorByteLength(tensor);
  await sink.write(new Uint8Array(alignUp(length, alignment) - length));
}

function elementCount(dims: readonly number[]): number {
  return dims.reduce((product, dim) => product * dim, 1);
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

function validateAlignment(alignment: number): void {
  if (!Number.isSafeInteger(alignment) || alignment < 1 || (alignment & (alignment - 1)) !== 0) {
    throw new Error(`alignment must be a power of two, got ${alignment}`);
  }
}

function checkInteger(value: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${what} out of range: ${value}`);
  }
}

/** A growable little-endian byte buffer for the header. */
class ByteWriter {
  private buffer = Buffer.alloc(4096);
  private length = 0;

  uint8(value: number): void {
    checkInteger(value, 0, 0xff, 'uint8');
    this.reserve(1).writeUInt8(value, this.advance(1));
  }

  uint32(value: number): void {
    checkInteger(value, 0, 0xffff_ffff, 'uint32');
    this.reserve(4).writeUInt32LE(value, this.advance(4));
  }

  int32(value: number): void {
    checkInteger(value, -0x8000_0000, 0x7fff_ffff, 'int32');
    this.reserve(4).writeInt32LE(value, this.advance(4));
  }

  uint64(value: number): void {
    checkInteger(value, 0, Number.MAX_SAFE_INTEGER, 'uint64');
    this.reserve(8).writeBigUInt64LE(BigInt(value), this.advance(8));
  }

  float32(value: number): void {
    this.reserve(4).writeFloatLE(value, this.advance(4));
  }

  /** A GGUF string: uint64 byte length followed by UTF-8 bytes, no terminator. */
  string(value: string): void {
    const bytes = Buffer.from(value, 'utf8');
    this.uint64(bytes.length);
    this.raw(bytes);
  }

  raw(bytes: Uint8Array): void {
    this.reserve(bytes.length).set(bytes, this.advance(bytes.length));
  }

  padTo(alignment: number): void {
    this.raw(new Uint8Array(alignUp(this.length, alignment) - this.length));
  }

  bytes(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }

  /** Ensures room for `count` more bytes and returns the (possibly new) buffer. */
  private reserve(count: number): Buffer {
    if (this.length + count > this.buffer.length) {
      const grown = Buffer.alloc(Math.max(this.buffer.length * 2, this.length + count));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    return this.buffer;
  }

  /** Claims `count` bytes and returns the offset where they start. */
  private advance(count: number): number {
    const offset = this.length;
    this.length += count;
    return offset;
  }
}

/** Batches writes to a file handle through a staging buffer. */
class FileSink {
  private readonly staging = Buffer.alloc(WRITE_CHUNK_BYTES);
  private readonly view = new DataView(this.staging.buffer, this.staging.byteOffset, this.staging.byteLength);
  private used = 0;

  constructor(private readonly handle: FileHandle) {}

  async write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      if (this.used === this.staging.length) await this.flush();
      const count = Math.min(bytes.length - done, this.staging.length - this.used);
      this.staging.set(bytes.subarray(done, done + count), this.used);
      this.used += count;
      done += count;
    }
  }

  /** Writes the values as little-endian IEEE-754 single precision floats. */
  async writeFloat32(values: Float32Array): Promise<void> {
    for (let i = 0; i < values.length; i++) {
      if (this.used + 4 > this.staging.length) await this.flush();
      this.view.setFloat32(this.used, values[i]!, true);
      this.used += 4;
    }
  }

  async writeFloat16(values: Float32Array): Promise<void> {
    for (let i = 0; i < values.length; i++) {
      if (this.used + 2 > this.staging.length) await this.flush();
      this.view.setUint16(this.used, toHalfBits(values[i]!), true);
      this.used += 2;
    }
  }

  async flush(): Promise<void> {
    let done = 0;
    while (done < this.used) {
      const { bytesWritten } = await this.handle.write(this.staging, done, this.used - done);
      done += bytesWritten;
    }
    this.used = 0;
  }
}
