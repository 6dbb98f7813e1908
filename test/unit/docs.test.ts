// The generated pages of docs/ match the declarations they come from (npm run docs regenerates them).
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { DOC_PAGES } from '../../scripts/docs-pages.js';

const root = new URL('../../../', import.meta.url);

describe('Generated docs', () => {
  for (const page of DOC_PAGES) {
    it(`${page.path} is what npm run docs writes`, () => {
      const committed = readFileSync(new URL(page.path, root), 'utf8');
      expect(committed === page.render(), `${page.path} is stale: run npm run docs`).to.equal(true);
    });
  }
});
