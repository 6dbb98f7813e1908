/**
 * llama-server as the bench's anchor (LLAMA_SERVER names the binary; `npm run bench:anchor`
 * builds it from the llama.cpp that node-llama-cpp ships): started on the same GGUF, with the
 * same threads, `parallel` slots of the same context length each.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';

const HTTP_THREADS = 128;

export interface Anchor extends AsyncDisposable {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

export async function startAnchor(
  binary: string,
  modelPath: string,
  threads: number,
  parallel: number,
  contextPerSlot: number,
): Promise<Anchor> {
  const port = await freePort();
  const args = ['-m', modelPath, '--host', '127.0.0.1', '--port', String(port), '-t', String(threads), '-tb', String(threads)];
  // One HTTP thread per keep-alive connection of the req/s row (its default, the core count, serves 2 at a time here).
  args.push('-np', String(parallel), '-c', String(parallel * contextPerSlot), '-b', '512', '--threads-http', String(HTTP_THREADS));
  const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  const exited = once(child, 'exit');
  const url = `http://127.0.0.1:${port}`;
  const deadline = performance.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`llama-server exited with ${child.exitCode}:\n${log}`);
    const ok = await fetch(`${url}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (performance.now() > deadline) {
      child.kill();
      throw new Error(`llama-server did not become healthy within 60 s:\n${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    [Symbol.asyncDispose]: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
