/**
 * A tiny LoRA adapter in llama.cpp's GGUF form, generated for the tests of `rkllm_load_lora` (test-only: it is no part of the server).
 *
 * llama.cpp reads an adapter as: `general.type` = "adapter", `adapter.type` = "lora",
 * `adapter.lora.alpha`, and for each adapted weight W (ggml dims [n_in, n_out]) a pair
 * `<name>.lora_a` (dims [n_in, rank]) and `<name>.lora_b` (dims [rank, n_out]); the weight used
 * is W + scale * (alpha / rank) * B A.
 */
import { readGgufFileInfo } from 'node-llama-cpp';
import { gguf, writeGguf, type GgufTensor } from '../../src/gguf/gguf-writer.js';

/** What the adapter does: add `boost` x (residual dimension `dimension`) to the logits of `tokens`. */
export interface LogitBoost {
  /** Token ids whose logits rise. */
  readonly tokens: readonly number[];
  /** Weight of the rise. The built-in models keep a constant (about 9.2 after the output norm) in dimension 0. */
  readonly boost: number;
  /** The residual dimension read; default 0, the built-in models' constant "bias" dimension. */
  readonly dimension?: number;
}

/**
 * Writes a rank-1 LoRA adapter on `output.weight` of the model at `baseModelPath` that raises the
 * logits of chosen tokens. With the built-in models (whose dimension 0 is constant) a large boost
 * makes greedy decoding pick those tokens, so the adapter's effect is plain in the output.
 */
export async function writeLogitBoostLora(path: string, baseModelPath: string, effect: LogitBoost): Promise<void> {
  const info = await readGgufFileInfo(baseModelPath, { readTensorInfo: true });
  const output = info.tensorInfo?.find((tensor) => tensor.name === 'output.weight');
  if (!output) throw new Error(`${baseModelPath} has no output.weight tensor to adapt`);
  const [width, vocabulary] = output.dimensions.map(Number) as [number, number];
  const dimension = effect.dimension ?? 0;
  if (dimension >= width) throw new Error(`dimension ${dimension} is outside the model's ${width} residual dimensions`);
  const bad = effect.tokens.find((token) => !Number.isInteger(token) || token < 0 || token >= vocabulary);
  if (bad !== undefined) throw new Error(`token ${bad} is outside the model's vocabulary of ${vocabulary}`);

  const loraA: GgufTensor = {
    name: 'output.weight.lora_a',
    dims: [width, 1],
    type: 'F32',
    data: () => [Float32Array.from({ length: width }, (_, i) => (i === dimension ? 1 : 0))],
  };
  const boosted = new Set(effect.tokens);
  const loraB: GgufTensor = {
    name: 'output.weight.lora_b',
    dims: [1, vocabulary],
    type: 'F32',
    data: () => [Float32Array.from({ length: vocabulary }, (_, token) => (boosted.has(token) ? effect.boost : 0))],
  };
  await writeGguf(path, {
    metadata: new Map([
      ['general.architecture', gguf.string(String(info.metadata.general.architecture))],
      ['general.type', gguf.string('adapter')],
      ['general.name', gguf.string('rkllm-mcp logit boost')],
      ['adapter.type', gguf.string('lora')],
      ['adapter.lora.alpha', gguf.float32(1)],
    ]),
    tensors: [loraA, loraB],
  });
}
