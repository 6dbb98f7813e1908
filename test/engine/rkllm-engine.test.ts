import { LAYOUT_VERSIONS } from '../../src/engine/rkllm/abi.js';
import { RkllmEngine } from '../../src/engine/rkllm/rkllm-engine.js';
import { createDefaultParam } from '../../src/engine/types.js';
import { TWIN_MODELS, buildTwin } from '../helpers/rkllm-twin.js';
import { engineSuite, type SuitePrompts } from './engine-suite.js';

/** The twin's generation is steered by directives in the prompt (see rkllm_twin.c). */
const TWIN_PROMPTS: SuitePrompts = {
  long: 'Tell me a long story',
  endsWithEos: 'Say something short [eos:12]',
  multiByte: 'Say it in French [utf8]',
};

// The same contract with 3 runtime instances (engine.parallel 3): runs spread over them.
for (const [layout, instances] of [...LAYOUT_VERSIONS.map((l) => [l, 1] as const), ['1.3', 3] as const]) {
  engineSuite(
    `rkllm ${layout} on the ABI twin${instances > 1 ? `, ${instances} instances` : ''}`,
    async () => {
      // Greedy at init: runtime 1.2 samples with the init values only, and the suite's runs ask for greedy.
      return RkllmEngine.load(
        { library: await buildTwin(layout), layout, instances },
        {
          ...createDefaultParam(),
          model_path: TWIN_MODELS.story,
          max_context_len: 1024,
          top_k: 1,
          temperature: 0,
          repeat_penalty: 1,
        },
      );
    },
    { prompts: TWIN_PROMPTS, validatesContext: false },
  );
}
