/**
 * Builds the built-in GGUF models (if missing) and prints their paths and sizes.
 *
 *   node dist/scripts/make-models.js [tiny|bench|all] [--dir DIR] [--corpus aesop,gettysburg]
 *
 * `--corpus` builds from those corpus files only: a second, distinct model by the same construction
 * (the tests' second model), written as `rkllm-KIND-<files>-<hash>.gguf`.
 */
import { stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import {
  BUILTIN_MODEL_KINDS,
  builtinModelPath,
  describeBuiltinModel,
  ensureBuiltinModel,
  type BuiltinModelKind,
} from '../src/gguf/builtin.js';
import { startProgress } from '../src/progress.js';

const USAGE = 'usage: make-models [tiny|bench|all] [--dir DIR] [--corpus NAME,NAME]';

interface Options {
  readonly kinds: readonly BuiltinModelKind[];
  readonly dir: string | undefined;
  readonly corpus: string[] | undefined;
}

function parseOptions(argv: readonly string[]): Options {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: { dir: { type: 'string' }, corpus: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (positionals.length > 1) throw new Error(USAGE);
  const which = positionals[0] ?? 'all';
  const corpus = values.corpus?.split(',').filter((name) => name !== '');
  if (which === 'all') return { kinds: BUILTIN_MODEL_KINDS, dir: values.dir, corpus };
  const kind = BUILTIN_MODEL_KINDS.find((candidate) => candidate === which);
  if (kind === undefined) throw new Error(`unknown model ${JSON.stringify(which)}; ${USAGE}`);
  return { kinds: [kind], dir: values.dir, corpus };
}

function formatMegabytes(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

async function main(): Promise<void> {
  const { kinds, dir, corpus } = parseOptions(process.argv.slice(2));
  const options = corpus ? { corpus } : {};
  for (const kind of kinds) {
    const started = performance.now();
    const progress = existsSync(builtinModelPath(kind, dir, options)) ? undefined : startProgress(`building the ${kind} model`);
    const path = await ensureBuiltinModel(kind, dir, progress && ((fraction) => progress.update(fraction)), options);
    progress?.done();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const { size } = await stat(path);
    const { parameterCount } = describeBuiltinModel(kind, corpus);
    console.log(`${kind}\t${path}\t${formatMegabytes(size)}\t${(parameterCount / 1e6).toFixed(1)}M params\t${seconds}s`);
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
