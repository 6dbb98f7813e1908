// rkllm-mcp doctor on fake board trees (--root): a healthy RK3588 with the runtime's ABI twin, an
// old driver, powersave governors, a missing library, too little memory, a machine that is no board.
import { expect } from 'chai';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { driverCheck, governorChecks, type Finding } from '../../src/doctor/checks.js';
import { doctorCommand, preflight, render } from '../../src/doctor/command.js';
import { resolveSettings } from '../../src/settings-sources.js';
import { buildTwin } from '../helpers/rkllm-twin.js';
import { buildRknnTwin } from '../helpers/rknn-twin.js';

const GB = 1024 ** 3;

interface Board {
  compatible?: string | null;
  driver?: string | null;
  governor?: string;
  /** The runtime library to place at /usr/lib/librkllmrt.so; none when null. */
  library?: string | null;
  memAvailableKb?: number;
  modelBytes?: number;
}

/** Writes a fake board tree; returns its root. The model is a sparse file at /models/model.rkllm. */
function board(spec: Board, library: string | null): string {
  const root = mkdtempSync(join(tmpdir(), 'rkllm-doctor-'));
  const file = (path: string, text: string): void => {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  };
  const { compatible = 'radxa,rock-5b\0rockchip,rk3588\0', driver = 'RKNPU driver: v0.9.8\n', governor = 'performance' } = spec;
  if (compatible !== null) file('/proc/device-tree/compatible', compatible);
  if (driver !== null) file('/sys/kernel/debug/rknpu/version', driver);
  file(
    '/proc/meminfo',
    `MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:   ${spec.memAvailableKb ?? 12_000_000} kB\n`,
  );
  for (const node of ['/sys/class/devfreq/dmc', '/sys/class/devfreq/fdab0000.npu']) file(`${node}/governor`, `${governor}\n`);
  for (const policy of [0, 4, 6]) file(`/sys/devices/system/cpu/cpufreq/policy${policy}/scaling_governor`, `${governor}\n`);
  if (library !== null) {
    mkdirSync(join(root, 'usr/lib'), { recursive: true });
    copyFileSync(library, join(root, 'usr/lib/librkllmrt.so'));
  }
  file('/models/model.rkllm', '');
  truncateSync(join(root, 'models/model.rkllm'), spec.modelBytes ?? 2 * GB);
  return root;
}

/** Runs the command in this process; the settings file and environment are left out. */
async function doctor(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' };
  const io = { stdout: { write: (t: string) => (out.stdout += t) }, stderr: { write: (t: string) => (out.stderr += t) }, env: {} };
  const code = await doctorCommand([...argv, '--settings', '/nonexistent/settings.json'], io);
  return { code, ...out };
}

const line = (stdout: string, check: string): string => stdout.split('\n').find((l) => l.includes(` ${check}: `)) ?? '';

