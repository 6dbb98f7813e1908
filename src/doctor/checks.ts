/**
 * The board doctor's checks: functions over a root directory (`/`, or a mounted board image, or a
 * test's fake tree) and the engine's options, each returning findings. Every system path is read
 * under the root; so are the model and the library, which are paths on the board.
 */
import { accessSync, constants, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, delimiter, dirname, extname, join, resolve } from 'node:path';
import { RKLLM_SYMBOLS } from '../engine/rkllm/functions.js';
import { availableMemory, gigabytes, memoryFit } from '../engine/rkllm/instance.js';
import type { LayoutSetting, Opened } from '../engine/rkllm/protocol.js';
import { RuntimeProcess } from '../engine/rkllm/runtime-process.js';
import { bindRknn } from '../engine/rknn/abi.js';

export type Status = 'ok' | 'warn' | 'fail';

/** One line of the doctor: what was checked, what was found, what is needed, and what fixes it ('' when ok). */
export interface Finding {
  check: string;
  status: Status;
  found: string;
  needed: string;
  fix: string;
}

export interface DoctorOptions {
  /** Where the system paths are read: `/`, or a board image. */
  root: string;
  /** librkllmrt.so: a path, or a name the dynamic loader finds. */
  library: string;
  layout: LayoutSetting;
  /** The .rkllm model, or null when none is configured. */
  model: string | null;
  /** Runtime instances of the model that will be loaded. */
  instances: number;
  /** max_context_len. */
  context: number;
  /** librknnrt.so, for a vision encoder: a path, or a name the dynamic loader finds. */
  rknnLib: string;
  /** The model's vision encoder (.rknn) when one is configured; else `<stem>.vision.rknn` beside the model is looked for. */
  encoder: string | null;
}

/** The rknpu driver version that recent runtimes need. */
const MIN_DRIVER = [0, 9, 8] as const;

/** Where kernels expose the rknpu driver version: debugfs (root only), the old procfs node, the module. */
export const DRIVER_PATHS = ['/sys/kernel/debug/rknpu/version', '/proc/debug/rknpu/version', '/sys/module/rknpu/version'];

/** The runtime's functions: all 15 must be exported. */
const RKLLM_FUNCTIONS = RKLLM_SYMBOLS.length;

/** Where the dynamic loader looks for a bare library name, besides LD_LIBRARY_PATH. */
const LIBRARY_DIRS = ['/usr/lib', '/usr/local/lib', '/lib', '/usr/lib/aarch64-linux-gnu', '/usr/lib64'];

/** ELF e_machine values, as Node names the architecture. */
const ELF_MACHINES: Record<number, string> = { 183: 'arm64', 62: 'x64', 40: 'arm' };

const SUPPORTED_CHIPS: Record<string, string> = {
  rk3588: 'RK3588',
  rk3588s: 'RK3588',
  rk3576: 'RK3576',
  rk3562: 'RK3562',
  rv1126b: 'RV1126B',
};

/** Reads a text file; the error code (ENOENT, EACCES, ...) when it cannot. */
export type ReadText = (path: string) => string | { code: string };

export const readText: ReadText = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    return { code: (err as NodeJS.ErrnoException).code ?? 'EIO' };
  }
};

function under(root: string, path: string): string {
  return join(root, resolve(path));
}

function finding(check: string, status: Status, found: string, needed: string, fix = ''): Finding {
  return { check, status, found, needed, fix };
}

/** The chip, from the device tree; `board` is false on a machine that is not a Rockchip board. */
export function chipCheck(root: string, read = readText): { finding: Finding; board: boolean } {
  const text = read(under(root, '/proc/device-tree/compatible'));
  const entries = typeof text === 'string' ? text.split('\0').filter(Boolean) : [];
  const soc = entries.map((entry) => /^rockchip,(r[kv]\d{4}[a-z]?)/i.exec(entry)?.[1]?.toLowerCase()).find(Boolean);
  const needed = 'a Rockchip RK3588, RK3576 or RK3562 board';
  if (!soc) {
    const found = `not a Rockchip board (${entries.length ? `device tree: ${entries.join(', ')}` : 'no /proc/device-tree/compatible'})`;
    const fix = 'the NPU engine runs on the board only; here, use --engine llama.cpp. The driver and frequency checks are skipped';
    return { finding: finding('chip', 'warn', found, needed, fix), board: false };
  }
  const chip = SUPPORTED_CHIPS[soc];
  if (chip) return { finding: finding('chip', 'ok', `${chip} (rockchip,${soc})`, needed), board: true };
  const why = /^rk356[68]$/.test(soc) ? 'the RKLLM runtime refuses RK3566/RK3568 ("Your platform is lite")' : 'RKLLM does not support it';
  const fix = 'use --engine llama.cpp on the CPU, or an RK3588/RK3576 board';
  return { finding: finding('chip', 'fail', `${soc.toUpperCase()}: ${why}`, needed, fix), board: true };
}

