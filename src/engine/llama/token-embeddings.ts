import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { GgmlType, type GgufFileInfo, type Token } from 'node-llama-cpp';
import { fromHalfBits } from '../../gguf/half-float.js';

/** Rows read from the file at a time while indexing. */
const ROWS_PER_READ = 1024;

/** A key for an embedding vector: a hash of its float32 bytes, with -0 read as 0 (JSON cannot tell them apart). */
function vectorKey(values: Float32Array): string {
  for (let i = 0; i < values.length; i++) if (values[i] === 0) values[i] = 0;
  return createHash('sha1')
    .update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength))
    .digest('base64');
}

function decodeRows(bytes: Buffer, type: GgmlType): Float32Array {
  if (type === GgmlType.F32) return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const out = new Float32Array(bytes.byteLength / 2);
  for (let i = 0; i < out.length; i++) out[i] = fromHalfBits(bytes.readUInt16LE(i * 2));
  return out;
}

/** The token whose embedding row equals each vector of `embed` (rows of the table's width), or the index of the first vector that equals no row. */
export type TokensForEmbeddings = (embed: readonly number[]) => { tokens: Token[] } | { unmatched: number };

/**
 * Reads the model's token embedding table (`token_embd.weight`) from a GGUF file and indexes it
 * by the exact float32 value of each row, or returns why it cannot (e.g. a quantized table). A
 * transformer reads a token only through its embedding row, so evaluating the token whose row
 * equals a vector is exactly evaluating that vector: this is how the llama.cpp engine runs EMBED
 * input, since node-llama-cpp cannot pass raw embeddings to llama.cpp. Vectors that are no row of
 * the table cannot be evaluated this way.
 */
export async function indexTokenEmbeddings(path: string, info: GgufFileInfo): Promise<TokensForEmbeddings | string> {
  const tensor = info.tensorInfo?.find((t) => t.name === 'token_embd.weight');
  if (!tensor) return 'the model file has no token_embd.weight tensor';
  if (tensor.ggmlType !== GgmlType.F32 && tensor.ggmlType !== GgmlType.F16) {
    return `its token embedding table is ${GgmlType[tensor.ggmlType]}; only F32 and F16 tables can be matched exactly`;
  }
  const [embdSize, vocabSize] = tensor.dimensions.map(Number) as [number, number];
  const rowBytes = embdSize * (tensor.ggmlType === GgmlType.F32 ? 4 : 2);
  const index = new Map<string, Token>();
  const file = await open(path, 'r');
  try {
    for (let first = 0; first < vocabSize; first += ROWS_PER_READ) {
      const rows = Math.min(ROWS_PER_READ, vocabSize - first);
      const bytes = Buffer.alloc(rows * rowBytes);
      await file.read(bytes, 0, bytes.length, Number(tensor.fileOffset) + first * rowBytes);
      const values = decodeRows(bytes, tensor.ggmlType);
      for (let row = 0; row < rows; row++) {
        const key = vectorKey(values.subarray(row * embdSize, (row + 1) * embdSize));
        if (!index.has(key)) index.set(key, (first + row) as Token);
      }
    }
  } finally {
    await file.close();
  }
  return (embed) => {
    const tokens: Token[] = [];
    for (let i = 0; i * embdSize < embed.length; i++) {
      const token = index.get(vectorKey(Float32Array.from(embed.slice(i * embdSize, (i + 1) * embdSize))));
      if (token === undefined) return { unmatched: i };
      tokens.push(token);
    }
    return { tokens };
  };
}
