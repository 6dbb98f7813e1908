#!/usr/bin/env node
import { Console } from 'node:console';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import { SettingsError, type Settings } from './settings.js';
import {
  engineFlags,
  integerFlag,
  printableSettings,
  SHARED_FLAGS,
  resolveSettings,
  settingsFromEnv,
  type SettingsFile,
} from './settings-sources.js';
import { clientCommand } from './commands/dispatch.js';
import { exitOnSignals } from './shutdown.js';
import { anchorFolders, currentStateDirs, describeState, openStateSettings, type StateDirs } from './state-dirs.js';

const HELP = `rkllm-mcp: an on-device LLM behind JSON-RPC 2.0, streaming tokens to any client.

Usage: rkllm-mcp [flags]
       rkllm-mcp chat [--url URL]     a conversation with a running server (rkllm-mcp chat --help)
       rkllm-mcp run "prompt"         one completion from a running server (rkllm-mcp run --help)
       rkllm-mcp doctor               checks the board and the setup for --engine rkllm (rkllm-mcp doctor --help)

  --http PORT         HTTP port (default 8082; 0 picks a free port)
  --tcp PORT          TCP port, NDJSON (default 8080)
  --udp PORT          UDP port, one message per datagram (default 8081)
  --ws PORT           WebSocket port (default 8083)
  --no-http, --no-tcp, --no-udp, --no-ws
                      do not serve that transport
  --stdio             also serve NDJSON on stdin/stdout (logs stay on stderr); exit 0 when stdin ends
  --host ADDR         address every transport binds (default 127.0.0.1)
  --engine KIND       llama.cpp (default; any CPU, GGUF models) or rkllm (Rockchip NPU runtime)
  --model PATH        the model: a GGUF file (default: the built-in tiny model, generated on first use),
                      or an .rkllm file with --engine rkllm (required)
  --models-dir DIR    the folder of models that requests name (default: folders.models, models/ in the
                      per-user data folder)
  --rkllm-lib PATH    the RKLLM runtime library (default librkllmrt.so, found by the dynamic loader)
  --rkllm-version V   its struct layout: 1.2, 1.3 or auto (default auto: told by the library)
  --vision-encoder FILE.rknn
                      the vision encoder of the --model (a VL model's .rknn), for images (docs/vision.md)
  --rknn-lib PATH     the RKNN runtime library (default librknnrt.so, found by the dynamic loader)
  --threads N         CPU threads for evaluation (default: all cores but one)
  --parallel N        generations run at once (default 4; 1 on --engine rkllm: instances of the model)
  --context N         context length in tokens, max_context_len (default 2048)
  --settings FILE     the settings file (default: ./settings.json when it exists, else the per-user
                      one); written with every default when it does not exist
  --print-settings    print the merged settings (API keys redacted) and exit
  --redis URL         share stream buffers with other instances through Redis (redis://host:port);
                      any instance then answers poll, attach and abort for any stream
  --diagnostics       enable the buffer-manager test methods (test_*)
  --log-level LEVEL   fatal, error, warn, info, debug, trace or silent (default info)
  --help              show this help and exit

Settings are applied in this order, later winning: defaults, the settings file, environment
variables (RKLLM_MCP_ and the setting's path in capitals, e.g. RKLLM_MCP_HTTP_PORT=8082,
RKLLM_MCP_AUTH_API_KEYS=key1,key2), flags.

State lives per user, never in the working directory unless asked: settings in
$XDG_CONFIG_HOME/rkllm-mcp/settings.json (~/.config/rkllm-mcp/), written with every default on first
start; models, prompt caches, LoRA adapters and the built-in model in $XDG_DATA_HOME/rkllm-mcp/
(~/.local/share/rkllm-mcp/). RKLLM_MCP_HOME=DIR puts all of it in DIR. A settings.json in the working
directory is read instead when it exists (then relative folders are under the working directory, as
they are in a checkout of the project, whose built-in model stays in its own models/).

SIGTERM or SIGINT shuts down gracefully (settings shutdown.*); a second signal exits at once.`;

/** The transports that bind a port: each has `--NAME PORT` and `--no-NAME`. */
const NETWORK_TRANSPORTS = ['http', 'tcp', 'udp', 'ws'] as const;

/** Exit code for a usage error (unknown flag, bad value). */
const USAGE = 2;

function fail(message: string): never {
  process.stderr.write(`rkllm-mcp: ${message}\nRun rkllm-mcp --help for the list of flags.\n`);
  process.exit(USAGE);
}

