// Issue 14, section 4: bad models and impossible settings fail fast, and loading can be interrupted.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureBuiltinModel } from '../../src/model/builtin.js';
import { runCli, scratchDir, spawnCli, writeSettings } from '../helpers/server-process.js';
import { patchedCopy } from '../helpers/gguf-patch.js';

const NO_PORTS = ['--http', '0', '--tcp', '0', '--udp', '0', '--ws', '0'];

describe('Bad models and impossible settings (issue 14, section 4)', function () {
  this.timeout(60_000);
  let tiny: string;
  let dir: string;

  before(async () => {
    tiny = await ensureBuiltinModel('tiny');
    dir = scratchDir();
  });

  it('refuses a GGUF whose header claims more tensors than the file holds, naming the file', async () => {
    const bad = patchedCopy(tiny, dir, 'bad-tensors.gguf', 8, 100_000_000n);
    const { code, stderr } = await runCli(['--model', bad, ...NO_PORTS]);
    expect(code).to.equal(1);
    expect(stderr).to.include(bad).and.include('claims 100000000 tensors');
  });

  it('refuses a GGUF whose header claims more metadata entries than the file holds', async () => {
    const bad = patchedCopy(tiny, dir, 'bad-entries.gguf', 16, 100_000_000n);
    const { code, stderr } = await runCli(['--model', bad, ...NO_PORTS]);
    expect(code).to.equal(1);
    expect(stderr).to.include(bad).and.include('100000000 metadata entries');
  });

  it('refuses a FIFO given as the model instead of waiting on it', async () => {
    const fifo = join(dir, 'model.gguf');
    execFileSync('mkfifo', [fifo]);
    const { code, stderr } = await runCli(['--model', fifo, ...NO_PORTS]);
    expect(code).to.equal(1);
    expect(stderr).to.include(fifo).and.include('is a FIFO, not a regular file');
  });

  it('refuses --context 1048576 --parallel 256 at start, with the estimate and the machine memory', async () => {
    const { code, stderr } = await runCli(['--context', '1048576', '--parallel', '256', ...NO_PORTS]);
    expect(code).to.equal(1);
    expect(stderr)
      .to.match(/needs about [\d.]+ GiB of memory/)
      .and.match(/this machine has [\d.]+ GiB/);
    expect(stderr).to.include("75% of the machine's memory");
  });

  it('engine.max_memory overrides the default share', async () => {
    const settings = writeSettings({ engine: { max_memory: 1_000_000 } });
    const { code, stderr } = await runCli(['--settings', settings, ...NO_PORTS]);
    expect(code).to.equal(1);
    expect(stderr).to.include('allowed (setting engine.max_memory)');
  });

  it('exits promptly on SIGTERM while the model loads', async () => {
    const bench = await ensureBuiltinModel('bench');
    const proc = spawnCli(['--model', bench, '--context', '65536', '--parallel', '4', ...NO_PORTS]);
    const exited = new Promise<number | string | null>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal)));
    let stderr = '';
    proc.stderr!.setEncoding('utf8');
    await new Promise<void>((resolve) =>
      proc.stderr!.on('data', (data: string) => {
        stderr += data;
        if (stderr.includes('loading the model')) resolve();
      }),
    );
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    const code = await exited;
    clearTimeout(timer);
    // The signal's default action: nothing was running, so nothing is drained.
    expect(code, stderr).to.equal('SIGTERM');
    expect(stderr).not.to.include('listening for connections');
  });
});
