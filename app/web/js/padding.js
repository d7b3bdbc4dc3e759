// Padmé padding, the JavaScript twin of app/crypto/padding.py (framing: docs/formats.md).
// - attachments: plaintext, then zero bytes up to padme(len); the true size and SHA-256
//   travel inside the encrypted testimony and the editor tool truncates;
// - the testimony JSON: then ASCII spaces up to padme(len), so it stays valid JSON for
//   anyone who opens it with plain `age -d`.
// JS bit operators are 32-bit, so this uses exact power-of-two float arithmetic instead;
// it is exact for every length below 2**53.

/** Even a one-line testimony looks like a small one. */
export const MIN_PADDED = 256;

/** Fill byte per framing kind. */
export const FILL = Object.freeze({ attachment: 0x00, testimony: 0x20 });

/** Number of bits in the binary form of a non-negative integer (Python int.bit_length). */
function bitLength(n) {
  return n === 0 ? 0 : n.toString(2).length;
}

/** Padmé length for `length` (>= length, >= MIN_PADDED). Same results as padding.padme. */
export function padme(length) {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError("bad length");
  if (length <= MIN_PADDED) return MIN_PADDED;
  const e = bitLength(length) - 1;
  const s = bitLength(e);
  const unit = 2 ** (e - s);
  return Math.ceil(length / unit) * unit;
}

/** How many padding bytes follow `length` bytes of plaintext. */
export function paddingFor(length) {
  return padme(length) - length;
}
