/**
 * The folder of models: every `*.gguf` (llama.cpp) or `*.rkllm` (RKLLM) file in it is a model,
 * named by its file name without the extension. The folder is read again on each lookup (one
 * `readdir` and a `stat` per file), so files added or removed are seen without a restart; what is
 * read from a GGUF header is kept per file, size and modification time. The built-in model is
 * always there under a fixed name, whatever the folder holds.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { GgufInsights, readGgufFileInfo, type GgufFileInfo } from 'node-llama-cpp';
import { contextMemory } from '../engine/llama/memory-budget.js';
import type { ChatTemplate, SamplingParams } from '../engine/types.js';

/** A model's name without Ollama's `:latest` tag, which clients may add to any name. */
export function bareName(name: string): string {
  return name.endsWith(':latest') ? name.slice(0, -':latest'.length) : name;
}

/** The name the built-in tiny model is always listed and requested under. */
export const BUILTIN_NAME = 'rkllm-tiny';

/** The built-in models' cache files (`rkllm-tiny-<hash>.gguf`, and corpus slices `rkllm-tiny-aesop-<hash>.gguf`): not listed; the tiny one is {@link BUILTIN_NAME}. */
const BUILTIN_CACHE = /^rkllm-(tiny|bench)(-[a-z0-9]+)*-[0-9a-f]{12}$/;
const TINY_CACHE = /^rkllm-tiny-[0-9a-f]{12}$/;

/** A model's optional `NAME.json` beside its file: what it loads with. */
export interface ModelSidecar {
  /** Context length per sequence, in tokens (default: the setting engine.max_context_len). */
  max_context_len?: number;
  /** The model's default sampling (a run's own values still win). */
  sampling?: Partial<Pick<SamplingParams, 'temperature' | 'top_k' | 'top_p' | 'repeat_penalty'>>;
  /** Set with rkllm_set_chat_template once loaded. */
  chat_template?: ChatTemplate;
  /** Loaded with rkllm_load_lora once loaded: files inside the LoRA folder (setting folders.lora_adapters). */
  lora_adapters?: Array<{ path: string; name: string; scale?: number }>;
}

/** One model of the folder, as listings show it. */
export interface ModelEntry {
  name: string;
  path: string;
  format: 'gguf' | 'rkllm';
  size: number;
  modifiedAt: Date;
  /** The GGUF's `general.architecture` ("llama", "qwen2"...); the engine's name for .rkllm files. */
  family: string;
  /** Weights in the file, summed over its tensors (GGUF only). */
  parameterCount: number | undefined;
  /** The GGUF's file type, e.g. "F16", "Q4_K_M" (GGUF only). */
  quantization: string | undefined;
  /** The context the model was trained with (GGUF only). */
  trainContext: number | undefined;
  builtin: boolean;
  sidecar: ModelSidecar;
  /** Bytes the model and a context of `contextSize` tokens for `slots` sequences take, by node-llama-cpp's estimate (the file size for .rkllm). */
  memory(contextSize: number, slots: number): number;
}

export interface ModelCatalogOptions {
  /** The folder (absolute). */
  dir: string;
  engine: 'llama.cpp' | 'rkllm';
  /** The built-in model's file, generated on first call (llama.cpp only). */
  builtin?: () => Promise<string>;
}

/** What a GGUF header tells. */
type HeaderFacts = Pick<ModelEntry, 'family' | 'parameterCount' | 'quantization' | 'trainContext'> & { insights: GgufInsights };

const FILE_TYPES: Record<number, string> = { 0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 7: 'Q8_0', 8: 'Q5_0', 9: 'Q5_1', 15: 'Q4_K_M', 17: 'Q5_K_M', 18: 'Q6_K' };

