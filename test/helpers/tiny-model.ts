/** What tests need to know about the built-in tiny model, read from its GGUF file. */
import { open } from 'node:fs/promises';
import { readGgufFileInfo } from 'node-llama-cpp';
import { ensureBuiltinModel } from '../../src/gguf/builtin.js';
import { paragraphs, readCorpusFiles } from '../../src/gguf/builtin/corpus.js';
import { buildVocabulary, tokenize } from '../../src/gguf/builtin/vocabulary.js';
import { fromHalfBits } from '../../src/gguf/half-float.js';

/** Tokenizes text exactly as llama.cpp does with the built-in models' vocabulary (without BOS); test/model.test.ts checks it. */
export function builtinTokenizer(): (text: string) => number[] {
  const vocabulary = buildVocabulary(readCorpusFiles().flatMap((file) => paragraphs(file.text)));
  return (text) => tokenize(text, vocabulary);
}

export interface TinyModel {
  path: string;
  vocabSize: number;
  embdSize: number;
  /** The token ids llama.cpp gives `text` (word pieces, characters, byte fallback), without BOS. */
  tokenIds(text: string): number[];
  /** The rows of `token_embd.weight` for `ids`, concatenated. */
  embeddingRows(ids: number[]): Promise<number[]>;
  /** `output.weight` as vocabSize rows of embdSize values. */
  outputWeight(): Promise<Float32Array>;
}

/** GGUF tensor types the built-in model uses. */
const F32 = 0;
const F16 = 1;

async function readTensor(path: string, offset: number, type: number, floats: number, skipFloats = 0): Promise<Float32Array> {
  const size = type === F16 ? 2 : 4;
  if (type !== F16 && type !== F32) throw new Error(`tensor type ${type} is neither F32 nor F16`);
  const bytes = Buffer.alloc(floats * size);
  const file = await open(path, 'r');
  try {
    await file.read(bytes, 0, bytes.length, offset + skipFloats * size);
  } finally {
    await file.close();
  }
  return Float32Array.from({ length: floats }, (_, i) =>
    type === F16 ? fromHalfBits(bytes.readUInt16LE(2 * i)) : bytes.readFloatLE(4 * i),
  );
}

export async function tinyModel(): Promise<TinyModel> {
  const path = await ensureBuiltinModel('tiny');
  const info = await readGgufFileInfo(path, { readTensorInfo: true });
  const pieces = info.metadata.tokenizer.ggml.tokens;
  const tensor = (name: string) => info.tensorInfo!.find((t) => t.name === name)!;
  const embd = tensor('token_embd.weight');
  const embdSize = Number(embd.dimensions[0]);
  return {
    path,
    vocabSize: pieces.length,
    embdSize,
    tokenIds: builtinTokenizer(),
    embeddingRows: async (ids) => {
      const rows: number[] = [];
      for (const id of ids) rows.push(...(await readTensor(path, Number(embd.fileOffset), embd.ggmlType, embdSize, id * embdSize)));
      return rows;
    },
    outputWeight: () =>
      readTensor(path, Number(tensor('output.weight').fileOffset), tensor('output.weight').ggmlType, pieces.length * embdSize),
  };
}
