/**
 * The RKLLM ABI twin (native/rkllm-twin/rkllm_twin.c), compiled on demand with gcc into build/,
 * once per layout and variant, and the twin's model files (test/fixtures/rkllm-twin).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { LayoutVersion } from '../../src/engine/rkllm/abi.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SOURCE = join(ROOT, 'native/rkllm-twin/rkllm_twin.c');
const OUT = join(ROOT, 'build/rkllm-twin');

/** The twin's model files: `story` generates text, `echo` answers with what the twin received. */
export const TWIN_MODELS = {
  story: join(ROOT, 'test/fixtures/rkllm-twin/story.rkllm'),
  echo: join(ROOT, 'test/fixtures/rkllm-twin/echo.rkllm'),
  /** A file the runtime refuses at rkllm_init (not an RKLLM model). */
  notAModel: join(ROOT, 'test/fixtures/rkllm-twin/not-a-model.rkllm'),
} as const;

/** Variants of the twin, as compile-time switches. */
export type TwinVariant = 'standard' | 'missing-symbol' | 'dirty-defaults';

const DEFINES: Record<TwinVariant, string[]> = {
  standard: [],
  'missing-symbol': ['-DRKLLM_TWIN_OMIT_FUNCTION_TOOLS'],
  'dirty-defaults': ['-DRKLLM_TWIN_DIRTY_DEFAULTS'],
};

/** Compiles the twin for `layout` (once per source version) and returns the library's path. */
export async function buildTwin(layout: LayoutVersion, variant: TwinVariant = 'standard'): Promise<string> {
  const args = [
    '-shared',
    '-fPIC',
    '-O2',
    '-pthread',
    '-Wall',
    '-Wextra',
    '-Werror',
    `-DRKLLM_TWIN_API=${layout.replace('.', '')}`,
    ...DEFINES[variant],
  ];
  const hash = createHash('sha256').update(readFileSync(SOURCE)).update(args.join(' ')).digest('hex').slice(0, 12);
  const library = join(OUT, `librkllm_twin-${layout}-${variant}-${hash}.so`);
  if (existsSync(library)) return library;
  mkdirSync(OUT, { recursive: true });
  const partial = `${library}.${process.pid}.tmp`;
  await promisify(execFile)('gcc', [...args, '-o', partial, SOURCE]);
  renameSync(partial, library);
  return library;
}

/**
 * A slow model load, for tests of what happens while it lasts: the twin's `rkllm_init` waits until
 * `finish()` creates the gate file that `env` names (RKLLM_TWIN_INIT_GATE). Pass `env` to a
 * spawned server; for a server in this process, `apply()` sets it in this process's environment
 * (the runtime's worker inherits it) and `finish()` removes it again.
 */
export function slowLoad(): { env: Record<string, string>; apply(): void; finish(): void } {
  const gate = join(mkdtempSync(join(tmpdir(), 'rkllm-twin-gate-')), 'loaded');
  return {
    env: { RKLLM_TWIN_INIT_GATE: gate },
    apply: () => void (process.env.RKLLM_TWIN_INIT_GATE = gate),
    finish: () => {
      writeFileSync(gate, '');
      if (process.env.RKLLM_TWIN_INIT_GATE === gate) delete process.env.RKLLM_TWIN_INIT_GATE;
    },
  };
}

/**
 * A sparse `.rkllm` file (it takes no disk) of 60% of MemAvailable, in a folder of its own: one
 * instance of it fits in memory, three do not. `remove` deletes the folder.
 */
export function modelOfMostMemory(): { path: string; remove: () => void } {
  const kb = Number(/^MemAvailable:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]);
  const dir = mkdtempSync(join(tmpdir(), 'rkllm-big-'));
  const path = join(dir, 'big.rkllm');
  const fd = openSync(path, 'w');
  ftruncateSync(fd, Math.floor(kb * 1024 * 0.6));
  closeSync(fd);
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
