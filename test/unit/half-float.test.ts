import { expect } from 'chai';
import { fromHalfBits, toHalfBits } from '../../src/gguf/half-float.js';

describe('float16 encoding', function () {
  it('rounds to the nearest float16, ties to even, and keeps subnormals', function () {
    for (const value of [0, 1, -2, 0.5, 65504, 1e-3, -1.25e-2])
      expect(Math.abs(fromHalfBits(toHalfBits(value)) - value)).to.be.at.most(Math.abs(value) / 2048);
    expect(toHalfBits(1)).to.equal(0x3c00);
    expect(toHalfBits(1 + 2 ** -11)).to.equal(0x3c00); // tie: to even
    expect(toHalfBits(1 + 3 * 2 ** -11)).to.equal(0x3c02); // tie: to even (up)
    expect(toHalfBits(2 ** -24)).to.equal(0x0001);
    expect(toHalfBits(-(2 ** -20))).to.equal(0x8010);
    expect(() => toHalfBits(65520)).to.throw(RangeError);
  });
});
