/** How many tokens a run may generate. */
export interface TokenBudget {
  /** The run's own `max_new_tokens`, when it gives one above 0. */
  readonly requested: number | null;
  /** The most tokens the run may generate; null means until the context is full. */
  readonly max: number | null;
}

/**
 * The `max_new_tokens` rule of both engines. A run that gives `max_new_tokens` decides: above 0 it
 * is the cap, and -1 or 0 means until the context is full. A run that gives none takes the value of
 * `rkllm_init`, read the same way.
 *
 * One limit of the RKLLM runtime: its per-run field cannot lift the cap of `rkllm_init`, so there a
 * run's -1 under a positive init value still stops at the init value (the runtime stops itself).
 */
export function tokenBudget(requested: number | undefined, initMax: number): TokenBudget {
  const own = requested !== undefined && requested > 0 ? requested : null;
  const decides = requested ?? initMax;
  return { requested: own, max: decides > 0 ? decides : null };
}
