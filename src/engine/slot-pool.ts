import type { LlamaContext, LlamaContextSequence } from 'node-llama-cpp';

/**
 * One llama.cpp context and its sequences, one per slot, lent to one user at a time (a run, or
 * the loading of a prompt cache). The scheduler admits at most one run per slot, so a borrower
 * waits only while a prompt cache is being loaded into a sequence.
 */
export class SlotPool {
  readonly context: LlamaContext;
  readonly sequences: readonly LlamaContextSequence[];
  readonly #free: LlamaContextSequence[];
  readonly #waiting: Array<(sequence: LlamaContextSequence) => void> = [];

  constructor(context: LlamaContext, slots: number) {
    this.context = context;
    this.sequences = Array.from({ length: slots }, () => context.getSequence());
    this.#free = [...this.sequences];
  }

  /** Lends a free sequence, waiting for one to come back when all are lent. */
  take(): Promise<LlamaContextSequence> {
    const sequence = this.#free.pop();
    if (sequence) return Promise.resolve(sequence);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** Lends a free sequence at once, or nothing when all are lent. */
  tryTake(): LlamaContextSequence | undefined {
    return this.#free.pop();
  }

  /** Gives a lent sequence back, to the longest waiter first. */
  give(sequence: LlamaContextSequence): void {
    const next = this.#waiting.shift();
    if (next) next(sequence);
    else this.#free.push(sequence);
  }
}
