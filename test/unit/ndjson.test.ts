import { expect } from 'chai';
import { LineSplitter, type LineFrame } from '../../src/transports/ndjson.js';

const text = (frames: LineFrame[]): string[] => frames.map((f) => (f.kind === 'line' ? f.data.toString() : '<oversize>'));

describe('LineSplitter (NDJSON framing)', () => {
  it('cuts lines, across and within pushes', () => {
    const lines = new LineSplitter(100);
    expect(text(lines.push(Buffer.from('{"a":1}\n{"b"')))).to.deep.equal(['{"a":1}']);
    expect(text(lines.push(Buffer.from(':2}')))).to.deep.equal([]);
    expect(text(lines.push(Buffer.from('\n{"c":3}\n{"d":4}\n')))).to.deep.equal(['{"b":2}', '{"c":3}', '{"d":4}']);
  });

  it('skips blank lines and leaves a trailing carriage return to the JSON parser', () => {
    const lines = new LineSplitter(100);
    expect(text(lines.push(Buffer.from('\n  \r\n{"a":1}\r\n\t\n')))).to.deep.equal(['{"a":1}\r']);
  });

  it('accepts a line of exactly the limit and reports a longer one once, discarding it up to the next newline', () => {
    const lines = new LineSplitter(4);
    expect(text(lines.push(Buffer.from('1234\n12345')))).to.deep.equal(['1234', '<oversize>']);
    expect(text(lines.push(Buffer.from('6789 more of the same')))).to.deep.equal([]);
    expect(text(lines.push(Buffer.from(' end\nok\n')))).to.deep.equal(['ok']);
  });

  it('never holds more than the limit of a line', () => {
    const lines = new LineSplitter(1000);
    const frames: LineFrame[] = [];
    for (let i = 0; i < 1000; i++) frames.push(...lines.push(Buffer.alloc(1000, 0x61)));
    expect(text(frames)).to.deep.equal(['<oversize>']);
  });

  it('hands over an unterminated last line when the input ends', () => {
    const lines = new LineSplitter(100);
    expect(text(lines.push(Buffer.from('{"a":1}\n{"b":')))).to.deep.equal(['{"a":1}']);
    expect(text(lines.end())).to.deep.equal(['{"b":']);
    expect(text(lines.end())).to.deep.equal([]);
  });

  it('keeps a multi-byte character split across pushes whole', () => {
    const lines = new LineSplitter(100);
    const bytes = Buffer.from('"é"\n');
    expect(text([...lines.push(bytes.subarray(0, 2)), ...lines.push(bytes.subarray(2))])).to.deep.equal(['"é"']);
  });
});
