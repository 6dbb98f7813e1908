/**
 * `keep_alive` in Ollama's words: how long a model stays loaded once idle. A duration in Go's
 * syntax ("30s", "5m", "1h30m", "250ms"), a bare number of seconds (JSON number or string), 0 to
 * unload as soon as the model is idle, and any negative value to keep it loaded for good. A duration
 * longer than a Node.js timer can wait (`MAX_TIMER_MS`, about 24.8 days) keeps it loaded for good too.
 */

/** Milliseconds, or `FOREVER`. */
export type KeepAliveMs = number;

/** A negative keep_alive: never unloaded by time. */
export const FOREVER: KeepAliveMs = Number.POSITIVE_INFINITY;

/** The longest delay a Node.js timer takes (about 24.8 days); a longer keep_alive ("1000h", 1e300) keeps the model loaded. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

function bounded(ms: number): KeepAliveMs {
  return ms > MAX_TIMER_MS ? FOREVER : ms;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses `value`; undefined when it is not a keep_alive at all (the caller names the field in its own error). */
export function parseKeepAlive(value: unknown): KeepAliveMs | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? (value < 0 ? FOREVER : bounded(value * 1000)) : undefined;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^-?\d+(\.\d+)?$/.test(text)) return parseKeepAlive(Number(text));
  const match = /^(-)?((?:\d+(?:\.\d+)?(?:ms|s|m|h))+)$/.exec(text);
  if (!match) return undefined;
  if (match[1]) return FOREVER;
  let ms = 0;
  for (const part of match[2]!.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(part[1]) * UNITS[part[2]!]!;
  return bounded(ms);
}

/** When a model idle from `now` expires (ISO 8601), as Ollama's `/api/ps` shows it; far in the future for FOREVER. */
export function expiresAt(now: number, keepAliveMs: KeepAliveMs): string {
  return new Date(keepAliveMs === FOREVER ? Date.UTC(2318, 0, 1) : now + keepAliveMs).toISOString();
}
