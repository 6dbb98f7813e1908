/**
 * The RKLLM runtime worker: a child process (forked by the engine) that loads librkllmrt.so and
 * owns the handle, so a fault inside the runtime ends this process and not the server. It serves
 * the requests of protocol.ts over the IPC channel and exits when the channel closes.
 */
import { NativeSession } from './native-session.js';
import { OUTPUT_MARK, type Request, type WorkerMessage } from './protocol.js';

function send(message: WorkerMessage): void {
  process.send?.(message);
}

async function serve(session: NativeSession, { id, command }: Request): Promise<void> {
  try {
    const { value, failed } = await session.handle(command);
    if (failed) session.mark(`${OUTPUT_MARK}${id}\n`);
    send({ type: 'reply', id, value, marked: failed });
  } catch (err) {
    session.mark(`${OUTPUT_MARK}${id}\n`);
    send({ type: 'failure', id, message: err instanceof Error ? err.message : String(err) });
  }
}

function main(): void {
  const session = new NativeSession(send);
  process.on('message', (request: Request) => void serve(session, request));
  // The engine is gone (closed the channel or died): nothing is left to serve.
  process.on('disconnect', () => process.exit(0));
}

main();