const OPTIONS = {
  http: { type: 'string' },
  'no-http': { type: 'boolean' },
  tcp: { type: 'string' },
  'no-tcp': { type: 'boolean' },
  udp: { type: 'string' },
  'no-udp': { type: 'boolean' },
  ws: { type: 'string' },
  'no-ws': { type: 'boolean' },
  stdio: { type: 'boolean' },
  host: { type: 'string' },
  ...SHARED_FLAGS,
  'models-dir': { type: 'string' },
  engine: { type: 'string' },
  threads: { type: 'string' },
  'print-settings': { type: 'boolean' },
  diagnostics: { type: 'boolean' },
  redis: { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * Joins a flag and a value that starts with "-" and a digit (`--threads -1` becomes `--threads=-1`),
 * which parseArgs would otherwise refuse as ambiguous, so the value's own check can say what is
 * wrong with it.
 */
function joinNegativeValues(argv: string[], takesValue: (flag: string) => boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    if (arg.startsWith('--') && takesValue(arg.slice(2)) && next !== undefined && /^-\d/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

/** What the command line says. */
interface Flags {
  settingsFile?: string;
  overrides: Record<string, unknown>;
  help: boolean;
  printSettings: boolean;
}

/** Turns the command line into a partial settings object; throws parseArgs' error or a SettingsError on a usage error. */
function parseFlags(argv: string[]): Flags {
  const { values } = parseArgs({
    args: joinNegativeValues(argv, (flag) => OPTIONS[flag as keyof typeof OPTIONS]?.type === 'string'),
    strict: true,
    allowPositionals: false,
    options: OPTIONS,
  });
  const engine = engineFlags(values);
  const threads = integerFlag('threads', values.threads, 1, 1024);
  if (threads !== undefined) engine.threads = threads;
  const parallel = integerFlag('parallel', values.parallel, 1, 256);
  if (parallel !== undefined) engine.parallel = parallel;
  const overrides: Record<string, unknown> = { engine };
  for (const name of NETWORK_TRANSPORTS) {
    const section: Record<string, unknown> = {};
    const port = integerFlag(name, values[name], 0, 65535);
    if (port !== undefined) section.port = port;
    if (values[`no-${name}`]) {
      if (port !== undefined) throw new SettingsError(`--${name} and --no-${name} contradict each other`);
      section.enabled = false;
    }
    overrides[name] = section;
  }
  if (values.stdio) overrides.stdio = { enabled: true };
  if (values.host !== undefined) overrides.host = values.host;
  if (values['models-dir'] !== undefined) overrides.models = { dir: resolve(values['models-dir']) };
  if (values.diagnostics) overrides.diagnostics = true;
  if (values.redis !== undefined) {
    overrides.streams = { store: 'redis' };
    overrides.redis = { url: values.redis };
  }
  if (values['log-level'] !== undefined) overrides.log_level = values['log-level'];
  return {
    ...(values.settings === undefined ? {} : { settingsFile: values.settings }),
    overrides,
    help: values.help === true,
    printSettings: values['print-settings'] === true,
  };
}

/**
 * Defaults < the settings file (see src/state-dirs.ts; written with every default when missing, unless
 * only printing) < environment < flags; relative folders made absolute.
 */
function loadSettings(flags: Flags): { settings: Settings; file: SettingsFile; dirs: StateDirs } {
  try {
    const dirs = currentStateDirs(flags.settingsFile);
    const file = openStateSettings(dirs, !flags.printSettings);
    const resolved = resolveSettings([
      { source: file.path, values: file.values },
      { source: 'environment', values: settingsFromEnv(process.env) },
      { source: 'command line', values: flags.overrides },
    ]);
    return { settings: anchorFolders(resolved, dirs.folderBase), file, dirs };
  } catch (err) {
    if (err instanceof SettingsError) fail(err.message);
    throw err;
  }
}

function reportSettingsFile(file: SettingsFile, dirs: StateDirs, log: Logger): void {
  if (file.unwritable !== undefined) {
    log.warn(
      { settings: file.path, reason: file.unwritable },
      'could not write the settings file; running without one (defaults, environment, flags)',
    );
    return;
  }
  log.info({ settings: file.path, from: dirs.origin, folders: dirs.folderBase, builtin: dirs.builtinModelsDir }, 'settings file in use');
  if (file.created) log.info({ settings: file.path }, 'wrote the settings file with every default');
}

/** The local HTTP port of the settings (the file is read, never written): where `chat` and `run` connect by default. */
function localHttpUrl(): string {
  const { settings } = loadSettings({ overrides: {}, help: false, printSettings: true });
  const host = ['0.0.0.0', '::', ''].includes(settings.host) ? '127.0.0.1' : settings.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${settings.http.port}/`;
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (command === 'chat' || command === 'run') {
    // Exits at once: idle keep-alive connections to the server would hold the process for seconds.
    process.exit(await clientCommand(command, rest, localHttpUrl));
  }
  if (command === 'doctor') process.exit(await (await import('./doctor/command.js')).doctorCommand(rest, process));
  let flags;
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (err) {
    fail((err as Error).message);
  }
  if (flags.help) {
    process.stdout.write(`${HELP}\n\nHere and now:\n${describeState(currentStateDirs(flags.settingsFile))}\n`);
    return;
  }
  const { settings, file, dirs } = loadSettings(flags);
  if (flags.printSettings) {
    process.stdout.write(`${printableSettings(settings)}\n`);
    process.stderr.write(`${describeState(dirs, settings)}\n`);
    return;
  }
  // Over stdio, stdout carries JSON-RPC only: whatever logs through console (a library) goes to stderr.
  if (settings.stdio.enabled) globalThis.console = new Console(process.stderr, process.stderr);
  const log = pino({ level: settings.log_level, base: { pid: process.pid } }, pino.destination(2));
  reportSettingsFile(file, dirs, log);
  const signals = exitOnSignals(log);
  if (settings.engine.kind === 'rkllm') await (await import('./doctor/command.js')).preflight(settings, log);
  // Imported here, so that `chat` and `run` start without loading the engine's libraries.
  const { startServer } = await import('./server.js');
  const server = await startServer(settings, log);
  // The ready line is the readiness signal that clients and supervisors wait for: it is printed at every log level.
  if (!log.isLevelEnabled('info')) {
    const line = { level: 30, time: Date.now(), pid: process.pid, addresses: server.addresses, msg: server.readyLine };
    process.stderr.write(`${JSON.stringify(line)}\n`);
  }
  signals.drainWith(() => server.shutdown());
  void server.ended.then(() => process.exit(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`rkllm-mcp: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