async function readHeader(path: string): Promise<HeaderFacts> {
  const info: GgufFileInfo = await readGgufFileInfo(path, {
    logWarnings: false,
    ignoreKeys: ['tokenizer.ggml.tokens', 'tokenizer.ggml.scores', 'tokenizer.ggml.token_type', 'tokenizer.ggml.merges'],
  });
  const parameterCount = (info.fullTensorInfo ?? info.tensorInfo ?? []).reduce(
    (sum, t) => sum + t.dimensions.reduce<number>((product, d) => product * Number(d), 1),
    0,
  );
  const general = info.metadata.general as { architecture?: string; file_type?: number };
  const context = (info.architectureMetadata as { context_length?: number }).context_length;
  return {
    family: general.architecture ?? 'unknown',
    parameterCount,
    quantization: general.file_type === undefined ? undefined : (FILE_TYPES[general.file_type] ?? `type ${general.file_type}`),
    trainContext: context,
    insights: await GgufInsights.from(info),
  };
}

async function readSidecar(path: string): Promise<ModelSidecar> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return {};
  const value = JSON.parse(text) as unknown;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${path}: a model's sidecar must be a JSON object`);
  return value;
}

export class ModelCatalog {
  readonly #o: ModelCatalogOptions;
  readonly #extension: string;
  /** GGUF facts by `path:size:mtime`, so a changed file is read again. */
  readonly #headers = new Map<string, Promise<HeaderFacts>>();

  constructor(options: ModelCatalogOptions) {
    this.#o = options;
    this.#extension = options.engine === 'rkllm' ? '.rkllm' : '.gguf';
  }

  /** The name a model file goes by: the built-in model's fixed name, else its file name without the extension. */
  nameOf(path: string): string {
    const stem = basename(path, extname(path));
    return TINY_CACHE.test(stem) ? BUILTIN_NAME : stem;
  }

  /** Every model, the built-in one first, then the folder's by name. A file that cannot be read is left out. */
  async list(): Promise<ModelEntry[]> {
    const names: string[] = await readdir(this.#o.dir).catch(() => []);
    const files = names.filter((n) => n.endsWith(this.#extension) && !BUILTIN_CACHE.test(n.slice(0, -this.#extension.length))).sort();
    const entries = await Promise.all(files.map((file) => this.#entry(join(this.#o.dir, file), false).catch(() => undefined)));
    const builtin = this.#o.builtin ? await this.#entry(await this.#o.builtin(), true) : undefined;
    return [...(builtin ? [builtin] : []), ...entries.filter((e): e is ModelEntry => e !== undefined && e.name !== BUILTIN_NAME)];
  }

  /** The model named `name` (Ollama's `:latest` tag accepted), or undefined. Never builds a path from the name: it is looked up among the files. */
  async find(name: string): Promise<ModelEntry | undefined> {
    const bare = bareName(name);
    return (await this.list()).find((e) => e.name === bare);
  }

  /** The entry of a model file anywhere (the one given at start may lie outside the folder). */
  describe(path: string): Promise<ModelEntry> {
    return this.#entry(path, this.nameOf(path) === BUILTIN_NAME);
  }

  async #entry(path: string, builtin: boolean): Promise<ModelEntry> {
    const info = await stat(path);
    if (!info.isFile()) throw new Error(`${path} is not a file`);
    const name = builtin ? BUILTIN_NAME : this.nameOf(path);
    const gguf = extname(path) === '.gguf';
    const facts = gguf ? await this.#header(path, info.size, info.mtimeMs) : undefined;
    const sidecar = await readSidecar(join(this.#o.dir, `${name}.json`)).catch(() => ({}));
    return {
      name,
      path,
      format: gguf ? 'gguf' : 'rkllm',
      size: info.size,
      modifiedAt: info.mtime,
      family: facts?.family ?? this.#o.engine,
      parameterCount: facts?.parameterCount,
      quantization: facts?.quantization,
      trainContext: facts?.trainContext,
      builtin,
      sidecar,
      memory: (contextSize, slots) => (facts ? facts.insights.modelSize + contextMemory(facts.insights, contextSize, slots) : info.size),
    };
  }

  #header(path: string, size: number, mtimeMs: number): Promise<HeaderFacts> {
    const key = `${path}:${size}:${mtimeMs}`;
    let facts = this.#headers.get(key);
    if (!facts) {
      facts = readHeader(path);
      this.#headers.set(key, facts);
      facts.catch(() => this.#headers.delete(key));
    }
    return facts;
  }
}
