// Model files are checked before an engine gets them: regular files only, GGUF headers weighed against the file size.
import { expect } from 'chai';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerError } from '../../src/errors.js';
import { ensureBuiltinModel } from '../../src/gguf/builtin.js';
import { checkModelFile } from '../../src/gguf/model-file.js';
import { patchedCopy } from '../helpers/gguf-patch.js';
import { thrown } from '../helpers/thrown.js';

describe('Model file check', function () {
  this.timeout(60_000);
  let tiny: string;
  let dir: string;

  before(async () => {
    tiny = await ensureBuiltinModel('tiny');
    dir = mkdtempSync(join(tmpdir(), 'rkllm-model-file-'));
  });

  it('accepts the built-in model', () => {
    expect(() => checkModelFile(tiny, 'llama.cpp')).not.to.throw();
  });

  it('refuses a header claiming more tensors than the file can hold, naming the file and the counts', () => {
    const bad = patchedCopy(tiny, dir, 'tensors.gguf', 8, 1n << 40n);
    const err = thrown(() => checkModelFile(bad, 'llama.cpp'), ServerError);
    expect(err.name).to.equal('ENGINE_ERROR');
    expect(err.message)
      .to.include(bad)
      .and.include(`claims ${2 ** 40} tensors`);
  });

  it('refuses a header claiming more metadata entries than the file can hold', () => {
    const bad = patchedCopy(tiny, dir, 'entries.gguf', 16, 123_456_789n);
    expect(thrown(() => checkModelFile(bad, 'llama.cpp'), ServerError).message)
      .to.include(bad)
      .and.include('123456789 metadata entries');
  });

  it('refuses a count beyond 2^53 and a first key longer than the file', () => {
    const huge = patchedCopy(tiny, dir, 'huge.gguf', 8, 1n << 62n);
    expect(thrown(() => checkModelFile(huge, 'llama.cpp'), ServerError).message).to.include('more than any file can hold');
    const key = patchedCopy(tiny, dir, 'key.gguf', 24, 1n << 40n);
    expect(thrown(() => checkModelFile(key, 'llama.cpp'), ServerError).message).to.include("metadata entry 0's key claims");
  });

  // A FIFO: test/integration/cli.test.ts, which makes one (mkfifo) for the command line too.
  it('refuses a device and a directory without waiting on them', () => {
    expect(thrown(() => checkModelFile('/dev/zero', 'rkllm'), ServerError).message).to.include('is a device');
    expect(thrown(() => checkModelFile(dir, 'llama.cpp'), ServerError).message).to.include('is a directory');
  });
});
