import type { RKLLMResultLastHiddenLayer, RKLLMResultLogits, RunOutcome } from '../../engine/types.js';

/**
 * What the executor of a shared run sends its receiver, one Redis Stream entry each: it started
 * (s, naming the instance), text (t, with a GET_* run's outputs), its end (e, with the engine's
 * outcome), or, written by whichever instance reaped it, that its executor was lost.
 */
export type Entry =
  | { t: 's'; x: string }
  | { t: 't'; text: string; h?: RKLLMResultLastHiddenLayer; l?: RKLLMResultLogits }
  | { t: 'e'; o: RunOutcome }
  | { t: 'lost'; executor: string; tokens: number; attempts: number };
