import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';

/** What a graceful shutdown acts on: the running server. */
export interface Drainable {
  /** Takes no new work: health turns 503, new runs are refused, listeners that can close do. */
  stopAccepting(): void;
  /** Streams still generating here, and buffers still holding chunks that clients have not acknowledged. */
  pending(): Promise<{ streams: number; buffers: number }>;
  /** Ends every stream still generating with a final chunk saying `finish_reason: "shutdown"`; resolves once all have ended. */
  endStreams(): Promise<void>;
  /** Closes everything. */
  close(): Promise<void>;
}

export interface DrainTimes {
  /** How long running streams may take to finish, and buffered ones to be polled to their end. */
  drainMs: number;
  /** How long the final chunks of the streams cut short stay pollable. */
  finalPollMs: number;
}

/**
 * How often a drain looks whether it is done. The state it watches changes in many places (a
 * stream ends, a client polls, a buffer expires), so it looks rather than hooking into each.
 */
const CHECK_MS = 50;

/** Resolves true as soon as nothing is pending, false when `ms` have passed first. */
async function settled(server: Drainable, ms: number, buffersOutlive: boolean): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (;;) {
    const { streams, buffers } = await server.pending();
    if (streams === 0 && (buffersOutlive || buffers === 0)) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    await sleep(Math.min(CHECK_MS, left));
  }
}

/**
 * A graceful shutdown: stop accepting; let running streams finish and clients poll what is buffered,
 * up to `drainMs`; then end the streams still running with `finish_reason: "shutdown"` and give
 * their pollers `finalPollMs` to read the final chunks; then close. With a shared store
 * (`buffersOutlive`), buffers outlive this process, so it waits for its streams only.
 */
export async function drain(server: Drainable, times: DrainTimes, log: Logger, buffersOutlive = false): Promise<void> {
  server.stopAccepting();
  if (!(await settled(server, times.drainMs, buffersOutlive))) {
    log.warn(await server.pending(), 'drain timeout: ending the streams still running with finish_reason "shutdown"');
    await server.endStreams();
    await settled(server, times.finalPollMs, buffersOutlive);
  }
  await server.close();
}

/**
 * Exits on SIGTERM and SIGINT. Until `drainWith` is given the graceful shutdown (while the model
 * loads) no handler is installed: the signals keep their default action and end the process at
 * once, even while llama.cpp holds the main thread in a long native call (a JavaScript handler
 * would only run after it: 20 s measured with `--context 1048576 --parallel 256`). Nothing runs
 * yet, so there is nothing to drain. From then on, the first signal runs the graceful shutdown and
 * exits 0 once it is done, 1 if it failed; a second signal exits at once, with 128 + the signal's
 * number, as shells report it.
 */
export function exitOnSignals(log: Logger): { drainWith(shutdown: () => Promise<void>): void } {
  let stopping = false;
  const onSignal = (shutdown: () => Promise<void>, signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting at once');
      process.exit(128 + constants.signals[signal]);
    }
    stopping = true;
    log.info({ signal }, 'shutting down: draining (a second signal exits at once)');
    shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  return {
    drainWith: (shutdown) => {
      for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => onSignal(shutdown, signal));
    },
  };
}
