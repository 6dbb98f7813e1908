// The package as users get it: `npm pack`, `npm i -g` of the tarball into a temporary prefix with a
// temporary HOME, then `rkllm-mcp` started in an empty folder. Its state must land under the HOME's
// XDG folders, and the folder must stay empty; `npx` of the tarball keeps its state there too.
import { expect } from 'chai';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { scratchDir } from '../helpers/server-process.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MAX_PACKED_BYTES = 2 * 1024 * 1024;

interface PackResult {
  filename: string;
  size: number;
  files: Array<{ path: string }>;
}

/** The environment without anything that would point the installed tool at real per-user state. */
function cleanEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (/^(RKLLM_MCP_|XDG_|npm_|NPM_)/i.test(name) || name === 'HOME') continue;
    env[name] = value;
  }
  return { ...env, HOME: home, ...extra };
}

/**
 * A temporary npm cache seeded with this machine's package tarballs, so the install needs the
 * registry only for package metadata: the content files (immutable, content-addressed) are
 * hard-linked, the index is copied, and nothing is written to the real cache.
 */
async function seededCache(dir: string): Promise<string> {
  const cache = join(dir, 'npm-cache');
  mkdirSync(join(cache, '_cacache'), { recursive: true });
  try {
    const real = (await run('npm', ['config', 'get', 'cache'], { cwd: ROOT })).stdout.trim();
    const source = join(real, '_cacache');
    if (existsSync(join(source, 'content-v2'))) {
      await run('cp', ['-al', join(source, 'content-v2'), join(cache, '_cacache')]);
      await run('cp', ['-r', join(source, 'index-v5'), join(cache, '_cacache')]);
    }
  } catch {
    // No seed: everything comes from the registry.
  }
  return cache;
}

describe('Package', function () {
  this.timeout(900_000);

  it('npm pack ships what runs, no tests; installed with npm i -g and started in an empty folder, it keeps its state per user', async () => {
    const tmp = scratchDir();
    const home = join(tmp, 'home');
    const prefix = join(tmp, 'prefix');
    const empty = join(tmp, 'empty');
    for (const dir of [home, prefix, empty]) mkdirSync(dir);

    // `prepare` (tsc) already ran for this test run to exist: pack the compiled tree as it is.
    const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], {
      cwd: ROOT,
      env: cleanEnv(home, { npm_config_logs_dir: join(tmp, 'npm-logs'), npm_config_update_notifier: 'false' }),
      maxBuffer: 64 * 1024 * 1024,
    });
    const [pack] = JSON.parse(packed.stdout) as PackResult[];
    const paths = pack!.files.map((file) => file.path);
    expect(pack!.size, 'packed size').to.be.at.most(MAX_PACKED_BYTES);
    for (const path of [
      'dist/src/cli.js',
      'dist/src/server.js',
      'dist/src/client/index.d.ts',
      'public/chat/index.html',
      'public/playground/index.html',
      'public/vendor/purify.min.js',
      'corpus/alice.txt',
      'README.md',
      'LICENSE',
      'package.json',
    ])
      expect(paths, path).to.include(path);
    expect(paths.filter((path) => /(^|\/)test\/|\.test\.|^src\/|^bench\/|^scripts\/|\.map$/.test(path))).to.deep.equal([]);

    const cache = await seededCache(tmp);
    const npmEnv = cleanEnv(home, {
      npm_config_cache: cache,
      npm_config_logs_dir: join(tmp, 'npm-logs'),
      npm_config_update_notifier: 'false',
    });
    await run(
      'npm',
      ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', join(tmp, pack!.filename)],
      { cwd: tmp, env: npmEnv, maxBuffer: 64 * 1024 * 1024 },
    );
    const bin = join(prefix, 'bin', 'rkllm-mcp');
    expect(existsSync(bin), bin).to.equal(true);

    const help = await run(bin, ['--help'], { cwd: empty, env: cleanEnv(home) });
    expect(help.stdout).to.include(`settings file:  ${join(home, '.config', 'rkllm-mcp', 'settings.json')}`);
    expect(help.stdout).to.include(`built-in model: ${join(home, '.local', 'share', 'rkllm-mcp', 'models')}`);

    const proc = spawn(bin, ['--http', '0', '--no-tcp', '--no-udp', '--no-ws'], {
      cwd: empty,
      env: cleanEnv(home),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise<number | string | null>((resolve) => proc.once('close', (code, signal) => resolve(code ?? signal)));
    let stderr = '';
    try {
      const http = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`not ready:\n${stderr}`)), 300_000);
        proc.stderr.setEncoding('utf8');
        proc.stderr.on('data', (data: string) => {
          stderr += data;
          const line = stderr.split('\n').find((l) => l.includes('listening for connections'));
          if (!line) return;
          clearTimeout(timer);
          resolve((JSON.parse(line) as { addresses: { http: string } }).addresses.http);
        });
        proc.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`exited with ${code} before it was ready:\n${stderr}`));
        });
      });
      const health = await fetch(`http://${http}/health`);
      expect(health.status, await health.text()).to.equal(200);
      const page = await fetch(`http://${http}/`, { headers: { accept: 'text/html' } });
      expect(page.status, 'the chat page, from public/').to.equal(200);
      const reply = await fetch(`http://${http}/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'rkllm_run', params: { prompt_input: 'Alice was', max_new_tokens: 4 } }),
      });
      expect(reply.status).to.equal(200);
      const answer = (await reply.json()) as { result?: { text?: unknown }; error?: unknown };
      expect(answer.result?.text, JSON.stringify(answer)).to.be.a('string');
    } finally {
      proc.kill('SIGTERM');
    }
    expect(await exited, stderr).to.equal(0);

    // npx, as MCP hosts run it: the package lands in npm's cache (under node_modules), not a checkout.
    const npx = await run('npm', ['exec', '--yes', `--package=${join(tmp, pack!.filename)}`, '--', 'rkllm-mcp', '--print-settings'], {
      cwd: empty,
      env: npmEnv,
      maxBuffer: 64 * 1024 * 1024,
    });
    const data = join(home, '.local', 'share', 'rkllm-mcp');
    expect((JSON.parse(npx.stdout) as { folders: { models: string } }).folders.models).to.equal(join(data, 'models'));
    expect(npx.stderr).to.include(`built-in model: ${join(data, 'models')}`);

    expect(readdirSync(empty), 'the working directory stays empty').to.deep.equal([]);
    const settingsFile = join(home, '.config', 'rkllm-mcp', 'settings.json');
    expect(existsSync(settingsFile), settingsFile).to.equal(true);
    expect(stderr).to.include(`"settings":${JSON.stringify(settingsFile)},"from":"user"`);
    const models = readdirSync(join(home, '.local', 'share', 'rkllm-mcp', 'models'));
    expect(models.filter((name) => /^rkllm-tiny-[0-9a-f]+\.gguf$/.test(name))).to.have.lengthOf(1);
  });
});
