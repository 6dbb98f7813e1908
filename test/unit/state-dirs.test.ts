// Where per-user state lives: the settings file, the folders, the built-in model (src/state-dirs.ts).
import { expect } from 'chai';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { defaultSettings } from '../../src/settings.js';
import { settingsFromEnv } from '../../src/settings-sources.js';
import { anchorFolders, describeState, isCheckout, openStateSettings, stateDirs, type StateInputs } from '../../src/state-dirs.js';
import { scratchDir } from '../helpers/server-process.js';

const INSTALLED = '/usr/lib/node_modules/rkllm-mcp';
const CHECKOUT = '/src/rkllm-mcp';

function dirs(over: Partial<StateInputs> & { files?: string[] } = {}) {
  const files = over.files ?? [];
  return stateDirs({
    env: {},
    cwd: '/work/here',
    home: '/home/ann',
    packageRoot: INSTALLED,
    exists: (path) => files.includes(path),
    ...over,
  });
}

describe('State folders', () => {
  it('installed, nothing set: ~/.config/rkllm-mcp and ~/.local/share/rkllm-mcp, nothing in the working directory', () => {
    const d = dirs();
    expect(d).to.deep.include({
      settingsFile: '/home/ann/.config/rkllm-mcp/settings.json',
      origin: 'user',
      configDir: '/home/ann/.config/rkllm-mcp',
      dataDir: '/home/ann/.local/share/rkllm-mcp',
      folderBase: '/home/ann/.local/share/rkllm-mcp',
      builtinModelsDir: '/home/ann/.local/share/rkllm-mcp/models',
    });
  });

  it('XDG_CONFIG_HOME and XDG_DATA_HOME move them; relative XDG values are ignored, as the spec says', () => {
    expect(dirs({ env: { XDG_CONFIG_HOME: '/x/config', XDG_DATA_HOME: '/x/data' } })).to.deep.include({
      settingsFile: '/x/config/rkllm-mcp/settings.json',
      dataDir: '/x/data/rkllm-mcp',
      builtinModelsDir: '/x/data/rkllm-mcp/models',
    });
    expect(dirs({ env: { XDG_CONFIG_HOME: 'rel', XDG_DATA_HOME: '' } })).to.deep.include({
      configDir: '/home/ann/.config/rkllm-mcp',
      dataDir: '/home/ann/.local/share/rkllm-mcp',
    });
  });

  it('RKLLM_MCP_HOME holds both, over the XDG variables; a relative one is under the working directory', () => {
    const env = { RKLLM_MCP_HOME: '/srv/rk', XDG_CONFIG_HOME: '/x/config', XDG_DATA_HOME: '/x/data' };
    expect(dirs({ env })).to.deep.include({
      settingsFile: '/srv/rk/settings.json',
      configDir: '/srv/rk',
      dataDir: '/srv/rk',
      folderBase: '/srv/rk',
      builtinModelsDir: '/srv/rk/models',
    });
    expect(dirs({ env: { RKLLM_MCP_HOME: 'state' } }).dataDir).to.equal('/work/here/state');
    expect(() => settingsFromEnv({ RKLLM_MCP_HOME: '/srv/rk' }), 'RKLLM_MCP_HOME is no setting').not.to.throw();
  });

  it('a settings.json in the working directory is read when it exists, and relative folders are then under it', () => {
    const d = dirs({ files: ['/work/here/settings.json'], env: { RKLLM_MCP_HOME: '/srv/rk' } });
    expect(d).to.deep.include({ settingsFile: '/work/here/settings.json', origin: 'working directory', folderBase: '/work/here' });
    expect(d.builtinModelsDir, 'the built-in model stays per user').to.equal('/srv/rk/models');
  });

  it('--settings wins over the working directory and the per-user file', () => {
    const d = dirs({ files: ['/work/here/settings.json'], settingsFlag: 'conf/mine.json' });
    expect(d).to.deep.include({
      settingsFile: '/work/here/conf/mine.json',
      origin: 'flag',
      folderBase: '/home/ann/.local/share/rkllm-mcp',
    });
  });

  it('a checkout keeps its built-in model in its own models/ and relative folders under the working directory', () => {
    expect(isCheckout(CHECKOUT)).to.equal(true);
    expect(isCheckout(INSTALLED)).to.equal(false);
    expect(isCheckout('/home/ann/.npm/_npx/0123/node_modules/rkllm-mcp')).to.equal(false);
    expect(dirs({ packageRoot: CHECKOUT })).to.deep.include({
      settingsFile: '/home/ann/.config/rkllm-mcp/settings.json',
      folderBase: '/work/here',
      builtinModelsDir: '/src/rkllm-mcp/models',
    });
  });

  it('relative folders are made absolute under the base; absolute ones and --models-dir stay', () => {
    const settings = defaultSettings();
    const anchored = anchorFolders(settings, '/data');
    expect(anchored.folders).to.deep.equal({
      models: '/data/models',
      prompt_caches: '/data/prompt-caches',
      lora_adapters: '/data/lora-adapters',
      images: '/data/images',
    });
    expect(anchored.models.dir).to.equal(null);
    const own = anchorFolders(
      { ...settings, models: { ...settings.models, dir: '/abs/models' }, folders: { ...settings.folders, models: 'm' } },
      '/data',
    );
    expect(own.models.dir).to.equal('/abs/models');
    expect(own.folders.models).to.equal('/data/m');
    expect(describeState(dirs(), anchored)).to.include('models folder:  /data/models');
  });

  it('first start writes the per-user file with every default, its folder made; ./settings.json is never written', () => {
    const root = scratchDir();
    const d = stateDirs({ env: { RKLLM_MCP_HOME: join(root, 'home') }, cwd: root, home: root, packageRoot: INSTALLED });
    const file = openStateSettings(d, true);
    expect(file.created).to.equal(true);
    expect(JSON.parse(readFileSync(join(root, 'home', 'settings.json'), 'utf8'))).to.deep.equal(defaultSettings());
    expect(statSync(join(root, 'home', 'settings.json')).mode & 0o777).to.equal(0o600);
    const printing = stateDirs({ env: { RKLLM_MCP_HOME: join(root, 'other') }, cwd: root, home: root, packageRoot: INSTALLED });
    expect(openStateSettings(printing, false).created).to.equal(false);
    expect(existsSync(join(root, 'other')), 'not written when only reading').to.equal(false);
    const local = stateDirs({ env: {}, cwd: root, home: root, packageRoot: INSTALLED, exists: () => true });
    expect(openStateSettings(local, true).created).to.equal(false);
    expect(existsSync(join(root, 'settings.json'))).to.equal(false);
  });
});
