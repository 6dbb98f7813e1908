/**
 * Keeps the runs of one context in step: each run arrives here before it queues its next decode
 * (a prefill slice or the next token), and all go on together once every run has arrived.
 *
 * Why: node-llama-cpp's batch dispatcher decodes whatever is queued, in a loop that holds the
 * context lock for as long as something is queued. Runs that queue one by one, as their sampling
 * ends, (1) split into smaller batches that alternate instead of sharing one decode, and (2) keep
 * that lock held without a break, so a run that needs it before its prefill (erasing the slot's old
 * tokens, loading a prompt cache) waits until the others have finished their whole answers. Runs
 * that queue together, once per step, share every decode, and the lock is free between steps.
 */
export class StepBarrier {
  #members = 0;
  #arrived: Array<() => void> = [];

  /** A run joins: from now on the others wait for it at each step. */
  enter(): void {
    this.#members++;
  }

  /** A run leaves (ended, aborted or failed): the others no longer wait for it. */
  leave(): void {
    this.#members--;
    this.#release();
  }

  /**
   * Resolves once every member has arrived; undefined (go on at once, no await) for a run that
   * steps alone.
   */
  arrive(): Promise<void> | undefined {
    if (this.#members <= 1 && this.#arrived.length === 0) return undefined;
    return new Promise((resolve) => {
      this.#arrived.push(resolve);
      this.#release();
    });
  }

  #release(): void {
    if (this.#arrived.length === 0 || this.#arrived.length < this.#members) return;
    const all = this.#arrived;
    this.#arrived = [];
    for (const resolve of all) resolve();
  }
}
