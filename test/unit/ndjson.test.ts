import { expect } from 'chai';
import { LineSplitter } from '../../src/transports/ndjson.js';

/** A splitter of `max`-byte lines, and what it has handed over since the last look ("<oversize>" for a line over the limit). */
function splitter(max: number): { lines: LineSplitter; taken: () => string[] } {
  let frames: string[] = [];
  const lines = new LineSplitter(
    max,
    (line) => frames.push(line.toString()),
    () => frames.push('<oversize>'),
  );
  const taken = (): string[] => {
    const seen = frames;
    frames = [];
    return seen;
  };
  return { lines, taken };
}

describe('LineSplitter (NDJSON framing)', () => {
  it('cuts lines, across and within pushes', () => {
    const { lines, taken } = splitter(100);
    lines.push(Buffer.from('{"a":1}\n{"b"'));
    expect(taken()).to.deep.equal(['{"a":1}']);
    lines.push(Buffer.from(':2}'));
    expect(taken()).to.deep.equal([]);
    lines.push(Buffer.from('\n{"c":3}\n{"d":4}\n'));
    expect(taken()).to.deep.equal(['{"b":2}', '{"c":3}', '{"d":4}']);
  });

  it('skips blank lines and leaves a trailing carriage return to the JSON parser', () => {
    const { lines, taken } = splitter(100);
    lines.push(Buffer.from('\n  \r\n{"a":1}\r\n\t\n'));
    expect(taken()).to.deep.equal(['{"a":1}\r']);
  });

  it('accepts a line of exactly the limit and reports a longer one once, discarding it up to the next newline', () => {
    const { lines, taken } = splitter(4);
    lines.push(Buffer.from('1234\n12345'));
    expect(taken()).to.deep.equal(['1234', '<oversize>']);
    lines.push(Buffer.from('6789 more of the same'));
    expect(taken()).to.deep.equal([]);
    lines.push(Buffer.from(' end\nok\n'));
    expect(taken()).to.deep.equal(['ok']);
  });

  it('never holds more than the limit of a line', () => {
    const { lines, taken } = splitter(1000);
    for (let i = 0; i < 1000; i++) lines.push(Buffer.alloc(1000, 0x61));
    expect(taken()).to.deep.equal(['<oversize>']);
  });

  it('hands over an unterminated last line when the input ends', () => {
    const { lines, taken } = splitter(100);
    lines.push(Buffer.from('{"a":1}\n{"b":'));
    expect(taken()).to.deep.equal(['{"a":1}']);
    lines.end();
    expect(taken()).to.deep.equal(['{"b":']);
    lines.end();
    expect(taken()).to.deep.equal([]);
  });

  it('keeps a multi-byte character split across pushes whole', () => {
    const { lines, taken } = splitter(100);
    const bytes = Buffer.from('"é"\n');
    lines.push(bytes.subarray(0, 2));
    lines.push(bytes.subarray(2));
    expect(taken()).to.deep.equal(['"é"']);
  });
});
