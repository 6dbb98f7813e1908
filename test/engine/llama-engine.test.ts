import { LlamaEngine } from '../../src/engine/llama/engine.js';
import { createDefaultParam } from '../../src/engine/types.js';
import { ensureBuiltinModel } from '../../src/gguf/builtin.js';
import { engineSuite } from './engine-suite.js';

engineSuite('llama.cpp', async () => {
  return LlamaEngine.load(
    { threads: 1, slots: 2 },
    { ...createDefaultParam(), model_path: await ensureBuiltinModel('tiny'), max_context_len: 1024 },
  );
});
