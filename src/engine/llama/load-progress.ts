/** Progress while llama.cpp loads a large GGUF (node-llama-cpp's `onLoadProgress`). */
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { startProgress, type Progress } from '../../progress.js';

/** Files at least this large show progress; smaller ones load too fast to need it. */
const LARGE_MODEL_BYTES = 64 * 1024 * 1024;

/** A progress for loading `path`, or undefined when the file is small (or missing: loading reports that). */
export function loadProgress(path: string): Progress | undefined {
  let size = 0;
  try {
    size = statSync(path).size;
  } catch {
    return undefined;
  }
  return size >= LARGE_MODEL_BYTES ? startProgress(`loading ${basename(path)}`, { line: 'json' }) : undefined;
}
