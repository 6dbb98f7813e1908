/**
 * Builds the built-in GGUF models (if missing) and prints their paths and sizes.
 *
 *   node dist/scripts/make-models.js [tiny|bench|all] [--dir DIR]
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
} from '../src/model/builtin.js';
import { startProgress } from '../src/progress.js';

const USAGE = 'usage: make-models [tiny|bench|all] [--dir DIR]';

interface Options {
  readonly kinds: readonly BuiltinModelKind[];
  readonly dir: string | undefined;
}

function parseOptions(argv: readonly string[]): Options {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: { dir: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (positionals.length > 1) throw new Error(USAGE);
  const which = positionals[0] ?? 'all';
  if (which === 'all') return { kinds: BUILTIN_MODEL_KINDS, dir: values.dir };
  const kind = BUILTIN_MODEL_KINDS.find((candidate) => candidate === which);
  if (kind === undefined) throw new Error(`unknown model ${JSON.stringify(which)}; ${USAGE}`);
  return { kinds: [kind], dir: values.dir };
}

function formatMegabytes(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

async function main(): Promise<void> {
  const { kinds, dir } = parseOptions(process.argv.slice(2));
  for (const kind of kinds) {
    const started = performance.now();
    const progress = existsSync(builtinModelPath(kind, dir)) ? undefined : startProgress(`building the ${kind} model`);
    const path = await ensureBuiltinModel(kind, dir, progress && ((fraction) => progress.update(fraction)));
    progress?.done();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const { size } = await stat(path);
    const { parameterCount } = describeBuiltinModel(kind);
    console.log(`${kind}\t${path}\t${formatMegabytes(size)}\t${(parameterCount / 1e6).toFixed(1)}M params\t${seconds}s`);
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
