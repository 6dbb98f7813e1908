import type { ServerError } from '../errors.js';

/** Waits for `promise`, refusing with `refusal()` past `deadline` (ms since the epoch; Infinity: none) or when `signal` aborts. */
export async function bounded<T>(promise: Promise<T>, deadline: number, signal: AbortSignal | undefined, refusal: () => ServerError): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        if (Number.isFinite(deadline)) timer = setTimeout(() => reject(refusal()), Math.max(0, deadline - Date.now()));
        onAbort = () => reject(refusal());
        signal?.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}
