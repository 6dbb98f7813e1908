import type { LlamaContext, LlamaContextSequence, LlamaModel } from 'node-llama-cpp';
import type { RKLLMLoraAdapter } from '../types.js';
import { SequenceOrder } from './batch-order.js';
import { serializeSampling } from './serial-sampling.js';
import { StepBarrier } from './step-barrier.js';

/**
 * One llama.cpp context and its sequences, one per slot, lent to one user at a time (a run, or
 * the loading of a prompt cache). The scheduler admits at most one run per slot, so a borrower
 * waits only while a prompt cache is being loaded into a sequence.
 */
export class SlotPool {
  readonly context: LlamaContext;
  readonly sequences: readonly LlamaContextSequence[];
  /** The runs on this context's sequences step together (see step-barrier.ts). */
  readonly steps = new StepBarrier();
  readonly #free: LlamaContextSequence[];
  readonly #waiting: Array<(sequence: LlamaContextSequence) => void> = [];

  constructor(context: LlamaContext, slots: number) {
    this.context = context;
    this.sequences = Array.from({ length: slots }, () => context.getSequence());
    this.#free = [...this.sequences];
  }

  /**
   * A context of `model` with one sequence per slot, whose samplings wait for the batch's output
   * rows to be in place (see serial-sampling.ts) and whose batches hold their sequences in id order
   * (see batch-order.ts). With `adapter`, the context applies that LoRA adapter to every sequence.
   * Flash attention is on, as llama-server's default ("auto") turns it on for the CPU: without it,
   * a decode of several sequences cost about as much as decoding them one by one (docs/benchmarks.md).
   */
  static async create(
    model: LlamaModel,
    contextSize: number,
    threads: number,
    slots: number,
    adapter?: RKLLMLoraAdapter,
  ): Promise<SlotPool> {
    const order = new SequenceOrder();
    const context = await model.createContext({
      contextSize,
      sequences: slots,
      threads,
      batchSize: Math.min(512, contextSize),
      flashAttention: true,
      batching: { itemPrioritizationStrategy: order.strategy },
      ...(adapter ? { lora: { adapters: [{ filePath: adapter.lora_adapter_path, scale: adapter.scale }] } } : {}),
    });
    order.attach(context);
    serializeSampling(context);
    return new SlotPool(context, slots);
  }

  /** Lends a free sequence, waiting for one to come back when all are lent. */
  take(): Promise<LlamaContextSequence> {
    const sequence = this.tryTake();
    if (sequence) return Promise.resolve(sequence);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /**
   * Lends the free sequence made first (the lowest id) at once, or nothing when all are lent. The
   * busy sequences then keep ids that follow each other, so a batch of them is decoded whole
   * (batch-order.ts).
   */
  tryTake(): LlamaContextSequence | undefined {
    return this.#free.shift();
  }

  /** Gives a lent sequence back, to the longest waiter first. */
  give(sequence: LlamaContextSequence): void {
    const next = this.#waiting.shift();
    if (next) {
      next(sequence);
      return;
    }
    this.#free.push(sequence);
    this.#free.sort((a, b) => this.sequences.indexOf(a) - this.sequences.indexOf(b));
  }
}
