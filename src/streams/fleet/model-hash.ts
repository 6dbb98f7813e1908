import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/**
 * The content hash of a model file (SHA-256, hex, first 16 digits): instances of a fleet serve the
 * same model when their files hash alike, whatever their names. Reads the whole file once, at
 * start (about a second per 500 MB here).
 */
export async function modelHash(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex').slice(0, 16);
}
