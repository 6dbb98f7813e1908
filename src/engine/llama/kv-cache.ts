/** `rkllm_clear_kv_cache` and `rkllm_get_kv_cache_size` on llama.cpp: every slot's sequence, in every context. */
import { fault } from '../../errors.js';
import type { KvCacheClear, KvCacheSize } from '../types.js';
import type { LoadedModel } from './model.js';
import { startTokens } from './chat-prompt.js';
import { commonPrefix } from './prompt-cache.js';

/**
 * Clears every slot (keeping the system prompt when asked), or, with positions, slot i's range
 * [start_pos[i], end_pos[i]) in the base context and every adapter's. The caller makes sure no run
 * is using the sequences.
 */
export async function clearKvCache(loaded: LoadedModel, request: KvCacheClear, slots: number): Promise<void> {
  const pools = [loaded.base, ...loaded.adapters.values()];
  const { start_pos: starts, end_pos: ends } = request;
  if (starts === undefined && ends === undefined) {
    const system = request.keep_system_prompt ? startTokens(loaded, loaded.format.system()) : [];
    for (const sequence of pools.flatMap((pool) => pool.sequences)) {
      await sequence.eraseContextTokenRanges([{ start: commonPrefix(sequence.contextTokens, system), end: sequence.nextTokenIndex }]);
    }
    loaded.conversations.map((history) => history.slice(0, commonPrefix(history, system)));
    return;
  }
  if (starts === undefined || ends === undefined || starts.length !== ends.length || starts.length > slots) {
    throw fault('INVALID_PARAMS', 'detail', {
      detail: `"start_pos" and "end_pos" go together, with one position per slot (at most ${slots})`,
    });
  }
  for (const [slot, start] of starts.entries()) {
    const end = ends[slot]!;
    for (const sequence of pools.map((pool) => pool.sequences[slot]!)) {
      const stop = Math.min(end, sequence.nextTokenIndex);
      if (start < stop) await sequence.eraseContextTokenRanges([{ start, end: stop }]);
    }
    // The kept conversation of the owner whose run slot 0 last held follows it, as with a single RKLLM batch.
    const owner = slot === 0 && start < end ? loaded.conversations.slotOwner(loaded.base.sequences[0]!) : undefined;
    if (owner !== undefined) {
      const history = loaded.conversations.of(owner);
      loaded.conversations.set(owner, [...history.slice(0, start), ...history.slice(end)]);
    }
  }
}

/** Tokens each slot holds; with `owner`, only the slots whose last run was `owner`'s (0 elsewhere), so no client sees another's. */
export function kvCacheSize(loaded: LoadedModel, owner?: string): KvCacheSize {
  const sizes = loaded.base.sequences.map((sequence) =>
    owner === undefined || loaded.conversations.slotOwner(sequence) === owner ? sequence.nextTokenIndex : 0,
  );
  return { cache_sizes: sizes };
}
