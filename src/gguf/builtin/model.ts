/** Model assembly: the core, the bench model's extra blocks and noise, and the GGUF metadata. */
import { gguf, type GgufFile, type GgufTensor, type GgufValue } from '../gguf-writer.js';
import {
  CoreLayout,
  HEAD_DIM,
  RMS_NORM_EPS,
  ROPE_FREQ_BASE,
  buildCoreWeights,
  type BlockWeights,
  type CoreWeights,
} from './core-weights.js';
import { paragraphs, readCorpusFiles } from './corpus.js';
import { Matrix } from './matrix.js';
import { BENCH_NOISE, NO_NOISE, embedded, type NoiseAmplitudes } from './noise.js';
import { buildStatistics } from './statistics.js';
import { BOS_TOKEN_ID, EOS_TOKEN_ID, UNK_TOKEN_ID, type Vocabulary } from './vocabulary.js';

/** Which built-in model: `tiny` for tests and `npm start`, `bench` for benchmarks. */
export type BuiltinModelKind = 'tiny' | 'bench';

/** All built-in model kinds. */
export const BUILTIN_MODEL_KINDS: readonly BuiltinModelKind[] = ['tiny', 'bench'];

/** Training context length written to the models' metadata. */
export const BUILTIN_CONTEXT_LENGTH = 4096;

/** Shape of a built-in model. */
export interface BuiltinModelShape {
  readonly vocabularySize: number;
  readonly embeddingLength: number;
  readonly feedForwardLength: number;
  readonly blockCount: number;
  readonly headCount: number;
  readonly headDim: number;
  /** Total number of weights in all tensors. */
  readonly parameterCount: number;
}

export type ModelShape = Omit<BuiltinModelShape, 'parameterCount'>;

/** The bench model's size: about 63M parameters, 228 MiB (embedding and output in F16, the rest F32). */
const BENCH_DIMENSIONS = { embeddingLength: 768, feedForwardLength: 3072, blockCount: 6 } as const;

/** Builds a model of `kind` from the whole corpus, or from the files `corpus` names (without `.txt`). */
export function buildModel(kind: BuiltinModelKind, corpus?: readonly string[]): { shape: ModelShape; file: GgufFile } {
  const stats = buildStatistics(readCorpusFiles(corpus).map((file) => paragraphs(file.text)));
  const layout = new CoreLayout(stats);
  const dimensions =
    kind === 'tiny'
      ? { embeddingLength: layout.width, feedForwardLength: layout.ffnLength, blockCount: 1, headCount: 1 }
      : { ...BENCH_DIMENSIONS, headCount: BENCH_DIMENSIONS.embeddingLength / HEAD_DIM };
  const shape: ModelShape = { vocabularySize: stats.vocabulary.pieces.length, ...dimensions, headDim: HEAD_DIM };
  const core = buildCoreWeights(stats, layout, shape.embeddingLength);
  const tensors = modelTensors(core, shape, kind === 'bench' ? BENCH_NOISE : NO_NOISE);
  const name = corpus ? `rkllm-mcp ${kind} (${corpus.join(', ')})` : `rkllm-mcp ${kind}`;
  return { shape, file: { metadata: modelMetadata(name, shape, stats.vocabulary), tensors } };
}

/**
 * All tensors. The core is block 0 (its head is head 0, its neurons are the
 * first neurons) and everything else is noise, except that no noise is ever
 * written into the core's residual dimensions: the core computes exactly what
 * it computes alone, up to slightly different norms.
 */
function modelTensors(core: CoreWeights, shape: ModelShape, noise: NoiseAmplitudes): GgufTensor[] {
  const { embeddingLength: width, vocabularySize: vocab } = shape;
  const blocks = Array.from({ length: shape.blockCount }, (_, i) => (i === 0 ? core.block : noiseOnlyBlock(core.layout)));
  return [
    embedded('token_embd.weight', core.tokenEmbedding, vocab, width, 0, 'F16'),
    ...blocks.flatMap((block, i) => blockTensors(`blk.${i}`, block, shape, noise)),
    ones('output_norm.weight', width),
    embedded('output.weight', core.output, vocab, width, 0, 'F16'),
  ];
}

