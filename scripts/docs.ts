/**
 * Regenerates the pages of docs/ that come from declarations in src/ (settings, errors).
 *
 *   node dist/scripts/docs.js [--root DIR]   (npm run docs)
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DOC_PAGES } from './docs-pages.js';

const { values } = parseArgs({ args: process.argv.slice(2), options: { root: { type: 'string' } } });
const root = values.root ?? process.cwd();
for (const page of DOC_PAGES) {
  writeFileSync(join(root, page.path), page.render());
  console.log(`wrote ${page.path}`);
}
