import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';

/** Sampling that makes the built-in model's text reproducible. */
export const greedy = { top_k: 1, temperature: 0, repeat_penalty: 1 };

/** Ten prompts for running many streams at once, each with its own text. */
export const PROMPTS = [
  TINY_MODEL_PROMPTS.long,
  'The Queen said',
  'Four score and seven years ago',
  'Once upon a time',
  'The fox',
  'She went down the hole',
  'It was the best of',
  'A crow, having',
  'The King',
  'Down, down, down',
];
