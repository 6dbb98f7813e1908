/**
 * Checks a model file before an engine is given it: it must be a regular file (a FIFO or a device
 * would be waited on, or read forever), and a GGUF file's header must fit in the file. llama.cpp
 * (through node-llama-cpp's GGUF parser) trusts the header's counts: a header claiming billions
 * of tensors or metadata entries took 77 s and 3.5 GiB before failing. Here every count and
 * length is weighed against the bytes left in the file, so such a file is refused in milliseconds.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { fault, type ServerError } from '../errors.js';

/** GGUF value types (gguf.h) and the bytes one value takes; 8 (string) and 9 (array) are read apart. */
const SCALAR_BYTES: ReadonlyMap<number, number> = new Map([
  [0, 1], [1, 1], [2, 2], [3, 2], [4, 4], [5, 4], [6, 4], [7, 1], [10, 8], [11, 8], [12, 8],
]); // prettier-ignore
const STRING = 8;
const ARRAY = 9;
/** The fewest bytes a metadata entry takes: an empty key (its length), the type, a one-byte value. */
const MIN_ENTRY_BYTES = 8 + 4 + 1;
/** The fewest bytes a tensor's description takes: an empty name (its length), n_dims, type, offset. */
const MIN_TENSOR_BYTES = 8 + 4 + 4 + 8;
/** ggml's GGML_MAX_DIMS. */
const MAX_DIMS = 4;
const CHUNK = 1 << 20;

/** Reads little-endian values from a file through a 1 MiB window, never past its end. */
class FileCursor {
  #at = 0;
  #window = Buffer.alloc(0);
  #windowAt = 0;

  constructor(
    readonly fd: number,
    readonly size: number,
    readonly what: (detail: string) => ServerError,
  ) {}

  get left(): number {
    return this.size - this.#at;
  }

  bytes(n: number, field: string): Buffer {
    if (n > this.left) throw this.what(`${field} needs ${n} bytes at offset ${this.#at}, but the file has ${this.left} left`);
    const end = this.#at + n;
    if (this.#at < this.#windowAt || end > this.#windowAt + this.#window.length) {
      this.#window = Buffer.alloc(Math.min(Math.max(n, CHUNK), this.size - this.#at));
      readSync(this.fd, this.#window, 0, this.#window.length, this.#at);
      this.#windowAt = this.#at;
    }
    const start = this.#at - this.#windowAt;
    this.#at = end;
    return this.#window.subarray(start, start + n);
  }

  u32(field: string): number {
    return this.bytes(4, field).readUInt32LE(0);
  }

  /** A uint64 count or length; beyond 2^53 is refused, as no file holds that many of anything. */
  u64(field: string): number {
    const n = this.bytes(8, field).readBigUInt64LE(0);
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw this.what(`${field} is ${n}, more than any file can hold`);
    return Number(n);
  }

  skip(n: number, field: string): void {
    if (n > this.left) throw this.what(`${field} is ${n} bytes at offset ${this.#at}, but the file has ${this.left} left`);
    this.#at += n;
  }

  string(field: string): string {
    const length = this.u64(`${field}'s length`);
    if (length > this.left) throw this.what(`${field} claims ${length} bytes, but the file has ${this.left} left`);
    return this.bytes(length, field).toString('utf8');
  }
}

function skipValue(cursor: FileCursor, type: number, field: string): void {
  if (type === STRING) {
    cursor.skip(cursor.u64(`${field}'s length`), field);
    return;
  }
  if (type === ARRAY) {
    const itemType = cursor.u32(`${field}'s item type`);
    const count = cursor.u64(`${field}'s item count`);
    const minItem = itemType === STRING ? 8 : itemType === ARRAY ? 12 : SCALAR_BYTES.get(itemType);
    if (minItem === undefined) throw cursor.what(`${field} has items of unknown type ${itemType}`);
    if (count * minItem > cursor.left) {
      throw cursor.what(`${field} claims ${count} items (at least ${count * minItem} bytes), but the file has ${cursor.left} left`);
    }
    if (itemType !== STRING && itemType !== ARRAY) cursor.skip(count * minItem, field);
    else for (let i = 0; i < count; i++) skipValue(cursor, itemType, `${field}[${i}]`);
    return;
  }
  const bytes = SCALAR_BYTES.get(type);
  if (bytes === undefined) throw cursor.what(`${field} has unknown value type ${type}`);
  cursor.skip(bytes, field);
}

/** Walks a GGUF header (from after the magic), refusing any count or length that the file cannot hold. */
function checkGgufHeader(cursor: FileCursor): void {
  const version = cursor.u32('the version');
  if (version < 2 || version > 3) throw cursor.what(`GGUF version ${version} is not supported (2 or 3)`);
  const tensors = cursor.u64('the tensor count');
  const entries = cursor.u64('the metadata entry count');
  const least = tensors * MIN_TENSOR_BYTES + entries * MIN_ENTRY_BYTES;
  if (least > cursor.left) {
    throw cursor.what(
      `the header claims ${tensors} tensors and ${entries} metadata entries, which need at least ${least} bytes, but the file has ${cursor.size} bytes`,
    );
  }
  for (let i = 0; i < entries; i++) {
    const key = cursor.string(`metadata entry ${i}'s key`);
    skipValue(cursor, cursor.u32(`metadata "${key}"'s type`), `metadata "${key}"`);
  }
  for (let i = 0; i < tensors; i++) {
    const name = cursor.string(`tensor ${i}'s name`);
    const dims = cursor.u32(`tensor "${name}"'s dimension count`);
    if (dims > MAX_DIMS) throw cursor.what(`tensor "${name}" claims ${dims} dimensions (at most ${MAX_DIMS})`);
    cursor.skip(dims * 8 + 4 + 8, `tensor "${name}"'s description`);
  }
}

/**
 * Throws ENGINE_ERROR, naming `path` and the problem, when it is not a regular file, or is a GGUF
 * file whose header claims more than the file holds (unless `gguf` is false: the RKLLM runtime
 * reads no GGUF and says so itself). `engine` goes into the error's data.
 */
export function checkModelFile(path: string, engine: string, gguf = true): void {
  const refuse = (detail: string): ServerError => {
    const reason = `"${path}" ${detail}`;
    return fault('ENGINE_ERROR', 'detail', { detail: `Refused to load the model: ${reason}` }, { engine, reason });
  };
  const stat = statSync(path, { throwIfNoEntry: false });
  if (!stat) return; // The engine reports a missing file in its own words.
  if (!stat.isFile()) {
    const kind = stat.isFIFO() ? 'a FIFO' : stat.isDirectory() ? 'a directory' : stat.isSocket() ? 'a socket' : 'a device';
    throw refuse(`is ${kind}, not a regular file: a model must be a file`);
  }
  const fd = openSync(path, 'r');
  try {
    const cursor = new FileCursor(fd, stat.size, (detail) => refuse(`is not a valid GGUF file: ${detail}`));
    if (!gguf || stat.size < 4 || cursor.bytes(4, 'the magic').toString('latin1') !== 'GGUF') return;
    checkGgufHeader(cursor);
  } finally {
    closeSync(fd);
  }
}