/** The rknpu kernel driver's version, from the first place that exposes it. */
export function driverCheck(root: string, read = readText): Finding {
  const needed = `rknpu ${MIN_DRIVER.join('.')} or later`;
  const denied: string[] = [];
  for (const path of DRIVER_PATHS) {
    const text = read(under(root, path));
    if (typeof text !== 'string') {
      if (text.code === 'EACCES' || text.code === 'EPERM') denied.push(path);
      continue;
    }
    const version = /(\d+)\.(\d+)\.(\d+)/.exec(text)?.slice(1).map(Number);
    if (!version) continue;
    const found = `${version.join('.')} (${path})`;
    const old = version.findIndex((part, i) => part !== MIN_DRIVER[i]);
    if (old === -1 || version[old]! > MIN_DRIVER[old]!) return finding('npu driver', 'ok', found, needed);
    const fix =
      'the driver is part of the kernel: install your distribution\'s newest vendor kernel (Armbian: "sudo apt update && sudo apt full-upgrade" ' +
      'to the 6.1 vendor kernel), or rebuild the kernel with rknpu_driver_0.9.8 from airockchip/rknn-llm (rknpu-driver/)';
    return finding('npu driver', 'fail', found, needed, fix);
  }
  const sudo = `run "sudo rkllm-mcp doctor", or "sudo cat ${denied[0]}"`;
  if (denied.length > 0) return finding('npu driver', 'warn', `${denied.join(', ')} cannot be read without root (EACCES)`, needed, sudo);
  const fix =
    'mount debugfs ("sudo mount -t debugfs none /sys/kernel/debug") or check "sudo dmesg | grep -i rknpu"; the mainline "rocket" driver does not serve RKLLM';
  return finding('npu driver', 'warn', `no version at ${DRIVER_PATHS.join(', ')}`, needed, fix);
}

/** Where the dynamic loader would find `library`, under the root; undefined when it is not there. */
function locate(root: string, library: string): string | undefined {
  if (library.includes('/')) return statSync(under(root, library), { throwIfNoEntry: false }) ? under(root, library) : undefined;
  const env = root === '/' ? (process.env.LD_LIBRARY_PATH ?? '').split(delimiter).filter(Boolean) : [];
  return [...env, ...LIBRARY_DIRS].map((dir) => under(root, join(dir, library))).find((path) => statSync(path, { throwIfNoEntry: false }));
}

/** The architecture an ELF file is built for, when it is an ELF file of a known one. */
function elfArch(path: string): string | undefined {
  try {
    const head = readFileSync(path).subarray(0, 20);
    return head.length === 20 && head.subarray(0, 4).toString('latin1') === '\x7fELF' ? ELF_MACHINES[head.readUInt16LE(18)] : undefined;
  } catch {
    return undefined; // A directory or an unreadable file: loading it says what is wrong.
  }
}

/** Where `library` is under the root, or the finding that ends its check: not found (under a root other than /), built for another machine. */
function placeLibrary(check: string, root: string, library: string, needed: string, install: string): string | Finding {
  const path = locate(root, library);
  if (!path && root !== '/') return finding(check, 'fail', `${library} not found under ${root}`, needed, install);
  const arch = path ? elfArch(path) : undefined;
  const foreign = `${path}: built for ${arch}, cannot be loaded on this ${process.arch} machine`;
  if (arch && arch !== process.arch) return finding(check, 'warn', foreign, needed, 'run rkllm-mcp doctor on the board');
  return path ?? library;
}

