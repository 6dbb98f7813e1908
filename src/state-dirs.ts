/**
 * Where the server keeps its state: which settings file it reads (and writes on first start), the
 * folder that relative folder settings are under, and where the built-in model is cached.
 *
 * - Settings file: `--settings FILE`; else `./settings.json` when it exists (a checkout started with
 *   `npm start`, as before); else the per-user file `<config>/settings.json`, written with every
 *   default on first start.
 * - Per-user folders: `$RKLLM_MCP_HOME` holds both (`settings.json`, `models/`,
 *   `prompt-caches/`, `lora-adapters/`); else config is `$XDG_CONFIG_HOME/rkllm-mcp`
 *   (`~/.config/rkllm-mcp`) and data is `$XDG_DATA_HOME/rkllm-mcp` (`~/.local/share/rkllm-mcp`).
 * - Relative folders (`folders.*`, `models.dir` from a file or the environment) are under the working
 *   directory when the settings came from `./settings.json` or the package is a checkout (not
 *   installed under node_modules), as before; else under the data folder.
 * - The built-in model: `<package root>/models` in a checkout, else `<data>/models`.
 *
 * Nothing here writes into the working directory.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openSettingsFile, type SettingsFile } from './settings-sources.js';
import type { Settings } from './settings.js';

/** The variable that puts all per-user state in one folder. */
export const HOME_VARIABLE = 'RKLLM_MCP_HOME';

/** Where the settings file was found. */
export type SettingsOrigin = 'flag' | 'working directory' | 'user';

export interface StateDirs {
  /** The settings file to read. */
  settingsFile: string;
  origin: SettingsOrigin;
  /** The per-user settings folder. */
  configDir: string;
  /** The per-user data folder (models, prompt caches, LoRA adapters). */
  dataDir: string;
  /** The folder that relative folder settings are under. */
  folderBase: string;
  /** Where the built-in model is generated and cached. */
  builtinModelsDir: string;
}

export interface StateInputs {
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** The user's home folder. */
  home: string;
  /** The package's root folder (the one with package.json). */
  packageRoot: string;
  /** `--settings FILE`, when given. */
  settingsFlag?: string;
  /** Whether a file exists (for ./settings.json). */
  exists?: (path: string) => boolean;
}

/** The nearest ancestor folder of this module that has a package.json. */
export function packageRootDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) return dirname(fileURLToPath(import.meta.url));
    dir = parent;
  }
  return dir;
}

/** A package root outside any node_modules folder is a checkout (a clone, or a copy started with `npm start`). */
export function isCheckout(packageRoot: string): boolean {
  return !resolve(packageRoot).split(sep).includes('node_modules');
}

/** An XDG base variable counts only when absolute (the XDG spec says to ignore relative ones). */
function xdg(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const value = env[name];
  return value !== undefined && isAbsolute(value) ? value : fallback;
}

/** The state folders, from the environment, the working directory and `--settings`. */
export function stateDirs(inputs: StateInputs): StateDirs {
  const { env, cwd, home, packageRoot } = inputs;
  const exists = inputs.exists ?? existsSync;
  const own = env[HOME_VARIABLE];
  const ownHome = own !== undefined && own !== '' ? resolve(cwd, own) : undefined;
  const configDir = ownHome ?? join(xdg(env, 'XDG_CONFIG_HOME', join(home, '.config')), 'rkllm-mcp');
  const dataDir = ownHome ?? join(xdg(env, 'XDG_DATA_HOME', join(home, '.local', 'share')), 'rkllm-mcp');
  const local = join(cwd, 'settings.json');
  const [settingsFile, origin]: [string, SettingsOrigin] =
    inputs.settingsFlag !== undefined
      ? [resolve(cwd, inputs.settingsFlag), 'flag']
      : exists(local)
        ? [local, 'working directory']
        : [join(configDir, 'settings.json'), 'user'];
  const checkout = isCheckout(packageRoot);
  return {
    settingsFile,
    origin,
    configDir,
    dataDir,
    folderBase: origin === 'working directory' || checkout ? cwd : dataDir,
    builtinModelsDir: checkout ? join(packageRoot, 'models') : join(dataDir, 'models'),
  };
}

export function currentStateDirs(settingsFlag?: string): StateDirs {
  return stateDirs({
    env: process.env,
    cwd: process.cwd(),
    home: homedir(),
    packageRoot: packageRootDir(),
    ...(settingsFlag === undefined ? {} : { settingsFlag }),
  });
}

/**
 * Opens the settings file that `dirs` chose. With `create`, a missing file is written with every
 * default: the per-user one with its folder (readable by its owner only), a `--settings` one where
 * it was named; `./settings.json` is only ever read.
 */
export function openStateSettings(dirs: StateDirs, create: boolean): SettingsFile {
  if (create && dirs.origin === 'user') {
    try {
      mkdirSync(dirs.configDir, { recursive: true, mode: 0o700 });
    } catch {
      // openSettingsFile reports the file as unwritable.
    }
  }
  return openSettingsFile(dirs.settingsFile, create && dirs.origin !== 'working directory');
}

/** The settings with relative folders (`folders.*`, `models.dir`) made absolute under `base`. */
export function anchorFolders(settings: Settings, base: string): Settings {
  const folders = Object.entries(settings.folders).map(([name, folder]) => [name, resolve(base, folder)]);
  return {
    ...settings,
    folders: Object.fromEntries(folders) as Settings['folders'],
    models: { ...settings.models, dir: settings.models.dir === null ? null : resolve(base, settings.models.dir) },
  };
}

/** Where state lives, for `--help` and `--print-settings`. */
export function describeState(dirs: StateDirs, settings?: Settings): string {
  const origins: Record<SettingsOrigin, string> = {
    flag: '--settings',
    'working directory': 'settings.json in the working directory',
    user: 'per-user',
  };
  const unwritten = dirs.origin === 'user' && !existsSync(dirs.settingsFile) ? '; written with every default on first start' : '';
  const lines = [
    `settings file:  ${dirs.settingsFile} (${origins[dirs.origin]}${unwritten})`,
    `per-user data:  ${dirs.dataDir}`,
    `relative folders are under: ${dirs.folderBase}`,
  ];
  if (settings) {
    lines.push(`models folder:  ${settings.models.dir ?? settings.folders.models}`);
    lines.push(`prompt caches:  ${settings.folders.prompt_caches}`);
    lines.push(`LoRA adapters:  ${settings.folders.lora_adapters}`);
  }
  lines.push(`built-in model: ${dirs.builtinModelsDir}`);
  return lines.join('\n');
}
