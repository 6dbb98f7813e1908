import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Resolves once `condition` holds, checking it every `everyMs`; rejects naming `what` after
 * `timeoutMs`. For state that has no event to wait on (a count in Redis, a file on disk).
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  { timeoutMs = 10_000, everyMs = 10 }: { timeoutMs?: number; everyMs?: number } = {},
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Resolves when `signal` is aborted (at once if it already is). */
export async function aborted(signal: AbortSignal): Promise<void> {
  if (!signal.aborted) await once(signal, 'abort');
}
