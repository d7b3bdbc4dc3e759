// Incremental SHA-256 for the plaintext of files too big for one WebCrypto call (WebCrypto
// has no incremental digest). The rounds are app/web/js/sha256-rounds.js, generated (why:
// tests/js/gen-sha256.mjs). tests/test_js_sha256.py checks it against Python's hashlib at
// every block boundary, with and without a JIT.
//
// The interface is the part of @noble/hashes' sha256 the workers used:
//   const h = new Sha256(); h.update(bytes) ...; h.hex() -> lowercase hex digest.

import { compress } from "./sha256-rounds.js";

// FIPS 180-4, 5.3.3: the first 32 bits of the fractional parts of the square roots of the
// first 8 primes
const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

export class Sha256 {
  constructor() {
    this.state = Int32Array.from(IV);
    this.block = new Uint8Array(64); // a partial block carried between updates
    this.used = 0;
    this.length = 0; // bytes so far (exact up to 2**53)
    this.done = false;
  }

  /** Add `bytes` (a Uint8Array). */
  update(bytes) {
    if (this.done) throw new Error("SHA-256: update after the digest");
    this.length += bytes.length;
    let pos = 0;
    if (this.used > 0) {
      pos = Math.min(64 - this.used, bytes.length);
      this.block.set(bytes.subarray(0, pos), this.used);
      this.used += pos;
      if (this.used < 64) return this;
      compress(this.state, this.block, 0, 64);
      this.used = 0;
    }
    pos = compress(this.state, bytes, pos, bytes.length);
    this.block.set(bytes.subarray(pos));
    this.used = bytes.length - pos;
    return this;
  }

  /** The digest as 64 lowercase hex digits; the hash takes no more input after this. */
  hex() {
    this.done = true;
    const tail = new Uint8Array(this.used < 56 ? 64 : 128);
    tail.set(this.block.subarray(0, this.used));
    tail[this.used] = 0x80;
    const view = new DataView(tail.buffer);
    const bits = this.length * 8;
    view.setUint32(tail.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(tail.length - 4, bits >>> 0);
    compress(this.state, tail, 0, tail.length);
    return Array.from(this.state, (w) => (w >>> 0).toString(16).padStart(8, "0")).join("");
  }
}
