/** How many tokens a run may generate. */
export interface TokenBudget {
  /** The run's own `max_new_tokens`, when it gives one above 0. */
  readonly requested: number | null;
  /** The most tokens the run may generate; null means until the context is full. */
  readonly max: number | null;
}

/**
 * The `max_new_tokens` rule of both engines: the run's own value if it gives one above 0, else the
 * value of `rkllm_init`; -1 or 0 there means until the context is full.
 */
export function tokenBudget(requested: number | undefined, initMax: number): TokenBudget {
  const own = requested !== undefined && requested > 0 ? requested : null;
  return { requested: own, max: own ?? (initMax > 0 ? initMax : null) };
}
