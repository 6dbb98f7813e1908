/**
 * A worker thread that turns JSON schemas into GBNF grammar text, off the event loop that serves
 * every client: node-llama-cpp builds that text in JavaScript, in a time that grows with the
 * schema. Only the native parse of the text stays on the main thread (under a millisecond within
 * the request bounds of `OUTPUT_SCHEMA_LIMITS`).
 *
 * node-llama-cpp 3.21.1 does not export its schema-to-GBNF function
 * (`dist/utils/gbnfJson/getGbnfGrammarForGbnfJsonSchema.js`, which `LlamaJsonSchemaGrammar` calls):
 * the worker imports it by file, and fails loudly at its first request if a later version moved it.
 */
import { isMainThread, parentPort, Worker } from 'node:worker_threads';

interface Request {
  id: number;
  schema: unknown;
}
type Reply = { id: number; grammar: string } | { id: number; error: string };

/** The GBNF grammar text of JSON schemas, built one at a time in a worker thread started on first use. */
export class GrammarWorker {
  #worker: Worker | undefined;
  #next = 0;
  readonly #pending = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void }>();

  /** The grammar text for `schema`; rejects with node-llama-cpp's reason when it cannot become a grammar. */
  text(schema: unknown): Promise<string> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#start().postMessage({ id, schema } satisfies Request);
    });
  }

  /** Stops the thread; builds still pending reject. */
  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    await worker?.terminate();
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(new URL(import.meta.url));
    worker.unref();
    worker.on('message', (reply: Reply) => {
      const waiting = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if ('grammar' in reply) waiting?.resolve(reply.grammar);
      else waiting?.reject(new Error(reply.error));
    });
    const failAll = (err: Error): void => {
      if (this.#worker === worker) this.#worker = undefined;
      for (const { reject } of this.#pending.values()) reject(err);
      this.#pending.clear();
    };
    worker.on('error', failAll);
    worker.on('exit', () => failAll(new Error('the grammar worker stopped')));
    this.#worker = worker;
    return worker;
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  const entry = import.meta.resolve('node-llama-cpp');
  const module = import(new URL('./utils/gbnfJson/getGbnfGrammarForGbnfJsonSchema.js', entry).href) as Promise<{
    getGbnfGrammarForGbnfJsonSchema: (schema: unknown) => string;
  }>;
  port.on('message', ({ id, schema }: Request) => {
    module
      .then(({ getGbnfGrammarForGbnfJsonSchema }) =>
        port.postMessage({ id, grammar: getGbnfGrammarForGbnfJsonSchema(schema) } satisfies Reply),
      )
      .catch((err: unknown) => port.postMessage({ id, error: err instanceof Error ? err.message : String(err) } satisfies Reply));
  });
}
