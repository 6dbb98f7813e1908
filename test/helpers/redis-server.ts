import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A real redis-server of a test's own, on a free loopback port, with its data in a temp folder. */
export interface RedisProcess {
  readonly port: number;
  readonly url: string;
  /** Stops it (SIGTERM: it saves its data first) and starts it again on the same port and data. */
  restart(): Promise<void>;
  /** Stops it; `hard` kills it with SIGKILL (the last second of writes may be lost). */
  stop(hard?: boolean): Promise<void>;
  /** Starts it again after `stop`. */
  start(): Promise<void>;
  /** Stops it and removes its data. */
  dispose(): Promise<void>;
  /** Sends it a signal: SIGSTOP stalls it (it accepts connections and answers nothing), SIGCONT resumes it. */
  signal(signal: NodeJS.Signals): void;
}

const READY_TIMEOUT_MS = 10_000;

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function launch(port: number, dir: string): Promise<ChildProcess> {
  // Writes are logged (AOF) and SIGTERM flushes the log before exit, so a restart keeps everything.
  const persistence = ['--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec'];
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, ...persistence];
  const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${output}`)), READY_TIMEOUT_MS);
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run redis-server (install the Debian package redis-server): ${err.message}`));
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with code ${code}:\n${output}`));
    });
    proc.stdout.on('data', (data: Buffer) => {
      output += data.toString();
      if (!output.includes('Ready to accept connections')) return;
      clearTimeout(timer);
      resolve();
    });
  });
  proc.removeAllListeners('exit');
  return proc;
}

async function halt(proc: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill(signal);
  await exited;
}

/** Starts redis-server; call `dispose` in an after hook. */
export async function startRedis(): Promise<RedisProcess> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'rkllm-mcp-redis-'));
  let proc: ChildProcess | undefined = await launch(port, dir);
  const stop = async (hard = false): Promise<void> => {
    if (proc) await halt(proc, hard ? 'SIGKILL' : 'SIGTERM');
    proc = undefined;
  };
  const start = async (): Promise<void> => {
    proc ??= await launch(port, dir);
  };
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
    signal: (signal) => void proc?.kill(signal),
    restart: async () => {
      await stop();
      await start();
    },
    dispose: async () => {
      proc?.kill('SIGCONT');
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
