import type { GetPromptResult, McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';

/** Values `completion/complete` offers for the prompts' arguments, by argument name. */
export const ARGUMENT_VALUES: Readonly<Record<string, readonly string[]>> = {
  language: 'English French German Spanish Italian Portuguese Dutch Polish Russian Ukrainian Turkish Arabic Hindi Chinese'
    .split(' ')
    .concat(['Japanese', 'Korean', 'Vietnamese', 'Indonesian']),
  labels: ['positive,negative,neutral', 'spam,not spam', 'yes,no', 'bug,feature,question', 'urgent,normal,low'],
  length: ['one sentence', 'three bullet points', 'one paragraph'],
};

const text = z.string().describe('The text to work on');
const model = z.string().optional().describe("The on-device model to run it with (the tools' `model`), by name; absent: the default model");

/** A prompt: its description, its arguments and the instruction it renders from them. */
interface PromptSpec {
  title: string;
  description: string;
  args: Record<string, z.ZodType<string | undefined>>;
  render: (a: Record<string, string | undefined>) => string;
}

/** The prompts: instructions for the on-device model that a host sends to the `chat` tool (or its own model). */
export const PROMPTS: Readonly<Record<string, PromptSpec>> = {
  summarize: {
    title: 'Summarize',
    description: 'Summarizes a text, privately, on the device',
    args: { text, length: z.string().optional().describe('How long: "one sentence", "three bullet points", ...'), model },
    render: (a) => `Summarize the following text in ${a.length ?? 'a few sentences'}. Answer with the summary only.\n\n${a.text}`,
  },
  translate: {
    title: 'Translate',
    description: 'Translates a text into another language',
    args: { text, language: z.string().describe('The language to translate into, e.g. "French"'), model },
    render: (a) => `Translate the following text into ${a.language}. Answer with the translation only.\n\n${a.text}`,
  },
  classify: {
    title: 'Classify',
    description: 'Puts a text into one of the given labels',
    args: { text, labels: z.string().describe('The labels, comma-separated, e.g. "positive,negative,neutral"'), model },
    render: (a) => `Classify the following text as one of: ${a.labels}. Answer with the label only.\n\n${a.text}`,
  },
  'extract-json': {
    title: 'Extract JSON',
    description: 'Extracts fields from a text as one JSON object',
    args: { text, fields: z.string().describe('The fields to extract, comma-separated, e.g. "name,date,amount"'), model },
    render: (a) =>
      `Extract these fields from the following text: ${a.fields}. Answer with one JSON object whose keys are the fields ` +
      `(null for a field the text does not give), and nothing else.\n\n${a.text}`,
  },
};

/** Registers the prompts on one session's server: `prompts/get` renders one user message. */
export function registerPrompts(server: McpServer): void {
  for (const [name, spec] of Object.entries(PROMPTS)) {
    const { title, description, args } = spec;
    server.registerPrompt(
      name,
      { title, description, argsSchema: z.object(args) },
      (a: Record<string, string | undefined>): GetPromptResult => ({
        description: a.model ? `${description}; run it with the chat tool, model "${a.model}"` : description,
        messages: [{ role: 'user', content: { type: 'text', text: spec.render(a) } }],
      }),
    );
  }
}
