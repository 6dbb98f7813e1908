// Settings through the real command line: the per-user file written on first start, precedence, validation, --print-settings.
import { expect } from 'chai';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultSettings } from '../../src/settings.js';
import { runCli, scratchDir, startServer, writeSettings } from '../helpers/server-process.js';

async function printed(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): Promise<any> {
  const { code, stdout, stderr } = await runCli(['--print-settings', ...args], options);
  expect(code, stderr).to.equal(0);
  return JSON.parse(stdout);
}

describe('Settings', function () {
  this.timeout(60_000);

  it('first start writes the per-user settings file with every default, and nothing into the working directory', async () => {
    const cwd = scratchDir();
    const config = scratchDir();
    const server = await startServer({ cwd, settings: null, env: { XDG_CONFIG_HOME: config } });
    try {
      const path = join(config, 'rkllm-mcp', 'settings.json');
      expect(JSON.parse(readFileSync(path, 'utf8'))).to.deep.equal(defaultSettings());
      expect(server.stderr()).to.include('wrote the settings file with every default');
      expect(server.stderr()).to.include(`"settings":${JSON.stringify(path)},"from":"user"`);
      expect(readdirSync(cwd)).to.deep.equal([]);
    } finally {
      await server.stop();
    }
  });

  it('a settings.json in the working directory is read when it exists, and said so', async () => {
    const cwd = scratchDir();
    writeFileSync(join(cwd, 'settings.json'), JSON.stringify({ streams: { max_buffers: 5 } }));
    const { code, stdout, stderr } = await runCli(['--print-settings'], { cwd });
    expect(code, stderr).to.equal(0);
    const merged = JSON.parse(stdout);
    expect(merged.streams.max_buffers).to.equal(5);
    expect(stderr).to.include(`settings file:  ${join(cwd, 'settings.json')} (settings.json in the working directory)`);
    expect(merged.folders.prompt_caches).to.equal(join(cwd, 'prompt-caches'));
  });

  it('--settings FILE is written there when missing, and left as it is when present', async () => {
    const path = join(scratchDir(), 'mine.json');
    const server = await startServer({ args: ['--settings', path] });
    expect(server.stderr()).to.include('wrote the settings file with every default');
    await server.stop();
    expect(JSON.parse(readFileSync(path, 'utf8'))).to.deep.equal(defaultSettings());
    writeFileSync(path, JSON.stringify({ streams: { max_buffers: 7 } }));
    expect((await printed(['--settings', path])).streams.max_buffers).to.equal(7);
    expect(JSON.parse(readFileSync(path, 'utf8'))).to.deep.equal({ streams: { max_buffers: 7 } });
  });

  it('precedence: defaults < file < environment < flags', async () => {
    const file = writeSettings({ http: { port: 1111 }, tcp: { port: 2222 }, udp: { port: 3333 }, streams: { max_buffers: 9 } });
    const env = { RKLLM_MCP_TCP_PORT: '4444', RKLLM_MCP_UDP_PORT: '5555' };
    const merged = await printed(['--settings', file, '--udp', '6666'], { env });
    expect(merged.http.port, 'file over default').to.equal(1111);
    expect(merged.tcp.port, 'environment over file').to.equal(4444);
    expect(merged.udp.port, 'flag over environment').to.equal(6666);
    expect(merged.streams.max_buffers).to.equal(9);
    expect(merged.ws.port, 'default').to.equal(8083);
  });

  it('--print-settings prints the merged result, redacts API keys, and writes no file', async () => {
    const cwd = scratchDir();
    const merged = await printed([], { cwd, env: { RKLLM_MCP_AUTH_API_KEYS: 'print-me-not-0123456789' } });
    expect(merged).to.deep.include({ host: '127.0.0.1', log_level: 'info' });
    expect(merged.auth.api_keys).to.have.lengthOf(1);
    expect(JSON.stringify(merged)).not.to.include('print-me-not');
    expect(existsSync(join(cwd, 'settings.json'))).to.equal(false);
  });

  const rejected: Array<[string, { args?: string[]; env?: Record<string, string>; file?: object }, string]> = [
    ['a bad value in the file', { file: { limits: { max_streams: -1 } } }, 'setting "limits.max_streams" must be >= 0'],
    ['an unknown setting in the file', { file: { auth: { keys: [] } } }, 'setting "auth.keys" is not a known setting'],
    [
      'a key too short to be safe',
      { file: { auth: { api_keys: ['short'] } } },
      'setting "auth.api_keys.0" must NOT have fewer than 16 characters',
    ],
    [
      'a bad value in the environment',
      { env: { RKLLM_MCP_SHUTDOWN_DRAIN_TIMEOUT_S: 'soon' } },
      'RKLLM_MCP_SHUTDOWN_DRAIN_TIMEOUT_S (setting "shutdown.drain_timeout_s") must be a number',
    ],
    [
      'an out-of-range value in the environment',
      { env: { RKLLM_MCP_LIMITS_REQUEST_BURST: '0' } },
      'environment: setting "limits.request_burst" must be >= 1',
    ],
    ['an unknown variable', { env: { RKLLM_MCP_HTTP_PROT: '1' } }, 'RKLLM_MCP_HTTP_PROT is not a known setting'],
    ['a bad value among the flags', { args: ['--log-level', 'loud'] }, 'command line: setting "log_level" must be one of'],
  ];
  for (const [what, given, message] of rejected) {
    it(`rejects ${what} with exit code 2, naming the key and what it expects`, async () => {
      const args = [...(given.args ?? []), ...(given.file ? ['--settings', writeSettings(given.file as Record<string, unknown>)] : [])];
      const { code, stderr } = await runCli(args, given.env ? { env: given.env } : {});
      expect(code).to.equal(2);
      expect(stderr).to.include(message);
    });
  }
});
