import { totalmem } from 'node:os';
import type { GgufInsights, LlamaModel } from 'node-llama-cpp';
import { fault } from '../../errors.js';

/** The share of the machine's memory a model and its context may take when `engine.max_memory` is 0. */
export const DEFAULT_MEMORY_SHARE = 0.75;

const GiB = 1024 ** 3;
const gib = (bytes: number): string => `${(bytes / GiB).toFixed(bytes < 10 * GiB ? 2 : 0)} GiB`;

/** Bytes a context of `slots` sequences of `contextSize` tokens takes, by node-llama-cpp's estimate (the model's own size not counted). */
export function contextMemory(insights: GgufInsights, contextSize: number, slots: number): number {
  return insights.estimateContextResourceRequirements({
    contextSize,
    sequences: slots,
    modelGpuLayers: 0,
    batchSize: Math.min(512, contextSize),
  }).cpuRam;
}

/**
 * Refuses, before the context is made, a context of `slots` sequences of `contextSize` tokens
 * whose estimated memory (node-llama-cpp's own estimate, plus the model's size) exceeds
 * `maxBytes`, or, when that is 0, a safe share of the machine's memory. Without this check
 * llama.cpp goes on allocating (gigabytes) and the process stops answering signals.
 */
export function checkMemory(model: LlamaModel, contextSize: number, slots: number, maxBytes: number, engine: string): void {
  const needed = contextMemory(model.fileInsights, contextSize, slots) + model.size;
  const total = totalmem();
  const limit = maxBytes > 0 ? maxBytes : Math.floor(total * DEFAULT_MEMORY_SHARE);
  if (needed <= limit) return;
  const source =
    maxBytes > 0 ? 'setting engine.max_memory' : `${DEFAULT_MEMORY_SHARE * 100}% of the machine's memory; setting engine.max_memory`;
  throw fault(
    'ENGINE_ERROR',
    'too_much_memory',
    { needed: gib(needed), context: contextSize, parallel: slots, limit: gib(limit), source, total: gib(total) },
    { engine, reason: 'memory' },
  );
}