/** A block without a core: its output projections leave the core's residual dimensions alone. */
function noiseOnlyBlock(layout: CoreLayout): BlockWeights {
  const none = new Matrix(0, 0);
  const protectedRows = new Matrix(layout.width, 0);
  return {
    attnQ: none,
    attnK: none,
    attnV: none,
    attnOutput: protectedRows,
    ffnGate: none,
    ffnUp: none,
    ffnDown: protectedRows,
  };
}

function blockTensors(prefix: string, block: BlockWeights, shape: ModelShape, noise: NoiseAmplitudes): GgufTensor[] {
  const { embeddingLength: width, feedForwardLength: ffn } = shape;
  const attention = shape.headCount * shape.headDim;
  return [
    ones(`${prefix}.attn_norm.weight`, width),
    embedded(`${prefix}.attn_q.weight`, block.attnQ, attention, width, noise.read),
    embedded(`${prefix}.attn_k.weight`, block.attnK, attention, width, noise.read),
    embedded(`${prefix}.attn_v.weight`, block.attnV, attention, width, noise.read),
    embedded(`${prefix}.attn_output.weight`, block.attnOutput, width, attention, noise.write),
    ones(`${prefix}.ffn_norm.weight`, width),
    embedded(`${prefix}.ffn_gate.weight`, block.ffnGate, ffn, width, noise.read),
    embedded(`${prefix}.ffn_up.weight`, block.ffnUp, ffn, width, noise.read),
    embedded(`${prefix}.ffn_down.weight`, block.ffnDown, width, ffn, noise.write),
  ];
}

function ones(name: string, length: number): GgufTensor {
  return { name, dims: [length], type: 'F32', data: () => [new Float32Array(length).fill(1)] };
}

function modelMetadata(name: string, shape: ModelShape, vocabulary: Vocabulary): Map<string, GgufValue> {
  return new Map<string, GgufValue>([
    ['general.architecture', gguf.string('llama')],
    ['general.name', gguf.string(name)],
    ['general.description', gguf.string('Hand-built word bigram model, with trigram corrections, of the rkllm-mcp corpus')],
    ['general.file_type', gguf.uint32(1)], // mostly F16: the embeddings and the output
    ['llama.vocab_size', gguf.uint32(shape.vocabularySize)],
    ['llama.context_length', gguf.uint32(BUILTIN_CONTEXT_LENGTH)],
    ['llama.embedding_length', gguf.uint32(shape.embeddingLength)],
    ['llama.block_count', gguf.uint32(shape.blockCount)],
    ['llama.feed_forward_length', gguf.uint32(shape.feedForwardLength)],
    ['llama.attention.head_count', gguf.uint32(shape.headCount)],
    ['llama.attention.head_count_kv', gguf.uint32(shape.headCount)],
    ['llama.attention.key_length', gguf.uint32(shape.headDim)],
    ['llama.attention.value_length', gguf.uint32(shape.headDim)],
    ['llama.attention.layer_norm_rms_epsilon', gguf.float32(RMS_NORM_EPS)],
    ['llama.rope.dimension_count', gguf.uint32(shape.headDim)],
    ['llama.rope.freq_base', gguf.float32(ROPE_FREQ_BASE)],
    ['tokenizer.ggml.model', gguf.string('llama')],
    ['tokenizer.ggml.tokens', gguf.stringArray(vocabulary.pieces)],
    ['tokenizer.ggml.scores', gguf.float32Array(vocabulary.scores)],
    ['tokenizer.ggml.token_type', gguf.int32Array(vocabulary.types)],
    ['tokenizer.ggml.unknown_token_id', gguf.uint32(UNK_TOKEN_ID)],
    ['tokenizer.ggml.bos_token_id', gguf.uint32(BOS_TOKEN_ID)],
    ['tokenizer.ggml.eos_token_id', gguf.uint32(EOS_TOKEN_ID)],
    ['tokenizer.ggml.add_bos_token', gguf.bool(true)],
    ['tokenizer.ggml.add_eos_token', gguf.bool(false)],
    ['tokenizer.ggml.add_space_prefix', gguf.bool(false)],
  ]);
}
