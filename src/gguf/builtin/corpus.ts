/** The texts the built-in models are built from: `corpus/*.txt` of the package. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRootDir } from '../../state-dirs.js';

export interface CorpusFile {
  readonly name: string;
  readonly text: string;
}

/**
 * The `corpus/*.txt` files of the package, sorted by name; with `only`, just those (by name
 * without `.txt`): a slice of the corpus makes a different model by the same construction.
 */
export function readCorpusFiles(only?: readonly string[]): CorpusFile[] {
  const dir = join(packageRootDir(), 'corpus');
  const all = readdirSync(dir)
    .filter((name) => name.endsWith('.txt'))
    .sort();
  const unknown = only?.filter((stem) => !all.includes(`${stem}.txt`)) ?? [];
  if (unknown.length > 0) throw new Error(`no corpus file ${unknown.map((stem) => `${stem}.txt`).join(', ')} in ${dir}`);
  const names = only ? all.filter((name) => only.includes(name.slice(0, -'.txt'.length))) : all;
  if (names.length === 0) throw new Error(`no corpus files (*.txt) in ${dir}`);
  return names.map((name) => ({ name, text: readFileSync(join(dir, name), 'utf8') }));
}

/** Splits a text into paragraphs at blank lines, collapsing whitespace runs to one space. */
export function paragraphs(text: string): string[] {
  return text
    .split(/\n\s*\n/)
    .map((paragraph) => paragraph.replace(/\s+/g, ' ').trim())
    .filter((paragraph) => paragraph.length > 0);
}
