/** `json_schema` on llama.cpp: the output is constrained by node-llama-cpp's JSON-schema grammar. */
import { LlamaGrammar, LlamaText } from 'node-llama-cpp';
import { fault } from '../../errors.js';
import { errorText } from '../messages.js';
import { GrammarWorker } from './grammar-worker.js';
import type { LoadedModel } from './model.js';

/** Grammars kept per model: building one blocks the event loop, so a repeated schema (and a run after its check) reuses it. */
const KEPT = 32;

/**
 * The grammar for `schema`: any JSON object for `{}` (llama.cpp's JSON grammar), else
 * node-llama-cpp's grammar for that schema. A schema it cannot turn into a grammar is
 * INVALID_PARAMS naming the reason. Request bodies bound the schema first (`checkOutputSchema`).
 */
export function outputGrammar(loaded: LoadedModel, schema: Record<string, unknown>): Promise<LlamaGrammar> {
  const key = JSON.stringify(schema);
  const cache = loaded.builtGrammars;
  let grammar = cache.get(key);
  cache.delete(key);
  grammar ??= build(loaded, schema);
  cache.set(key, grammar);
  grammar.catch(() => cache.delete(key));
  if (cache.size > KEPT) cache.delete(cache.keys().next().value!);
  return grammar;
}

async function build(loaded: LoadedModel, schema: Record<string, unknown>): Promise<LlamaGrammar> {
  const llama = loaded.model.llama;
  if (Object.keys(schema).length === 0) return llama.getGrammarFor('json');
  let grammar: string;
  try {
    grammar = await (loaded.grammars ??= new GrammarWorker()).text(schema);
  } catch (err) {
    throw fault('INVALID_PARAMS', 'detail', { detail: `"json_schema" cannot be turned into a grammar: ${errorText(err)}` });
  }
  // As node-llama-cpp's LlamaJsonSchemaGrammar makes it from the same text.
  return new LlamaGrammar(llama, { grammar, stopGenerationTriggers: [LlamaText(['\n'.repeat(4)])], trimWhitespaceSuffix: true });
}
