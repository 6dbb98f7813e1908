// The one rule for client-given file names: inside the operator's folder, or refused the same way.
import { expect } from 'chai';
import { mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerError } from '../../src/errors.js';
import { ConfinedFolder } from '../../src/paths.js';

/** The ServerError `promise` rejects with; fails the test when it resolves. */
async function thrown(promise: Promise<unknown>): Promise<ServerError> {
  const outcome = await promise.then(
    (value) => ({ value }),
    (err: unknown) => ({ err }),
  );
  if (!('err' in outcome) || !(outcome.err instanceof ServerError))
    throw new Error(`expected a ServerError, got ${JSON.stringify(outcome)}`);
  return outcome.err;
}

describe('ConfinedFolder', () => {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'rkllm-paths-')));
  const folder = new ConfinedFolder({ path: join(root, 'caches'), title: 'prompt cache', setting: 'folders.prompt_caches' });
  mkdirSync(join(root, 'caches', 'team'), { recursive: true });
  mkdirSync(join(root, 'outside'));
  writeFileSync(join(root, 'outside', 'secret'), 'x');
  writeFileSync(join(root, 'caches', 'team', 'a.cache'), 'x');
  symlinkSync(join(root, 'outside'), join(root, 'caches', 'out'));
  symlinkSync(join(root, 'outside', 'not-yet'), join(root, 'caches', 'dangling'));
  symlinkSync(join(root, 'caches', 'team', 'a.cache'), join(root, 'caches', 'inner-link'));

  it('resolves names inside the folder, subfolders and links that stay inside included', async () => {
    expect(await folder.file('team/a.cache', 'prompt_cache_path')).to.equal(join(root, 'caches', 'team', 'a.cache'));
    expect(await folder.file('inner-link', 'prompt_cache_path')).to.equal(join(root, 'caches', 'team', 'a.cache'));
    expect(await folder.target('team/new.cache', 'prompt_cache_path', true)).to.equal(join(root, 'caches', 'team', 'new.cache'));
  });

  it('refuses absolute paths, "..", links out and links that lead nowhere yet, identically', async () => {
    const names = ['/etc/passwd', '/no/such/file', '../outside/secret', 'team/../../x', 'out/secret', 'out/missing', 'dangling', ''];
    const errors = [];
    for (const name of names) errors.push(await thrown(folder.target(name, 'prompt_cache_path', false)));
    for (const name of names) errors.push(await thrown(folder.file(name, 'prompt_cache_path')));
    for (const error of errors) {
      expect(error).to.include({ name: 'INVALID_PARAMS', message: errors[0]!.message });
      expect((error as { data: unknown }).data).to.deep.equal({ reason: 'path_refused' });
    }
  });

  it('inside the folder, a missing file or subfolder is named by the name given, never by the server path', async () => {
    const missing = await thrown(folder.file('none.cache', 'prompt_cache_path'));
    expect(missing.message).to.equal('Invalid params: "prompt_cache_path" names no file: none.cache');
    const noFolder = await thrown(folder.target('no/such/x', 'prompt_cache_path', true));
    expect(noFolder.message).to.equal('Invalid params: "prompt_cache_path" is in a folder that does not exist: no/such/x');
  });

  it('makes the folder on the first write, not on a read', async () => {
    const fresh = new ConfinedFolder({ path: join(root, 'fresh'), title: 'prompt cache', setting: 'folders.prompt_caches' });
    await thrown(fresh.file('a', 'prompt_cache_path'));
    expect(await fresh.target('a', 'prompt_cache_path', true)).to.equal(join(root, 'fresh', 'a'));
  });
});
