import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { ApiKey } from './auth.js';
import { Ajv } from 'ajv';
import { type EnvType, leavesOf, schemaOf } from './setting-kinds.js';
import { defaultSettings, SETTINGS, SettingsError, type Settings } from './settings.js';

/** Every environment variable that sets a setting starts with this. */
export const ENV_PREFIX = 'RKLLM_MCP_';

type Plain = Record<string, unknown>;

/** A setting that an environment variable can set: where it sits, and how the variable's text is read. */
export interface EnvSetting {
  path: string[];
  type: EnvType;
}

/** The variable of the setting at `path`: RKLLM_MCP_ and the path in capitals, e.g. RKLLM_MCP_HTTP_MAX_BODY_BYTES. */
export function envName(path: readonly string[]): string {
  return `${ENV_PREFIX}${path.join('_').toUpperCase()}`;
}

/** Every leaf setting, by its environment variable. */
export function envSettings(): Map<string, EnvSetting> {
  return new Map(leavesOf(SETTINGS).map(({ path, leaf }) => [envName(path), { path, type: leaf.env }]));
}

/** Turns a variable's text into the setting's type; validation of the value itself comes later, with the other layers'. */
function parseValue(name: string, text: string, setting: EnvSetting): unknown {
  const bad = (expected: string): SettingsError =>
    new SettingsError(`environment: ${name} (setting "${setting.path.join('.')}") must be ${expected}, got "${text}"`);
  switch (setting.type) {
    case 'number': {
      const n = Number(text);
      if (text.trim() === '' || !Number.isFinite(n)) throw bad('a number');
      return n;
    }
    case 'boolean':
      if (['true', '1'].includes(text)) return true;
      if (['false', '0'].includes(text)) return false;
      throw bad('true, false, 1 or 0');
    case 'list':
      return text
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item !== '');
    case 'map':
      return Object.fromEntries(
        text
          .split(',')
          .filter((pair) => pair.trim() !== '')
          .map((pair) => {
            const at = pair.indexOf('=');
            if (at < 1) throw new SettingsError(`environment: ${name} must be name=value pairs separated by commas, got "${text}"`);
            return [pair.slice(0, at).trim(), pair.slice(at + 1).trim()];
          }),
      );
    case 'nullable':
      return text === '' ? null : text;
    case 'string':
      return text;
  }
}

/**
 * The settings given by `RKLLM_MCP_*` variables, as a partial settings object. Lists are comma
 * separated (RKLLM_MCP_AUTH_API_KEYS=key1,key2), maps too (RKLLM_MCP_OPENAI_MODEL_ALIASES=gpt-4o-mini=rkllm-tiny). An
 * unknown RKLLM_MCP_ variable is an error, so a typo never passes silently; RKLLM_MCP_HOME is no setting but the
 * folder of per-user state (src/state-dirs.ts).
 */
export function settingsFromEnv(env: NodeJS.ProcessEnv): Plain {
  const known = envSettings();
  const values: Plain = {};
  for (const [name, text] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || name === 'RKLLM_MCP_HOME' || text === undefined) continue;
    const setting = known.get(name);
    if (!setting)
      throw new SettingsError(
        `environment: ${name} is not a known setting (each setting's variable is ${ENV_PREFIX} and its path in capitals, e.g. ${ENV_PREFIX}HTTP_PORT)`,
      );
    let node = values;
    for (const key of setting.path.slice(0, -1)) node = (node[key] ??= {}) as Plain;
    node[setting.path.at(-1)!] = parseValue(name, text, setting);
  }
  return values;
}

/** The flags the server and `rkllm-mcp doctor` share, for parseArgs. */
export const SHARED_FLAGS = {
  model: { type: 'string' },
  'rkllm-lib': { type: 'string' },
  'rkllm-version': { type: 'string' },
  'vision-encoder': { type: 'string' },
  'rknn-lib': { type: 'string' },
  parallel: { type: 'string' },
  context: { type: 'string' },
  settings: { type: 'string' },
} as const;

/** An integer flag's value, undefined when absent; a SettingsError naming the flag when it is no integer from `min` to `max`. */
export function integerFlag(flag: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max)
    throw new SettingsError(`--${flag} expects an integer from ${min} to ${max}, got "${value}"`);
  return n;
}

