/**
 * The one rule for file names that clients give (`model_path`, `lora_adapter_path`,
 * `prompt_cache_path`): a name is resolved inside a folder the operator configured, and nothing
 * outside it is ever read or written. Absolute paths, ".." and links leading out of the folder are
 * refused, with one refusal that does not depend on whether the file exists, so it tells a client
 * nothing about the rest of the disk.
 */
import { existsSync } from 'node:fs';
import { lstat, mkdir, realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { fault, type ServerError } from './errors.js';

/** A folder that client-given names resolve in. */
export interface FolderSpec {
  /** The folder; a relative one is taken from the working directory. */
  path: string;
  /** What it holds, in messages: "model", "prompt cache", "LoRA adapter". */
  title: string;
  /** The setting that names it, in messages. */
  setting: string;
}

/** The folders of one server, one per kind of file a client may name. */
export interface ClientFolders {
  models: ConfinedFolder;
  promptCaches: ConfinedFolder;
  loraAdapters: ConfinedFolder;
  images: ConfinedFolder;
}

function inside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** One operator-configured folder: resolves client names inside it, or refuses them. */
export class ConfinedFolder {
  /** The folder, absolute. */
  readonly root: string;
  readonly #spec: FolderSpec;

  constructor(spec: FolderSpec) {
    this.#spec = spec;
    this.root = resolve(spec.path);
  }

  /** The file `name` names, for reading: refused outside the folder, -32602 "names no file" inside it when it is no regular file. */
  async file(name: string, field: string): Promise<string> {
    const path = await this.#resolve(name, field);
    const info = path === undefined ? undefined : await stat(path).catch(() => undefined);
    if (!path || !info?.isFile()) throw fault('INVALID_PARAMS', 'no_file', { field, name }, { reason: 'file_not_found' });
    return path;
  }

  /**
   * Where `name` would be written: refused outside the folder. With `create` (a write is coming),
   * the folder itself is made first when missing, and a subfolder the name needs must exist.
   */
  async target(name: string, field: string, create: boolean): Promise<string> {
    if (create) await mkdir(this.root, { recursive: true });
    const path = (await this.#resolve(name, field)) ?? join(this.root, name);
    if (create && !existsSync(dirname(path))) throw fault('INVALID_PARAMS', 'no_folder', { field, name }, { reason: 'file_not_found' });
    return path;
  }

  /** The real path of `name` inside the folder; undefined when the folder does not exist. Throws the refusal. */
  async #resolve(name: string, field: string): Promise<string | undefined> {
    if (name.length === 0 || name.includes('\0') || isAbsolute(name) || name.split(/[\\/]/).includes('..')) throw this.#refused(field);
    const root = await realpath(this.root).catch(() => undefined);
    if (root === undefined) return undefined;
    // The deepest part of the path that exists decides where it leads; the rest is still to be created.
    const rest: string[] = [];
    for (let path = join(root, name); ; path = dirname(path)) {
      const real = await realpath(path).catch(() => undefined);
      if (real !== undefined) {
        if (!inside(root, real)) throw this.#refused(field);
        return join(real, ...rest);
      }
      // A link that leads nowhere yet would be followed by a write.
      if ((await lstat(path).catch(() => undefined))?.isSymbolicLink()) throw this.#refused(field);
      rest.unshift(basename(path));
    }
  }

  #refused(field: string): ServerError {
    const { title, setting } = this.#spec;
    return fault('INVALID_PARAMS', 'path_refused', { field, folder: title, setting }, { reason: 'path_refused' });
  }
}

/** The folders of the `folders` settings. */
export function clientFolders(paths: { models: string; promptCaches: string; loraAdapters: string; images: string }): ClientFolders {
  return {
    models: new ConfinedFolder({ path: paths.models, title: 'model', setting: 'folders.models' }),
    promptCaches: new ConfinedFolder({ path: paths.promptCaches, title: 'prompt cache', setting: 'folders.prompt_caches' }),
    loraAdapters: new ConfinedFolder({ path: paths.loraAdapters, title: 'LoRA adapter', setting: 'folders.lora_adapters' }),
    images: new ConfinedFolder({ path: paths.images, title: 'image', setting: 'folders.images' }),
  };
}
