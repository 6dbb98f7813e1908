import type { LlamaContextSequence, Token } from 'node-llama-cpp';

/** Conversations kept at most; beyond it the one used least recently is forgotten (memory follows the active clients). */
const MAX_CONVERSATIONS = 1024;

/**
 * The conversations that `keep_history` continues, one per owner (an API key, or a client address
 * without keys), so that one client never continues, nor sees, another's. Also which owner's
 * conversation each slot's sequence last held, for `rkllm_get_kv_cache_size`.
 */
export class Conversations {
  readonly #byOwner = new Map<string, Token[]>();
  readonly #slotOwners = new Map<LlamaContextSequence, string>();

  /** Every token of `owner`'s last run that kept history, from BOS on; empty when none. */
  of(owner: string): Token[] {
    return this.#byOwner.get(owner) ?? [];
  }

  /** Keeps `tokens` as `owner`'s conversation, or forgets it (empty). */
  set(owner: string, tokens: Token[]): void {
    this.#byOwner.delete(owner);
    if (tokens.length === 0) return;
    this.#byOwner.set(owner, tokens);
    if (this.#byOwner.size > MAX_CONVERSATIONS) this.#byOwner.delete(this.#byOwner.keys().next().value!);
  }

  /** Rewrites every conversation (clearing the KV cache for everyone). */
  map(change: (tokens: Token[]) => Token[]): void {
    for (const [owner, tokens] of [...this.#byOwner]) this.set(owner, change(tokens));
  }

  /** `sequence` now holds a run of `owner`. */
  ran(sequence: LlamaContextSequence, owner: string): void {
    this.#slotOwners.set(sequence, owner);
  }

  /** Whose run `sequence` last held. */
  slotOwner(sequence: LlamaContextSequence): string | undefined {
    return this.#slotOwners.get(sequence);
  }
}