/** The `engine` settings that the shared flags give (--model, --engine, --rkllm-lib, --rkllm-version, --vision-encoder, --rknn-lib, --context). */
export function engineFlags(values: { [K in keyof typeof SHARED_FLAGS]?: string } & { engine?: string }): Plain {
  const given = (pairs: Plain): Plain => Object.fromEntries(Object.entries(pairs).filter(([, value]) => value !== undefined));
  const vision = given({ encoder: values['vision-encoder'], rknn_lib: values['rknn-lib'] });
  return given({
    model_path: values.model,
    kind: values.engine,
    max_context_len: integerFlag('context', values.context, 16, 1 << 20),
    rkllm: { ...given({ library: values['rkllm-lib'], runtime_version: values['rkllm-version'] }), vision },
  });
}

/** What became of the settings file. */
export interface SettingsFile {
  path: string;
  values: Plain;
  /** It did not exist, and was written with every default. */
  created: boolean;
  /** It did not exist and could not be written (the server runs on the other layers). */
  unwritable?: string;
}

/**
 * Reads the settings file. With `create`, first writes it with every default if it does not exist
 * (readable by its owner only, since it may come to hold API keys); without, a missing file reads as
 * empty.
 */
export function openSettingsFile(path: string, create: boolean): SettingsFile {
  if (!create) return { path, values: existsSync(path) ? readSettingsFile(path) : {}, created: false };
  const defaults = defaultSettings();
  try {
    writeFileSync(path, `${JSON.stringify(defaults, null, 2)}\n`, { flag: 'wx', mode: 0o600 });
    return { path, values: defaults, created: true };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return { path, values: readSettingsFile(path), created: false };
    return { path, values: {}, created: false, unwritable: (err as Error).message };
  }
}

/** The merged settings as JSON for `--print-settings`, with each API key replaced by its id. */
export function printableSettings(settings: Settings): string {
  const keys = settings.auth.api_keys.map((secret) => `<redacted ${new ApiKey(secret).id}>`);
  return JSON.stringify({ ...settings, auth: { ...settings.auth, api_keys: keys } }, null, 2);
}

/** Reads a settings file (JSON); `resolveSettings` validates it. Missing keys keep their defaults. */
export function readSettingsFile(path: string): Plain {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SettingsError(`Cannot read settings file ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as Plain;
  } catch (err) {
    throw new SettingsError(`Settings file ${path} is not valid JSON: ${(err as Error).message}`);
  }
}

const validate = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true }).compile(schemaOf(SETTINGS));

function isPlain(value: unknown): value is Plain {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Deep-merges `over` onto `base`; nested objects merge, everything else replaces. */
export function merge<T>(base: T, over: unknown): T {
  if (!isPlain(base) || !isPlain(over)) return over === undefined ? base : (over as T);
  const out: Plain = { ...base };
  for (const [key, value] of Object.entries(over)) out[key] = key in out ? merge(out[key], value) : value;
  return out as T;
}

/** Validates a partial settings object (from a file or flags), naming the key and what it expects. */
export function checkSettings(partial: unknown, source: string): void {
  if (validate(partial)) return;
  const error = validate.errors?.[0];
  if (!error) throw new SettingsError(`${source}: invalid settings`);
  const p = error.params as Plain;
  const key = [
    ...error.instancePath.split('/').filter(Boolean),
    ...(typeof p.additionalProperty === 'string' ? [p.additionalProperty] : []),
  ].join('.');
  const detail =
    error.keyword === 'additionalProperties'
      ? 'is not a known setting'
      : error.keyword === 'enum'
        ? `must be one of ${JSON.stringify(p.allowedValues)}`
        : (error.message ?? 'is invalid');
  throw new SettingsError(`${source}: setting "${key || '(root)'}" ${detail}`);
}

/** The defaults, then each layer in order (the file, the environment, the flags), later ones winning; each layer validated. */
export function resolveSettings(layers: Array<{ source: string; values: unknown }>): Settings {
  let settings = defaultSettings();
  for (const layer of layers) {
    checkSettings(layer.values, layer.source);
    settings = merge(settings, layer.values);
  }
  if (settings.engine.kind === 'rkllm' && settings.engine.model_path === null) {
    throw new SettingsError('setting "engine.model_path" is required with engine.kind "rkllm": give the .rkllm model (--model FILE.rkllm)');
  }
  return settings;
}
