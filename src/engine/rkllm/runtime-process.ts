// The RKLLM runtime worker seen from the engine, with the runtime's failures and refusals turned into ENGINE_ERROR.
import { fileURLToPath } from 'node:url';
import { fault, type ServerError } from '../../errors.js';
import { errorText } from '../messages.js';
import { WorkerProcess, explain, type Reply, type WorkerProcessOptions } from '../worker-process.js';
import type { Call, Command, ResultMessage } from './protocol.js';

/** The engine's name in messages and in `data.engine`. */
export const RKLLM = 'rkllm';

export interface RuntimeProcessOptions extends Pick<WorkerProcessOptions<ResultMessage>, 'onOutput' | 'onExit'> {
  /** Each callback of a run, in order. */
  onResult(message: ResultMessage): void;
}

/** One runtime worker process (worker.ts): a run's callbacks arrive as `onResult` events. */
export class RuntimeProcess extends WorkerProcess<Command, ResultMessage> {
  constructor(options: RuntimeProcessOptions) {
    const module = fileURLToPath(new URL('./worker.js', import.meta.url));
    super({ ...options, module, name: 'the RKLLM runtime', onEvent: (message) => options.onResult(message) });
  }
}

/** The runtime answered a non-zero status code. `data` carries the code and the runtime's reason. */
export function refused(fn: string, code: number, log: string[]): ServerError {
  const reason = explain(log);
  return fault('ENGINE_ERROR', 'refused', { function: fn, code, reason }, { engine: RKLLM, function: fn, code, reason });
}

/** One request; a worker that fails it (a crash, a timeout) becomes ENGINE_ERROR. */
export async function request<T>(runtime: RuntimeProcess, command: Command, timeoutMs: number): Promise<Reply<T>> {
  try {
    return await runtime.request<T>(command, timeoutMs);
  } catch (err) {
    const reason = errorText(err);
    throw fault('ENGINE_ERROR', 'runtime_failed', { reason }, { engine: RKLLM, reason });
  }
}

/** Makes one runtime call; a non-zero status code becomes ENGINE_ERROR with the runtime's reason. */
export async function invoke(runtime: RuntimeProcess, call: Call, timeoutMs: number): Promise<void> {
  const { value, log } = await request<number>(runtime, { op: 'call', call }, timeoutMs);
  if (value !== 0) throw refused(call.fn, value, log);
}
