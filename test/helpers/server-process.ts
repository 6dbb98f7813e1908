import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { merge } from '../../src/settings-sources.js';

/** The compiled CLI: tests run the real server as a separate process. */
export const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

export interface ServerProcess {
  proc: ChildProcess;
  /** Bound addresses by transport, as printed on the readiness line. */
  addresses: Record<string, string>;
  /** `http://host:port/` of the HTTP transport. */
  url: string;
  /** Everything the server wrote to stderr so far. */
  stderr(): string;
  /** SIGTERM, then waits for exit; returns the exit code. */
  stop(): Promise<number | string | null>;
  /** Resolves with the exit code (or the signal's name, when killed by one) once the process has exited. */
  exited: Promise<number | string | null>;
}

export interface StartOptions {
  /** Extra flags. `--http 0 --tcp 0 --udp 0 --ws 0` are added, each unless that transport's flag (or --no- flag) is given. */
  args?: string[];
  /**
   * Written to a temp file and passed with --settings, over a shutdown that does not wait (test
   * servers stop at once unless a test sets `shutdown`). Null passes no settings file: the server
   * then uses settings.json in its working directory when there is one, else the per-user one (in
   * the temp XDG_CONFIG_HOME that spawnCli gives it), written on first start.
   */
  settings?: Record<string, unknown> | null;
  /** Added to the environment (e.g. RKLLM_MCP_* settings). */
  env?: Record<string, string>;
  /** The working directory; a fresh temp directory by default, so nothing the server writes lands in the repo. */
  cwd?: string;
  timeoutMs?: number;
}

/** Test servers end what is still running at once when stopped, rather than draining it. */
const QUICK_STOP = { shutdown: { drain_timeout_s: 0, final_poll_timeout_s: 0 } };

/** A fresh, empty temp directory. */
export function scratchDir(): string {
  return mkdtempSync(join(tmpdir(), 'rkllm-mcp-test-'));
}

/** Writes a settings object to a fresh temp file and returns its path. */
export function writeSettings(settings: Record<string, unknown>): string {
  const path = join(scratchDir(), 'settings.json');
  writeFileSync(path, JSON.stringify(settings));
  return path;
}

/**
 * Spawns the CLI in `cwd` (a fresh temp directory by default) with `env` added to this process's
 * environment. Its per-user folders (XDG_CONFIG_HOME, XDG_DATA_HOME) are a fresh temp directory too,
 * so no test reads or writes the real ~/.config/rkllm-mcp.
 */
export function spawnCli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; stdin?: 'pipe' | 'ignore' } = {},
): ChildProcess {
  const user = scratchDir();
  const inherited = { ...process.env };
  delete inherited.RKLLM_MCP_HOME;
  return spawn(process.execPath, [CLI, ...args], {
    stdio: [options.stdin ?? 'pipe', 'pipe', 'pipe'],
    cwd: options.cwd ?? scratchDir(),
    env: { ...inherited, XDG_CONFIG_HOME: join(user, 'config'), XDG_DATA_HOME: join(user, 'data'), ...options.env },
  });
}

/** Starts the real server and waits for its readiness line ("listening for connections"). */
export async function startServer(options: StartOptions = {}): Promise<ServerProcess> {
  const args = [...(options.args ?? [])];
  for (const name of ['http', 'tcp', 'udp', 'ws']) {
    if (!args.includes(`--${name}`) && !args.includes(`--no-${name}`)) args.push(`--${name}`, '0');
  }
  if (options.settings !== null && !args.includes('--settings'))
    args.push('--settings', writeSettings(merge(QUICK_STOP, options.settings ?? {})));
  const proc = spawnCli(args, options);
  let stderr = '';
  const addresses = await new Promise<Record<string, string>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not become ready:\n${stderr}`)), options.timeoutMs ?? 60_000);
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (data: string) => {
      stderr += data;
      for (const line of stderr.split('\n')) {
        if (!line.includes('listening for connections')) continue;
        clearTimeout(timer);
        resolve((JSON.parse(line) as { addresses: Record<string, string> }).addresses);
        return;
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with code ${code} before it was ready:\n${stderr}`));
    });
  });
  // 'close', not 'exit': by then everything it wrote has been read, so its stderr is whole.
  const exited = new Promise<number | string | null>((resolve) => proc.once('close', (code, signal) => resolve(code ?? signal)));
  return {
    proc,
    addresses,
    url: `http://${addresses.http}/`,
    stderr: () => stderr,
    exited,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

/** Runs the CLI to completion (for flags that exit), collecting its output. */
export function runCli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawnCli(args, { ...options, stdin: 'ignore' });
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    // 'close', not 'exit': the process may exit before its last output has been read from the pipes.
    proc.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
