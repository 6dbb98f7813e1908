import type { BatchItem, CustomBatchingPrioritizationStrategy, LlamaContext, PrioritizedBatchItem } from 'node-llama-cpp';

/** The private part of node-llama-cpp 3.21.1's LlamaContext that this strategy reads. */
interface QueueHolder {
  _queuedDecodes?: ReadonlyArray<{ sequenceId?: unknown }>;
}

/**
 * The batch order of a slot pool's context: its `strategy` shares each decode's tokens among the
 * waiting sequences as node-llama-cpp's default ("maximumParallelism") does, and then puts them
 * into the batch in the order of their sequence ids.
 *
 * Why the order: a context with several sequences keeps one KV stream per sequence, and llama.cpp
 * (`llama_batch_allocr::split_equal(..., sequential = true)`) then puts into one micro-batch only
 * sequences whose ids follow each other in the batch (0, 1, 2, 3). A batch whose sequences queued
 * as 2, 0, 1, 3 (the order their samplings ended) is computed as two or three graphs, one after
 * another. Measured on the bench model, one engine thread: one token alone 17.5 ms; three tokens
 * of sequences 0, 1, 2 in that order 28 ms; of sequences 0, 1, 3 (two micro-batches) 41 ms.
 * llama-server adds its slots in slot order, so its batches stay whole.
 *
 * node-llama-cpp hands the strategy its queued decodes as items in queue order, without their
 * sequence ids, so the ids come from the same private queue (`_queuedDecodes`) of the context
 * given to `attach`. Until then, or if that queue does not match, the items keep the default
 * order: the output is the same, only the batch is split.
 */
export class SequenceOrder {
  #context: QueueHolder | undefined;

  /** The context's `batching.itemPrioritizationStrategy`. */
  readonly strategy: CustomBatchingPrioritizationStrategy = ({ items, size }) => {
    const shares = fairShares(items, size);
    // One item (a stream alone) has no order to keep: nothing to look up on this per-token path.
    if (shares.length < 2) return shares;
    const queued = this.#context?._queuedDecodes;
    if (!queued || queued.length !== items.length) return shares;
    const ids = new Map<BatchItem, number>();
    for (let i = 0; i < items.length; i++) {
      const id = queued[i]!.sequenceId;
      if (typeof id !== 'number') return shares;
      ids.set(items[i]!, id);
    }
    return shares.sort((a, b) => ids.get(a.item)! - ids.get(b.item)!);
  };

  /**
   * Reads the sequence ids from `context` from now on. Checks, at model load, that it still has the
   * queue this reads, and fails loudly if a node-llama-cpp upgrade removed it.
   */
  attach(context: LlamaContext): void {
    const holder = context as unknown as QueueHolder;
    if (!Array.isArray(holder._queuedDecodes)) {
      throw new Error('node-llama-cpp internals changed: LlamaContext._queuedDecodes is missing; review src/engine/llama/batch-order.ts');
    }
    this.#context = holder;
  }
}

/**
 * Each item gets an equal share of the `size` tokens (at most what it has), and what is left goes
 * to the items that still have tokens, in queue order: every sequence moves on in every decode, and
 * a long prompt takes what the others leave.
 */
export function fairShares(items: readonly BatchItem[], size: number): PrioritizedBatchItem[] {
  const shares: PrioritizedBatchItem[] = [];
  let left = size;
  const equal = Math.max(1, Math.floor(size / Math.max(1, items.length)));
  for (const item of items) {
    if (left === 0) break;
    const amount = Math.min(item.tokens.length, equal, left);
    shares.push({ item, processAmount: amount });
    left -= amount;
  }
  for (const share of shares) {
    if (left === 0) break;
    const more = Math.min(share.item.tokens.length - share.processAmount, left);
    share.processAmount += more;
    left -= more;
  }
  return shares;
}
