/**
 * The RKLLM runtime worker: a child process (forked by the engine) that loads librkllmrt.so and
 * owns the handle, so a fault inside the runtime ends this process and not the server. It serves
 * the requests of protocol.ts over the IPC channel and exits when the channel closes.
 */
import { serveRequests } from '../worker-process.js';
import { NativeSession } from './native-session.js';
import type { Command } from './protocol.js';

const session = new NativeSession((message) => void process.send?.(message));
serveRequests<Command>((command) => session.handle(command));
