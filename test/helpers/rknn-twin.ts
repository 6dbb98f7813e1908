/**
 * The RKNN ABI twin (native/rknn-twin/rknn_twin.c), compiled on demand with gcc into build/, and
 * its model files (text, see docs/vision.md), written into a temporary folder.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SOURCE = join(ROOT, 'native/rknn-twin/rknn_twin.c');
const OUT = join(ROOT, 'build/rknn-twin');

/** Compiles the twin (once per source version) and returns the library's path. */
export async function buildRknnTwin(): Promise<string> {
  const args = ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror'];
  const hash = createHash('sha256').update(readFileSync(SOURCE)).update(args.join(' ')).digest('hex').slice(0, 12);
  const library = join(OUT, `librknn_twin-${hash}.so`);
  if (existsSync(library)) return library;
  mkdirSync(OUT, { recursive: true });
  const partial = `${library}.${process.pid}.tmp`;
  await promisify(execFile)('gcc', [...args, '-o', partial, SOURCE]);
  renameSync(partial, library);
  return library;
}

export interface TwinModel {
  fmt?: 'NHWC' | 'NCHW';
  type?: 'UINT8' | 'INT8' | 'FLOAT16' | 'FLOAT32';
  height: number;
  width: number;
  channels?: number;
  tokens: number;
  embed: number;
  outDims?: 2 | 3;
  crashOnInit?: boolean;
}

/** Writes a twin model file and returns its path. */
export function twinModel(model: TwinModel, name = 'encoder.rknn'): string {
  const lines = [
    'RKNN-TWIN',
    `fmt=${model.fmt ?? 'NHWC'}`,
    `type=${model.type ?? 'UINT8'}`,
    `height=${model.height}`,
    `width=${model.width}`,
    `channels=${model.channels ?? 3}`,
    `tokens=${model.tokens}`,
    `embed=${model.embed}`,
    `out_dims=${model.outDims ?? 2}`,
    ...(model.crashOnInit ? ['crash_on_init=1'] : []),
  ];
  const path = join(mkdtempSync(join(tmpdir(), 'rknn-twin-')), name);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

/** What the twin computes from the input bytes it received (the formula in rknn_twin.c). */
export function twinEmbeddings(bytes: Uint8Array, tokens: number, embed: number): Float32Array {
  const block = bytes.length / tokens;
  const out = new Float32Array(tokens * embed);
  for (let t = 0; t < tokens; t++) {
    let sum = 0;
    for (let k = 0; k < block; k++) sum += (k + 1) * bytes[t * block + k]!;
    for (let j = 0; j < embed; j++) out[t * embed + j] = (sum % 65521) + j / 8;
  }
  return out;
}
