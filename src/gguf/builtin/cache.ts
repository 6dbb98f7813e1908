/** The disk cache of the built-in models: one file per kind, named by a fingerprint of what built it. */
import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeGguf } from '../gguf-writer.js';
import { currentStateDirs } from '../../state-dirs.js';
import { readCorpusFiles, type CorpusFile } from './corpus.js';
import { buildModel, type BuiltinModelKind } from './model.js';

/** Bump whenever the construction changes, so no stale model file is reused. */
const GENERATOR_VERSION = 2;

/** Which built-in model besides its kind: `corpus` builds it from those corpus files only (names without `.txt`), a distinct model. */
export interface BuiltinModelOptions {
  readonly corpus?: readonly string[];
}

/**
 * Path of the built-in model file. The name includes a hash of the corpus and
 * of the generator version, so a changed corpus or construction never reuses
 * a stale file; a corpus slice adds its file names (`rkllm-tiny-aesop-<hash>.gguf`).
 *
 * @param dir directory of the model files; default `<package root>/models` in a checkout, else `<per-user data>/models`.
 */
export function builtinModelPath(
  kind: BuiltinModelKind,
  dir: string = currentStateDirs().builtinModelsDir,
  options: BuiltinModelOptions = {},
): string {
  const slice = options.corpus ? `-${options.corpus.join('-')}` : '';
  return join(dir, `rkllm-${kind}${slice}-${modelFingerprint(kind, readCorpusFiles(options.corpus))}.gguf`);
}

/**
 * Returns the path of the built-in model, generating the file first if it
 * does not exist. The file is written to a unique temporary file in the same
 * directory and then renamed into place, so concurrent callers (even in other
 * processes) never see a partial file. Generation is deterministic: the same
 * corpus always gives a byte-identical file.
 *
 * @param dir directory of the model files; default `<package root>/models` in a checkout, else `<per-user data>/models`.
 * @param onProgress called with the fraction done while a file is generated.
 */
export async function ensureBuiltinModel(
  kind: BuiltinModelKind,
  dir: string = currentStateDirs().builtinModelsDir,
  onProgress?: (fraction: number) => void,
  options: BuiltinModelOptions = {},
): Promise<string> {
  const path = builtinModelPath(kind, dir, options);
  if (existsSync(path)) return path;
  await mkdir(dir, { recursive: true });
  const tempPath = `${path}.${process.pid}-${randomUUID()}.tmp`;
  try {
    onProgress?.(0);
    await writeGguf(tempPath, buildModel(kind, options.corpus).file, onProgress);
    await rename(tempPath, path);
  } catch (error) {
    await rm(tempPath, { force: true });
    throw error;
  }
  return path;
}

function modelFingerprint(kind: BuiltinModelKind, corpus: readonly CorpusFile[]): string {
  const hash = createHash('sha256').update(`rkllm-${kind}-v${GENERATOR_VERSION}\0`);
  for (const file of corpus) hash.update(`${file.name}\0${file.text}\0`);
  return hash.digest('hex').slice(0, 12);
}