describe('rkllm-mcp doctor', function () {
  this.timeout(60_000);
  let twin: string;
  const roots: string[] = [];
  const tree = (spec: Board = {}): string => {
    const root = board(spec, spec.library === null ? null : (spec.library ?? twin));
    roots.push(root);
    return root;
  };
  const model = ['--model', '/models/model.rkllm'];

  before(async () => {
    twin = await buildTwin('1.2');
  });
  after(() => roots.forEach((root) => rmSync(root, { recursive: true, force: true })));

  it('a healthy RK3588 with the runtime library: every check ok, exit 0', async () => {
    const { code, stdout } = await doctor('--root', tree(), ...model);
    expect(code, stdout).to.equal(0);
    const lines = stdout.trim().split('\n');
    expect(
      lines.slice(0, -1).every((l) => l.startsWith('OK ')),
      stdout,
    ).to.equal(true);
    expect(lines.at(-1)).to.equal('0 failed, 0 warnings, 8 ok');
    expect(line(stdout, 'chip')).to.include('RK3588');
    expect(line(stdout, 'npu driver')).to.include('0.9.8');
    expect(line(stdout, 'runtime library')).to.include('all 15 functions exported').and.include('1.2.x struct layout');
    expect(line(stdout, 'memory')).to.include('2.0 GB model x 1 instance');
  });

  it('... and the 1.3 layout, as the library tells it', async () => {
    const { code, stdout } = await doctor('--root', tree({ library: await buildTwin('1.3') }), ...model);
    expect(code).to.equal(0);
    expect(line(stdout, 'runtime library')).to.match(
      /^OK .*all 15 functions exported, runtime 1\.3\.x struct layout \(told by its default parameters\)/,
    );
  });

  it('an old NPU driver (0.9.6) fails, naming 0.9.8 and the kernel update', async () => {
    const { code, stdout } = await doctor('--root', tree({ driver: 'RKNPU driver: v0.9.6\n' }), ...model);
    expect(code).to.equal(1);
    expect(line(stdout, 'npu driver')).to.match(/^FAIL {2}npu driver: 0\.9\.6 .*Needed: rknpu 0\.9\.8 or later\. Fix: .*kernel/);
  });

  it('a driver version that needs root to read is said so (EACCES)', () => {
    const denied = driverCheck('/', () => ({ code: 'EACCES' }));
    expect(denied).to.include({ status: 'warn' });
    expect(denied.found).to.include('cannot be read without root (EACCES)');
    expect(denied.fix).to.include('sudo');
  });

  it('powersave governors warn, with what they cost and how to set them, and fail nothing', async () => {
    const { code, stdout } = await doctor('--root', tree({ governor: 'powersave' }), ...model);
    expect(code).to.equal(0);
    for (const check of ['memory governor (DMC)', 'npu governor', 'cpu governors']) {
      expect(line(stdout, check), check).to.match(/^WARN .*powersave.*Needed: performance\. Fix: .*echo performance \| sudo tee /);
    }
    expect(line(stdout, 'memory governor (DMC)')).to.include('halve tokens/s').and.include('/sys/class/devfreq/dmc/governor');
    expect(line(stdout, 'cpu governors')).to.include('policy0 powersave, policy4 powersave, policy6 powersave');
  });

  it('userspace pinned at the highest frequency counts as performance; a missing node warns', () => {
    const root = tree({ governor: 'userspace' });
    writeFileSync(join(root, 'sys/class/devfreq/fdab0000.npu/available_frequencies'), '300000000 600000000 1000000000\n');
    writeFileSync(join(root, 'sys/class/devfreq/fdab0000.npu/cur_freq'), '1000000000\n');
    rmSync(join(root, 'sys/class/devfreq/dmc'), { recursive: true });
    const [dmc, npu, cpu] = governorChecks(root);
    expect(dmc).to.include({ status: 'warn', found: 'no governor at /sys/class/devfreq/dmc' });
    expect(npu).to.include({ status: 'ok', found: 'fdab0000.npu userspace at the highest frequency' });
    expect(cpu).to.include({ status: 'warn' });
  });

  it('a runtime library that is a directory fails without throwing', async () => {
    const root = tree({ library: null });
    mkdirSync(join(root, 'usr/lib/librkllmrt.so'), { recursive: true });
    const { code, stdout } = await doctor('--root', root, ...model);
    expect(code).to.equal(1);
    expect(line(stdout, 'runtime library')).to.match(/^FAIL .*Cannot load the RKLLM runtime library/);
  });

  it('a library built for another architecture (a board image on a PC) is reported, not loaded', async function () {
    if (process.arch === 'arm64') this.skip();
    const root = tree({ library: null });
    const elf = Buffer.alloc(64);
    elf.write('\x7fELF', 'latin1');
    elf.writeUInt16LE(183, 18); // EM_AARCH64
    mkdirSync(join(root, 'usr/lib'), { recursive: true });
    writeFileSync(join(root, 'usr/lib/librkllmrt.so'), elf);
    const { stdout } = await doctor('--root', root, ...model);
    expect(line(stdout, 'runtime library')).to.match(
      /^WARN .*built for arm64, cannot be loaded on this .* machine.*run rkllm-mcp doctor on the board/,
    );
  });

  it('a missing runtime library fails', async () => {
    const { code, stdout } = await doctor('--root', tree({ library: null }), ...model);
    expect(code).to.equal(1);
    expect(line(stdout, 'runtime library')).to.match(/^FAIL .*librkllmrt\.so not found under .*Fix: install librkllmrt\.so/);
  });

  it('a library that lacks a function fails, naming it', async () => {
    const root = tree({ library: await buildTwin('1.2', 'missing-symbol') });
    const { code, stdout } = await doctor('--root', root, ...model);
    expect(code).to.equal(1);
    expect(line(stdout, 'runtime library')).to.match(/^FAIL .*does not export rkllm_set_function_tools/);
  });

  it('a model with a vision encoder: the RKNN runtime is loaded (8 functions) and the encoder file checked, paired or given', async () => {
    const root = tree();
    mkdirSync(join(root, 'opt'));
    copyFileSync(await buildRknnTwin(), join(root, 'usr/lib/librknnrt.so'));
    writeFileSync(join(root, 'models/model.vision.rknn'), 'RKNN-TWIN\n');
    const paired = await doctor('--root', root, ...model);
    expect(paired.code, paired.stdout).to.equal(0);
    expect(line(paired.stdout, 'rknn library')).to.match(/^OK .*librknnrt\.so: loaded, all 8 functions exported/);
    expect(line(paired.stdout, 'vision encoder')).to.match(/^OK .*models\/model\.vision\.rknn/);
    const missing = await doctor('--root', root, ...model, '--vision-encoder', '/models/none.rknn', '--rknn-lib', '/opt/librknnrt.so');
    expect(missing.code).to.equal(1);
    expect(line(missing.stdout, 'vision encoder')).to.match(/^FAIL .*none\.rknn does not exist.*--vision-encoder/);
    expect(line(missing.stdout, 'rknn library')).to.match(/^FAIL .*librknnrt\.so not found under .*Fix: install librknnrt\.so/);
    const notRknn = await doctor('--root', root, ...model, '--rknn-lib', '/usr/lib/librkllmrt.so');
    expect(line(notRknn.stdout, 'rknn library')).to.match(/^FAIL .*lacks rknn_init.*it is not an RKNN runtime/);
  });

  it('a model without a vision encoder gets no RKNN lines', async () => {
    const { stdout } = await doctor('--root', tree(), ...model);
    expect(stdout).to.not.include('rknn library').and.not.include('vision encoder');
  });

  it('too little memory for the model times the instances fails, saying how many fit', async () => {
    const root = tree({ modelBytes: 3 * GB, memAvailableKb: 4 * 1024 * 1024 });
    const one = await doctor('--root', root, ...model);
    expect(line(one.stdout, 'memory')).to.match(/^OK /);
    const { code, stdout } = await doctor('--root', root, ...model, '--parallel', '2', '--context', '4096');
    expect(code).to.equal(1);
    expect(line(stdout, 'memory')).to.match(/^FAIL .*3\.0 GB model x 2 instances = 6\.0 GB, 4\.0 GB available; context 4096 tokens/);
    expect(line(stdout, 'memory')).to.include('run at most 1 instance (--parallel 1)');
  });

  it('a model that does not exist fails', async () => {
    const { code, stdout } = await doctor('--root', tree(), '--model', '/models/missing.rkllm');
    expect(code).to.equal(1);
    expect(line(stdout, 'model')).to.match(/^FAIL .*missing\.rkllm does not exist/);
  });

  it('RK3566 fails plainly; a machine that is no Rockchip board says so and checks what still applies', async () => {
    const rk3566 = await doctor('--root', tree({ compatible: 'rockchip,rk3566-orangepi-3b\0rockchip,rk3566\0' }), ...model);
    expect(line(rk3566.stdout, 'chip')).to.match(/^FAIL .*RK3566.*Your platform is lite/);
    const { code, stdout } = await doctor('--root', tree({ compatible: null, driver: null }), ...model);
    expect(code).to.equal(0);
    expect(line(stdout, 'chip')).to.match(/^WARN .*not a Rockchip board/);
    expect(stdout).not.to.include('npu driver').and.not.to.include('governor');
    expect(line(stdout, 'runtime library')).to.match(/^OK /);
    expect(line(stdout, 'memory')).to.match(/^OK /);
  });

  it('--json gives the same findings as the text', async () => {
    const root = tree({ driver: 'RKNPU driver: v0.9.6\n', governor: 'ondemand' });
    const text = await doctor('--root', root, ...model);
    const json = await doctor('--root', root, ...model, '--json');
    expect(json.code).to.equal(text.code).and.equal(1);
    const { findings } = JSON.parse(json.stdout) as { findings: Finding[] };
    expect(findings.map((f) => f.status)).to.include.members(['ok', 'warn', 'fail']);
    expect(`${render(findings)}\n`).to.equal(text.stdout);
  });

  it('a --root that does not exist is a usage error (exit 2); so is a bad value', async () => {
    const missing = await doctor('--root', '/nonexistent/board');
    expect(missing).to.include({ code: 2, stdout: '' });
    expect(missing.stderr).to.include('--root /nonexistent/board does not exist');
    const parallel = await doctor('--root', tree(), '--parallel', '0');
    expect(parallel.code).to.equal(2);
    expect(parallel.stderr).to.include('--parallel expects an integer from 1 to 256, got "0"');
  });

  it('the server start runs the same checks: warnings logged, failures thrown before the runtime', async () => {
    const settings = (library: string) =>
      resolveSettings([{ source: 'test', values: { engine: { kind: 'rkllm', model_path: '/models/model.rkllm', rkllm: { library } } } }]);
    const warnings: string[] = [];
    const log = { warn: (_fields: object, message: string) => warnings.push(message) };
    await preflight(settings('/nonexistent/librkllmrt.so'), log, tree({ governor: 'ondemand' }));
    expect(warnings).to.have.lengthOf(3);
    const old = tree({ driver: 'RKNPU driver: v0.9.6\n', memAvailableKb: 1024 * 1024 });
    const error = await preflight(settings(twin), log, old).then(
      () => undefined,
      (err: Error) => err,
    );
    expect(error?.message).to.match(/not ready for the RKLLM engine/);
    expect(error?.message)
      .to.match(/npu driver: 0\.9\.6/)
      .and.match(/memory: 2\.0 GB model x 1 instance/);
  });
});
