// `rkllm-mcp chat` and `rkllm-mcp run`, spawned as child processes, against a real server in this process.
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { spawnCli } from '../helpers/server-process.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const GREEDY_FLAGS = ['--top-k', '1', '--temperature', '0'];
const GREEDY = { top_k: 1, temperature: 0 };

/** A spawned command: its output so far, and waits on it. */
function watch(proc: ChildProcess): {
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
  output: (done: (stdout: string) => boolean) => Promise<void>;
} {
  let stdout = '';
  let stderr = '';
  const waiters = new Set<() => void>();
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    for (const w of [...waiters]) w();
  });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)));
  const output = (done: (stdout: string) => boolean): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`stdout not as awaited within 30 s: ${stdout}\n${stderr}`)), 30_000);
      const check = (): void => {
        if (!done(stdout)) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      };
      waiters.add(check);
      check();
    });
  return { stdout: () => stdout, stderr: () => stderr, exited, output };
}

describe('rkllm-mcp chat and run', function () {
  this.timeout(120_000);
  let server: TestServer;

  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.close();
  });

  /** Tokens the KV cache holds in its fullest slot: what the kept history holds. */
  async function kvTokens(): Promise<number> {
    const { cache_sizes } = await server.http.result<{ cache_sizes: number[] }>('rkllm_get_kv_cache_size', {});
    return Math.max(...cache_sizes);
  }

  /** What a conversation of greedy turns answers, through rkllm_run with keep_history. */
  async function conversation(prompts: string[], maxNewTokens: number): Promise<string[]> {
    await server.http.result('rkllm_clear_kv_cache', { keep_system_prompt: 1 });
    const replies: string[] = [];
    for (const prompt of prompts) {
      const { text } = await server.http.result('rkllm_run', {
        prompt_input: prompt,
        keep_history: 1,
        max_new_tokens: maxNewTokens,
        ...GREEDY,
      });
      replies.push(text as string);
    }
    return replies;
  }

  it('chat on pipes: two input lines are two turns of one conversation, each reply on stdout, exit 0 at end of input', async () => {
    const prompts = ['Alice was beginning', 'The Queen said'];
    await conversation(prompts.slice(1), 30);
    const oneTurn = await kvTokens();
    const expected = await conversation(prompts, 30);
    const twoTurns = await kvTokens();
    expect(twoTurns, 'the history holds both turns').to.be.greaterThan(oneTurn);
    const child = spawnCli(['chat', '--url', server.url, '--max-new-tokens', '30', ...GREEDY_FLAGS]);
    const chat = watch(child);
    child.stdin!.end(prompts.map((p) => `${p}\n`).join(''));
    expect(await chat.exited, chat.stderr()).to.equal(0);
    expect(chat.stdout()).to.equal(`${expected[0]}\n${expected[1]}\n`);
    expect(await kvTokens(), 'chat kept the conversation (keep_history)').to.equal(twoTurns);
  });

  for (const scheme of ['http', 'ws']) {
    it(`run prints the same text as rkllm_run (over ${scheme})`, async () => {
      const params = { prompt_input: 'Alice was beginning', max_new_tokens: 60, ...GREEDY };
      const { text } = await server.http.result('rkllm_run', params);
      const url = scheme === 'http' ? server.url : `ws://${server.addresses.ws}`;
      const run = watch(spawnCli(['run', '--url', url, '--max-new-tokens', '60', ...GREEDY_FLAGS, params.prompt_input]));
      expect(await run.exited, run.stderr()).to.equal(0);
      expect(run.stdout()).to.equal(`${text}\n`);
    });
  }

  it('run connects to the HTTP port of the settings when --url is not given', async () => {
    const port = server.addresses.http!.split(':')[1]!;
    const run = watch(spawnCli(['run', '--max-new-tokens', '5', ...GREEDY_FLAGS, 'Once'], { env: { RKLLM_MCP_HTTP_PORT: port } }));
    expect(await run.exited, run.stderr()).to.equal(0);
    expect(run.stdout().length).to.be.greaterThan(1);
  });

  it('SIGINT during run aborts the run on the server and exits 130', async () => {
    const child = spawnCli(['run', '--url', server.url, '--max-new-tokens', '2000', ...GREEDY_FLAGS, 'Down, down, down']);
    const run = watch(child);
    await run.output((out) => out.length > 0);
    child.kill('SIGINT');
    expect(await run.exited, run.stderr()).to.equal(130);
    await server.streams.until(() => server.streams.live === 0, 'the run to be aborted');
    expect(await server.http.result('rkllm_is_running', {})).to.include({ running: false, active: 0 });
  });

  it('a usage error exits 2', async () => {
    const run = watch(spawnCli(['run', '--top-k', 'many', 'x']));
    expect(await run.exited).to.equal(2);
    expect(run.stderr()).to.match(/--top-k expects a number/);
  });

  it('SIGINT during a reply stops only that reply; the next line is answered; end of input exits 0', async () => {
    const [full] = await conversation(['Down, down, down'], 500);
    const child = spawnCli(['chat', '--url', server.url, '--max-new-tokens', '500', ...GREEDY_FLAGS]);
    const chat = watch(child);
    child.stdin!.write('Down, down, down\n');
    await chat.output((out) => out.length > 0);
    child.kill('SIGINT');
    await chat.output((out) => out.includes('\n'));
    await server.streams.until(() => server.streams.live === 0, 'the first reply to stop');
    expect(await server.http.result('rkllm_is_running', {})).to.include({ running: false, active: 0 });
    child.stdin!.end('The King\n');
    expect(await chat.exited, chat.stderr()).to.equal(0);
    const out = chat.stdout();
    let k = 0;
    while (k < out.length && out[k] === full![k]) k++;
    expect(k, 'the first reply was cut short').to.be.lessThan(full!.length);
    expect(out[k], 'the first reply ends with a newline').to.equal('\n');
    expect(out.slice(k + 1).length, 'the second line got a reply').to.be.greaterThan(1);
    expect(out.endsWith('\n')).to.equal(true);
  });

  it('a second SIGINT exits 0, with the input still open', async () => {
    const child = spawnCli(['chat', '--url', server.url, '--max-new-tokens', '500', ...GREEDY_FLAGS]);
    const chat = watch(child);
    child.stdin!.write('Down, down, down\n');
    await chat.output((out) => out.length > 0);
    child.kill('SIGINT');
    // Two signals sent at once may arrive as one: the second goes once the first has stopped the reply.
    await chat.output((out) => out.includes('\n'));
    child.kill('SIGINT');
    expect(await chat.exited, chat.stderr()).to.equal(0);
  });
});
