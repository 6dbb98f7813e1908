import { expect } from 'chai';
import { getLlama, LlamaJsonSchemaGrammar } from 'node-llama-cpp';
import { GrammarWorker } from '../../src/engine/llama/grammar-worker.js';

describe('JSON-schema grammars off the event loop', function () {
  this.timeout(60_000);
  const schema = {
    type: 'object',
    properties: { answer: { enum: Array.from({ length: 20_000 }, (_, i) => `value-${i}`) }, ok: { type: 'boolean' } },
    required: ['answer', 'ok'],
  };

  it("builds node-llama-cpp's own grammar text in a worker thread, while the event loop keeps turning", async () => {
    const worker = new GrammarWorker();
    try {
      let turns = 0;
      const ticker = setInterval(() => turns++, 1);
      const text = await worker.text(schema);
      clearInterval(ticker);
      // Built on the main thread, the same text takes hundreds of milliseconds in which no timer fires.
      expect(turns).to.be.at.least(3);
      const llama = await getLlama({ gpu: false, build: 'never' });
      expect(text).to.equal(new LlamaJsonSchemaGrammar(llama, schema as never).grammar);
    } finally {
      await worker.close();
    }
  });

  it('rejects what cannot become a grammar with the reason, and keeps serving', async () => {
    const worker = new GrammarWorker();
    try {
      const refused = await worker.text({ enum: 5 }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(refused).to.be.instanceOf(Error);
      expect(await worker.text({ type: 'boolean' })).to.be.a('string').that.is.not.empty;
    } finally {
      await worker.close();
    }
  });
});
