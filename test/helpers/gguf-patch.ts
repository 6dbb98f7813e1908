import { closeSync, copyFileSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** A copy of `source` with a little-endian uint64 written at `offset`. */
export function patchedCopy(source: string, dir: string, name: string, offset: number, value: bigint): string {
  const path = join(dir, name);
  copyFileSync(source, path);
  const buffer = Buffer.alloc(8);
  buffer.writeBigUInt64LE(value);
  const fd = openSync(path, 'r+');
  writeSync(fd, buffer, 0, 8, offset);
  closeSync(fd);
  return path;
}