/** Loads the library in a runtime worker, as the engine does at start: found, loadable, every function, its layout. */
export async function libraryCheck(options: DoctorOptions): Promise<Finding> {
  const needed = `librkllmrt.so 1.2 or later, loadable, exporting all ${RKLLM_FUNCTIONS} rkllm_* functions`;
  const install =
    'install librkllmrt.so from airockchip/rknn-llm (rkllm-runtime/Linux/librkllm_api/aarch64/) into /usr/lib, or give its path with --rkllm-lib (engine.rkllm.library)';
  const target = placeLibrary('runtime library', options.root, options.library, needed, install);
  if (typeof target !== 'string') return target;
  const runtime = new RuntimeProcess({ onResult: () => undefined, onOutput: () => undefined, onExit: () => undefined });
  try {
    const { value } = await runtime.request<Opened>({ op: 'open', library: target, layout: options.layout }, 60_000);
    const source = value.source === 'library' ? 'told by its default parameters' : 'as set by --rkllm-version';
    const found = `${target}: loaded, all ${RKLLM_FUNCTIONS} functions exported, runtime ${value.layout}.x struct layout (${source})`;
    return finding('runtime library', 'ok', found, needed);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const fix = /does not export/.test(message)
      ? 'install librkllmrt.so 1.2 or later from airockchip/rknn-llm'
      : /layout/.test(message)
        ? 'set --rkllm-version (engine.rkllm.runtime_version) to the version of the library: 1.2 or 1.3'
        : install;
    return finding('runtime library', 'fail', message, needed, fix);
  } finally {
    runtime.kill();
    await runtime.close();
  }
}

/** librknnrt.so loaded as the encoder worker loads it: found, loadable, the eight rknn_* functions. */
export function rknnLibraryCheck(root: string, lib: string): Finding {
  const needed = 'librknnrt.so, loadable, exporting the 8 rknn_* functions a vision encoder uses';
  const install =
    'install librknnrt.so from airockchip/rknn-toolkit2 (rknpu2/runtime/Linux/librknn_api/aarch64/) into /usr/lib, or give its path with --rknn-lib (engine.rkllm.vision.rknn_lib)';
  const target = placeLibrary('rknn library', root, lib, needed, install);
  if (typeof target !== 'string') return target;
  try {
    bindRknn(target);
    return finding('rknn library', 'ok', `${target}: loaded, all 8 functions exported`, needed);
  } catch (err) {
    return finding('rknn library', 'fail', err instanceof Error ? err.message : String(err), needed, install);
  }
}

/** The vision encoder file of the model: configured, or `<stem>.vision.rknn` beside it; none when neither. */
export function encoderCheck(options: DoctorOptions): Finding | undefined {
  const { root, model } = options;
  const paired = model && join(dirname(model), `${basename(model, extname(model))}.vision.rknn`);
  const encoder = options.encoder ?? (paired && existsSync(under(root, paired)) ? paired : null);
  if (encoder === null) return undefined;
  const needed = 'the vision encoder (.rknn) of the model, converted for this chip, readable';
  const given = 'give an existing .rknn file with --vision-encoder (engine.rkllm.vision.encoder)';
  return fileCheck('vision encoder', root, encoder, needed, given).finding;
}

/** A file on the board that must be a regular file, readable: its finding, and its size when it is. */
function fileCheck(check: string, root: string, file: string, needed: string, given: string): { finding: Finding; size?: number } {
  const path = under(root, file);
  const stat = statSync(path, { throwIfNoEntry: false });
  if (!stat?.isFile())
    return { finding: finding(check, 'fail', `${path} ${stat ? 'is not a regular file' : 'does not exist'}`, needed, given) };
  try {
    accessSync(path, constants.R_OK);
  } catch {
    const fix = `"sudo chmod a+r ${file}", or run as its owner`;
    return { finding: finding(check, 'fail', `${path} is not readable by this user`, needed, fix) };
  }
  return { finding: finding(check, 'ok', `${path} (${gigabytes(stat.size)})`, needed), size: stat.size };
}

/** The model file, and its size times the instances against the available memory. */
export function modelChecks(options: DoctorOptions, read = readText): Finding[] {
  const { model, instances, context } = options;
  const needed = 'an .rkllm file converted for this chip, readable';
  if (model === null) return [finding('model', 'warn', 'no model given', needed, 'give it with --model FILE.rkllm (engine.model_path)')];
  const given = 'give an existing .rkllm file with --model (engine.model_path)';
  const { finding: modelLine, size } = fileCheck('model', options.root, model, needed, given);
  if (size === undefined) return [modelLine];
  const meminfo = read(under(options.root, '/proc/meminfo'));
  const available = typeof meminfo === 'string' ? availableMemory(meminfo) : undefined;
  const memNeeded = 'the model times the instances, with room for the KV caches';
  if (available === undefined)
    return [modelLine, finding('memory', 'warn', 'no MemAvailable in /proc/meminfo', memNeeded, 'check by hand: free -h')];
  const { status, found, fix } = memoryFit(size, instances, available, context);
  return [modelLine, finding('memory', status, found, memNeeded, status === 'ok' ? '' : fix)];
}

