import { createInterface } from 'node:readline';
import { RkllmClient, type RunParams } from '../client/index.js';
import { CLIENT_FLAGS_HELP, parseClientFlags, type CommandContext } from './options.js';

const HELP = `Usage: rkllm-mcp chat [flags]

A conversation with a running server: each line you type is one turn, and the reply streams back
as it is generated. The server keeps the conversation (keep_history). Ctrl-C stops the current
reply; Ctrl-C again, or at the prompt, or the end of input (Ctrl-D) exits. On pipes, each input
line is one turn and the replies go to stdout, one after the other, each ending with a newline.

${CLIENT_FLAGS_HELP}`;

/** One reply being streamed, and how to stop it. */
interface Reply {
  readonly stop: AbortController;
  streamId?: string;
}

/** `rkllm-mcp chat`: resolves to the exit code (0 on end of input or a second Ctrl-C). */
export async function chatCommand(argv: string[], context: CommandContext): Promise<number> {
  const flags = parseClientFlags(argv, context, HELP);
  if (!flags) return 0;
  const { stdin, stdout, stderr } = context;
  const tty = stdin.isTTY === true;
  await using client = new RkllmClient({ url: flags.url, ...(context.apiKey === undefined ? {} : { apiKey: context.apiKey }) });
  // A fresh conversation: what an earlier client left in the kept history is not ours.
  await client.call('rkllm_clear_kv_cache', { keep_system_prompt: 1 });
  const lines = createInterface({ input: stdin, ...(tty ? { output: stdout, terminal: true } : { terminal: false }) });
  let reply: Reply | undefined;
  const interrupt = (): void => {
    if (reply && !reply.stop.signal.aborted) {
      reply.stop.abort();
      if (reply.streamId) client.abort(reply.streamId).catch(() => {});
      return;
    }
    reply?.stop.abort();
    lines.close();
  };
  lines.on('SIGINT', interrupt);
  const unsubscribe = context.onInterrupt(interrupt);
  try {
    if (tty) stderr.write(`Connected to ${flags.url}. Ctrl-C stops a reply, Ctrl-C twice or Ctrl-D exits.\n`);
    lines.setPrompt('> ');
    if (tty) lines.prompt();
    for await (const line of lines) {
      if (line.trim() !== '') {
        reply = { stop: new AbortController() };
        await streamReply(client, { ...flags.sampling, prompt_input: line, keep_history: 1 }, reply, context);
        reply = undefined;
      }
      if (tty) lines.prompt();
    }
  } finally {
    unsubscribe();
    lines.close();
  }
  return 0;
}

/** Streams one reply to stdout until it ends or is stopped; a stopped reply ends with " [stopped]" on a TTY. */
async function streamReply(client: RkllmClient, params: RunParams, reply: Reply, context: CommandContext): Promise<void> {
  const { stdout, stderr } = context;
  for await (const chunk of client.runStream(params)) {
    reply.streamId = chunk.stream_id;
    if (reply.stop.signal.aborted) break;
    stdout.write(chunk.delta);
    if (chunk.error) stderr.write(`\n[the server ended the reply: ${chunk.error.message}]`);
  }
  if (reply.stop.signal.aborted && context.stdin.isTTY === true) stderr.write(' [stopped]');
  stdout.write('\n');
}
