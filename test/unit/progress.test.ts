import { expect } from 'chai';
import { startProgress } from '../../src/progress.js';

function recorder(isTTY: boolean): { isTTY: boolean; writes: string[]; write(text: string): void } {
  const writes: string[] = [];
  return { isTTY, writes, write: (text: string) => writes.push(text) };
}

describe('progress', function () {
  it('redraws a bar in place on a TTY, once per percent, and ends it with the time', function () {
    const stream = recorder(true);
    let clock = 1000;
    const progress = startProgress('building', { stream, now: () => clock });
    progress.update(0.5);
    progress.update(0.501);
    progress.update(0.75);
    clock = 3500;
    progress.done();
    progress.done();
    expect(stream.writes).to.have.length(3);
    expect(stream.writes[0]).to.equal(`\rbuilding [${'#'.repeat(15)}${'.'.repeat(15)}]  50%`);
    expect(stream.writes[2]).to.equal(`\rbuilding [${'#'.repeat(30)}] 100% 2.5 s\n`);
  });

  it('writes one line off a TTY: plain text, or a JSON log line', function () {
    const text = recorder(false);
    const plain = startProgress('building', { stream: text, now: () => 0 });
    plain.update(0.3);
    plain.done();
    expect(text.writes).to.deep.equal(['building: 0.0 s\n']);

    const json = recorder(false);
    const logged = startProgress('loading x.gguf', { stream: json, line: 'json', now: () => 0 });
    logged.update(1);
    logged.done();
    expect(json.writes).to.have.length(1);
    expect(JSON.parse(json.writes[0]!)).to.include({ level: 30, msg: 'loading x.gguf: 0.0 s' });
  });
});