/** What a governor that is not `performance` costs, and how it is set (until the next boot). */
const COSTS = {
  dmc: 'decoding reads every weight for each token: a memory clock that scales down can halve tokens/s (rknn-llm #532, #409)',
  npu: 'the NPU clock ramps up after each pause: slower prefill and first tokens',
  cpu: 'the runtime also works on the CPU: a few percent to much fewer tokens/s (rknn-llm #29, #532)',
} as const;

/** A governor that keeps the clock at its highest: `performance`, or `userspace` pinned at the highest frequency. */
function governor(dir: string, files: { governor: string; current: string; highest: string }, read: ReadText): string | undefined {
  const name = read(join(dir, files.governor));
  if (typeof name !== 'string') return undefined;
  const current = read(join(dir, files.current));
  const highest = read(join(dir, files.highest));
  const top = typeof highest === 'string' ? Math.max(...highest.trim().split(/\s+/).map(Number)) : NaN;
  const pinned = name.trim() === 'userspace' && typeof current === 'string' && Number(current) === top;
  return pinned ? 'userspace at the highest frequency' : name.trim();
}

type Node = { path: string; governor: string | undefined };

function governorFinding(check: string, cost: string, where: string, nodes: Node[]): Finding {
  const needed = 'performance';
  const present = nodes.filter((node) => node.governor !== undefined);
  if (present.length === 0) {
    const fix = `the clock cannot be checked or set; if tokens/s stays far below Rockchip's benchmark, check the kernel and bootloader (${cost})`;
    return finding(check, 'warn', `no governor at ${where}`, needed, fix);
  }
  const found = present.map((node) => `${node.path.split('/').at(-2)} ${node.governor}`).join(', ');
  const slow = present.filter((node) => node.governor !== 'performance' && !node.governor!.startsWith('userspace at'));
  if (slow.length === 0) return finding(check, 'ok', found, needed);
  const set = slow.map((node) => node.path).join(' ');
  return finding(check, 'warn', found, needed, `${cost}. Set it (until reboot): echo performance | sudo tee ${set}`);
}

/** The governors of the memory controller (DMC), the NPU and the CPU policies. */
export function governorChecks(root: string, read = readText): Finding[] {
  const devfreq = '/sys/class/devfreq';
  const policies = '/sys/devices/system/cpu/cpufreq';
  const device = { governor: 'governor', current: 'cur_freq', highest: 'available_frequencies' };
  const cpu = { governor: 'scaling_governor', current: 'scaling_cur_freq', highest: 'cpuinfo_max_freq' };
  const node = (path: string, files = device): Node => ({
    path: join(path, files.governor),
    governor: governor(under(root, path), files, read),
  });
  const list = (dir: string, pattern: RegExp): string[] => {
    const names = existsSync(under(root, dir)) ? readdirSync(under(root, dir)) : [];
    return names.filter((name) => pattern.test(name)).map((name) => join(dir, name));
  };
  const npus = list(devfreq, /npu/).map((path) => node(path));
  const cpus = list(policies, /^policy\d+$/).map((path) => node(path, cpu));
  return [
    governorFinding('memory governor (DMC)', COSTS.dmc, `${devfreq}/dmc`, [node(join(devfreq, 'dmc'))]),
    governorFinding('npu governor', COSTS.npu, `${devfreq}/*npu*`, npus),
    governorFinding('cpu governors', COSTS.cpu, `${policies}/policy*`, cpus),
  ];
}

/** Every check, in order. `library: false` leaves out loading the library (the engine does it next, in the same words). */
export async function runChecks(options: DoctorOptions, what = { library: true }): Promise<Finding[]> {
  const { finding: chip, board } = chipCheck(options.root);
  const encoder = encoderCheck(options);
  const vision = encoder ? [...(what.library ? [rknnLibraryCheck(options.root, options.rknnLib)] : []), encoder] : [];
  return [
    chip,
    ...(board ? [driverCheck(options.root)] : []),
    ...(what.library ? [await libraryCheck(options)] : []),
    ...modelChecks(options),
    ...vision,
    ...(board ? governorChecks(options.root) : []),
  ];
}
