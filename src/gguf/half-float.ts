/** IEEE 754 binary16 ("half", ggml's F16): encoding float32 values, rounding to nearest even. */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * The binary16 bit pattern nearest to `value` (ties to even); subnormals are kept.
 *
 * @throws if `value` is not finite or too large for binary16 (|value| >= 65520).
 */
export function toHalfBits(value: number): number {
  f32[0] = value;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  let mantissa = bits & 0x7fffff;
  if (exponent <= 0) {
    if (exponent < -10) return sign;
    mantissa |= 0x800000;
    return sign | roundShift(mantissa, 14 - exponent);
  }
  const half = (exponent << 10) + roundShift(mantissa, 13);
  if (half >= 0x7c00 || !Number.isFinite(value)) throw new RangeError(`${value} does not fit in a float16`);
  return sign | half;
}

/** `value >> shift`, rounded to nearest, ties to even (a carry may reach the exponent: that is right). */
function roundShift(value: number, shift: number): number {
  const kept = value >>> shift;
  const rest = value & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rest > half || (rest === half && (kept & 1) === 1) ? kept + 1 : kept;
}

/** The value of a binary16 bit pattern. */
export function fromHalfBits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
