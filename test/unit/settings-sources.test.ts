// Settings from the environment and from the settings file written on first start.
import { expect } from 'chai';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultSettings, SettingsError } from '../../src/settings.js';
import { envSettings, openSettingsFile, printableSettings, resolveSettings, settingsFromEnv } from '../../src/settings-sources.js';
import { scratchDir } from '../helpers/server-process.js';
import { thrown } from '../helpers/thrown.js';

const settingsError = (fn: () => unknown): string => thrown(fn, SettingsError).message;

describe('Settings from the environment', () => {
  it('every setting has its own variable', () => {
    const names = envSettings();
    expect(names.get('RKLLM_MCP_HTTP_PORT')?.path).to.deep.equal(['http', 'port']);
    expect(names.get('RKLLM_MCP_ENGINE_RKLLM_EXTEND_PARAM_N_BATCH')?.path).to.deep.equal(['engine', 'rkllm', 'extend_param', 'n_batch']);
    const leaves = (value: unknown): number =>
      typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length > 0 // {}: a map setting
        ? Object.values(value).reduce((n: number, v) => n + leaves(v), 0)
        : 1;
    expect(names.size, 'no two settings share a variable').to.equal(leaves(defaultSettings()));
  });

  it('reads values in the type of their setting and ignores other variables', () => {
    const values = settingsFromEnv({
      PATH: '/usr/bin',
      RKLLM_MCP_HTTP_PORT: '9000',
      RKLLM_MCP_TCP_ENABLED: 'false',
      RKLLM_MCP_STREAMS_BUFFER_TIMEOUT_S: '2.5',
      RKLLM_MCP_LOG_LEVEL: 'debug',
      RKLLM_MCP_ENGINE_MODEL_PATH: '',
      RKLLM_MCP_AUTH_API_KEYS: 'first-key-0123456789, second-key-0123456789',
      RKLLM_MCP_OPENAI_MODEL_ALIASES: 'gpt-4o-mini=rkllm-tiny, gpt-4o = big',
    });
    expect(values).to.deep.equal({
      http: { port: 9000 },
      tcp: { enabled: false },
      streams: { buffer_timeout_s: 2.5 },
      log_level: 'debug',
      engine: { model_path: null },
      auth: { api_keys: ['first-key-0123456789', 'second-key-0123456789'] },
      openai: { model_aliases: { 'gpt-4o-mini': 'rkllm-tiny', 'gpt-4o': 'big' } },
    });
  });

  it('names an unknown variable and a value of the wrong type', () => {
    expect(settingsError(() => settingsFromEnv({ RKLLM_MCP_HTTP_PROT: '1' }))).to.include('RKLLM_MCP_HTTP_PROT is not a known setting');
    expect(settingsError(() => settingsFromEnv({ RKLLM_MCP_HTTP_PORT: 'eighty' }))).to.include(
      'RKLLM_MCP_HTTP_PORT (setting "http.port") must be a number, got "eighty"',
    );
    expect(settingsError(() => settingsFromEnv({ RKLLM_MCP_DIAGNOSTICS: 'yes' }))).to.include('must be true, false, 1 or 0');
    expect(settingsError(() => settingsFromEnv({ RKLLM_MCP_OPENAI_MODEL_ALIASES: 'gpt-4o' }))).to.include('name=value pairs');
  });

  it('a value of the right type but out of range is refused with the key, like any layer', () => {
    const layer = { source: 'environment', values: settingsFromEnv({ RKLLM_MCP_HTTP_PORT: '70000' }) };
    expect(settingsError(() => resolveSettings([layer]))).to.equal('environment: setting "http.port" must be <= 65535');
  });
});

describe('The settings file', () => {
  it('is written with every default when missing, readable by its owner only, and read as it is afterwards', () => {
    const path = join(scratchDir(), 'settings.json');
    const first = openSettingsFile(path, true);
    expect(first.created).to.equal(true);
    expect(JSON.parse(readFileSync(path, 'utf8'))).to.deep.equal(defaultSettings());
    expect(statSync(path).mode & 0o777).to.equal(0o600);
    writeFileSync(path, JSON.stringify({ http: { port: 1234 } }));
    const second = openSettingsFile(path, true);
    expect(second).to.deep.include({ created: false, values: { http: { port: 1234 } } });
  });

  it('is not written when only reading (--print-settings)', () => {
    const path = join(scratchDir(), 'settings.json');
    expect(openSettingsFile(path, false)).to.deep.equal({ path, values: {}, created: false });
    expect(() => statSync(path)).to.throw();
  });

  it('that cannot be written leaves the server on the other layers, saying why', () => {
    const file = openSettingsFile(join(scratchDir(), 'missing-dir', 'settings.json'), true);
    expect(file.values).to.deep.equal({});
    expect(file.unwritable).to.include('ENOENT');
  });

  it('prints the merged settings with API keys replaced by their ids', () => {
    const settings = resolveSettings([{ source: 'test', values: { auth: { api_keys: ['secret-key-0123456789'] } } }]);
    const printed = printableSettings(settings);
    expect(printed).not.to.include('secret-key');
    expect(JSON.parse(printed).auth.api_keys[0]).to.match(/^<redacted key_[0-9a-f]{12}>$/);
  });
});
