/**
 * `rkllm-mcp doctor`: runs the checks of checks.ts and prints one line per finding (or JSON), and
 * `preflight`, the same checks at the start of a server on the RKLLM engine.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parallelOf, SettingsError, type Settings } from '../settings.js';
import { engineFlags, integerFlag, SHARED_FLAGS, openSettingsFile, resolveSettings, settingsFromEnv } from '../settings-sources.js';
import { runChecks, type DoctorOptions, type Finding } from './checks.js';

const HELP = `Usage: rkllm-mcp doctor [flags]

Inspects the board and the setup for the RKLLM engine, and says what to fix: the chip, the NPU
driver, the runtime library, the model and the memory it needs, the vision encoder and the RKNN
runtime when the model has one, the frequency governors. One line
per check: ok, warn or fail, the value found, the value needed and the fix.

  --root DIR          read every system path (/proc, /sys, the library, the model) under DIR
                      instead of / (e.g. a mounted board image); DIR must exist
  --rkllm-lib PATH    the RKLLM runtime library, as for the server (default librkllmrt.so)
  --rkllm-version V   its struct layout: 1.2, 1.3 or auto (default auto)
  --model PATH        the .rkllm model, as for the server
  --vision-encoder FILE.rknn
                      its vision encoder, as for the server (default: <stem>.vision.rknn beside it)
  --rknn-lib PATH     the RKNN runtime library, as for the server (default librknnrt.so)
  --parallel N        runtime instances of the model to check the memory for (default 1)
  --context N         context length in tokens (default 2048)
  --settings FILE     the settings file to read (default ./settings.json; never written)
  --json              print the findings as JSON
  --help              show this help and exit

Exit codes: 0 when nothing fails (warnings allowed), 1 when a check fails, 2 for a usage error
(an unknown flag, a bad value, a --root that does not exist).`;

/** Where the command writes. */
export interface DoctorIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  /** The environment (RKLLM_MCP_* settings); process.env when absent. */
  env?: NodeJS.ProcessEnv;
}

class UsageError extends Error {}

/** The doctor's options from the server's settings: the same library, layout, model and context. */
export function doctorOptions(settings: Settings, root: string, instances: number): DoctorOptions {
  const { rkllm, model_path, max_context_len } = settings.engine;
  const { rknn_lib: rknnLib, encoder } = rkllm.vision;
  const model = { model: model_path, instances, context: max_context_len, rknnLib, encoder };
  return { root, library: rkllm.library, layout: rkllm.runtime_version, ...model };
}

/** One line per finding, then a count. */
export function render(findings: Finding[]): string {
  const lines = findings.map(({ check, status, found, needed, fix }) => {
    const line = `${status.toUpperCase().padEnd(4)}  ${check}: ${found}`;
    return status === 'ok' ? line : `${line}. Needed: ${needed}. Fix: ${fix}`;
  });
  const count = (status: Finding['status']): number => findings.filter((f) => f.status === status).length;
  const warnings = count('warn');
  return [...lines, `${count('fail')} failed, ${warnings} ${warnings === 1 ? 'warning' : 'warnings'}, ${count('ok')} ok`].join('\n');
}

function parse(argv: string[], io: DoctorIo): { options: DoctorOptions; json: boolean } | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        root: { type: 'string' },
        ...SHARED_FLAGS,
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return 'help';
  const root = values.root ?? '/';
  const stat = statSync(root, { throwIfNoEntry: false });
  if (!stat?.isDirectory()) throw new UsageError(`--root ${root} ${stat ? 'is not a directory' : 'does not exist'}`);
  const instances = integerFlag('parallel', values.parallel, 1, 256) ?? 1;
  const file = openSettingsFile(values.settings ?? join(process.cwd(), 'settings.json'), false);
  const settings = resolveSettings([
    { source: file.path, values: file.values },
    { source: 'environment', values: settingsFromEnv(io.env ?? process.env) },
    { source: 'command line', values: { engine: engineFlags(values) } },
  ]);
  return { options: doctorOptions(settings, root, instances), json: values.json === true };
}

/** Runs `rkllm-mcp doctor` with `argv`; resolves to the exit code (0 nothing failed, 1 a check failed, 2 a usage error). */
export async function doctorCommand(argv: string[], io: DoctorIo): Promise<number> {
  let parsed;
  try {
    parsed = parse(argv, io);
  } catch (err) {
    if (!(err instanceof UsageError || err instanceof SettingsError)) throw err;
    io.stderr.write(`rkllm-mcp doctor: ${err.message}\nRun rkllm-mcp doctor --help for its flags.\n`);
    return 2;
  }
  if (parsed === 'help') {
    io.stdout.write(`${HELP}\n`);
    return 0;
  }
  const findings = await runChecks(parsed.options);
  io.stdout.write(parsed.json ? `${JSON.stringify({ findings }, null, 2)}\n` : `${render(findings)}\n`);
  return findings.some((f) => f.status === 'fail') ? 1 : 0;
}

/**
 * The doctor's checks at the start of a server on the RKLLM engine, before the runtime is called:
 * logs the warnings and throws an Error listing the failures. The library is left out: the engine
 * loads it next and says what is wrong in the same words.
 */
export async function preflight(settings: Settings, log: { warn(fields: object, message: string): void }, root = '/'): Promise<void> {
  // The RKLLM engine loads the model once per instance (engine.parallel).
  const instances = parallelOf(settings.engine.kind, settings.engine.parallel);
  const findings = await runChecks(doctorOptions(settings, root, instances), { library: false });
  for (const { check, status, found, needed, fix } of findings) {
    if (status === 'warn') log.warn({ check, found, needed, fix }, `rkllm-mcp doctor: ${check}: ${found}`);
  }
  const failures = findings.filter((f) => f.status === 'fail');
  if (failures.length > 0) {
    const lines = failures.map((f) => `${f.check}: ${f.found}. Needed: ${f.needed}. Fix: ${f.fix}`);
    throw new Error(`the board is not ready for the RKLLM engine (rkllm-mcp doctor checks it all):\n  ${lines.join('\n  ')}`);
  }
}
