// ChaCha20-Poly1305 (RFC 8439) written for JavaScript engines without a JIT.
//
// Why not only @noble/ciphers' chacha20poly1305 (which age-encryption uses): Tor Browser's
// "Safer" level turns the JIT and WebAssembly off, and in V8's interpreter every function
// call costs far more than the arithmetic; noble's ChaCha core calls rotl() 320 times per
// 64-byte block. Here the 20 rounds are written out with the rotations inline and the
// keystream is XORed 32 bits at a time; Poly1305 runs its blocks in one loop of locals. bench/bench_browser_crypto.py
// measures both under --jitless; tests/test_browser_bundle.py opens every ciphertext the
// worker makes with `age -d`.
//
// The build (tests/js/build.mjs) substitutes this module for "@noble/ciphers/chacha.js" in the
// worker bundle only, so age-encryption's STREAM and X25519 stanzas run through it; the
// interface is the part of noble's that age-encryption uses:
//   chacha20poly1305(key: 32 bytes, nonce: 12 bytes, aad?) -> {encrypt(pt), decrypt(ct)}

import { Poly1305 } from "@noble/ciphers/_poly1305.js";

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]; // "expand 32-byte k"

function words(bytes, count) {
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    const j = 4 * i;
    out[i] = (bytes[j] | (bytes[j + 1] << 8) | (bytes[j + 2] << 16) | (bytes[j + 3] << 24)) >>> 0;
  }
  return out;
}

/**
 * XOR `w` (little-endian words, whole 64-byte blocks) with the ChaCha20 keystream of key `k`
 * (8 words) and nonce `n` (3 words) from block `counter` on.
 */
function xorKeystream(k, n, counter, w) {
  const j0 = SIGMA[0], j1 = SIGMA[1], j2 = SIGMA[2], j3 = SIGMA[3];
  const j4 = k[0], j5 = k[1], j6 = k[2], j7 = k[3], j8 = k[4], j9 = k[5], j10 = k[6];
  const j11 = k[7], j13 = n[0], j14 = n[1], j15 = n[2];
  for (let o = 0; o < w.length; o += 16) {
    const j12 = counter++ | 0;
    let x0 = j0, x1 = j1, x2 = j2, x3 = j3, x4 = j4, x5 = j5, x6 = j6, x7 = j7;
    let x8 = j8, x9 = j9, x10 = j10, x11 = j11, x12 = j12, x13 = j13, x14 = j14, x15 = j15;
    let t = 0;
    for (let r = 0; r < 10; r++) {
      x0 = (x0 + x4) | 0; t = x12 ^ x0; x12 = (t << 16) | (t >>> 16);
      x8 = (x8 + x12) | 0; t = x4 ^ x8; x4 = (t << 12) | (t >>> 20);
      x0 = (x0 + x4) | 0; t = x12 ^ x0; x12 = (t << 8) | (t >>> 24);
      x8 = (x8 + x12) | 0; t = x4 ^ x8; x4 = (t << 7) | (t >>> 25);
      x1 = (x1 + x5) | 0; t = x13 ^ x1; x13 = (t << 16) | (t >>> 16);
      x9 = (x9 + x13) | 0; t = x5 ^ x9; x5 = (t << 12) | (t >>> 20);
      x1 = (x1 + x5) | 0; t = x13 ^ x1; x13 = (t << 8) | (t >>> 24);
      x9 = (x9 + x13) | 0; t = x5 ^ x9; x5 = (t << 7) | (t >>> 25);
      x2 = (x2 + x6) | 0; t = x14 ^ x2; x14 = (t << 16) | (t >>> 16);
      x10 = (x10 + x14) | 0; t = x6 ^ x10; x6 = (t << 12) | (t >>> 20);
      x2 = (x2 + x6) | 0; t = x14 ^ x2; x14 = (t << 8) | (t >>> 24);
      x10 = (x10 + x14) | 0; t = x6 ^ x10; x6 = (t << 7) | (t >>> 25);
      x3 = (x3 + x7) | 0; t = x15 ^ x3; x15 = (t << 16) | (t >>> 16);
      x11 = (x11 + x15) | 0; t = x7 ^ x11; x7 = (t << 12) | (t >>> 20);
      x3 = (x3 + x7) | 0; t = x15 ^ x3; x15 = (t << 8) | (t >>> 24);
      x11 = (x11 + x15) | 0; t = x7 ^ x11; x7 = (t << 7) | (t >>> 25);
      x0 = (x0 + x5) | 0; t = x15 ^ x0; x15 = (t << 16) | (t >>> 16);
      x10 = (x10 + x15) | 0; t = x5 ^ x10; x5 = (t << 12) | (t >>> 20);
      x0 = (x0 + x5) | 0; t = x15 ^ x0; x15 = (t << 8) | (t >>> 24);
      x10 = (x10 + x15) | 0; t = x5 ^ x10; x5 = (t << 7) | (t >>> 25);
      x1 = (x1 + x6) | 0; t = x12 ^ x1; x12 = (t << 16) | (t >>> 16);
      x11 = (x11 + x12) | 0; t = x6 ^ x11; x6 = (t << 12) | (t >>> 20);
      x1 = (x1 + x6) | 0; t = x12 ^ x1; x12 = (t << 8) | (t >>> 24);
      x11 = (x11 + x12) | 0; t = x6 ^ x11; x6 = (t << 7) | (t >>> 25);
      x2 = (x2 + x7) | 0; t = x13 ^ x2; x13 = (t << 16) | (t >>> 16);
      x8 = (x8 + x13) | 0; t = x7 ^ x8; x7 = (t << 12) | (t >>> 20);
      x2 = (x2 + x7) | 0; t = x13 ^ x2; x13 = (t << 8) | (t >>> 24);
      x8 = (x8 + x13) | 0; t = x7 ^ x8; x7 = (t << 7) | (t >>> 25);
      x3 = (x3 + x4) | 0; t = x14 ^ x3; x14 = (t << 16) | (t >>> 16);
      x9 = (x9 + x14) | 0; t = x4 ^ x9; x4 = (t << 12) | (t >>> 20);
      x3 = (x3 + x4) | 0; t = x14 ^ x3; x14 = (t << 8) | (t >>> 24);
      x9 = (x9 + x14) | 0; t = x4 ^ x9; x4 = (t << 7) | (t >>> 25);
    }
    w[o] ^= x0 + j0; w[o + 1] ^= x1 + j1; w[o + 2] ^= x2 + j2; w[o + 3] ^= x3 + j3;
    w[o + 4] ^= x4 + j4; w[o + 5] ^= x5 + j5; w[o + 6] ^= x6 + j6; w[o + 7] ^= x7 + j7;
    w[o + 8] ^= x8 + j8; w[o + 9] ^= x9 + j9; w[o + 10] ^= x10 + j10; w[o + 11] ^= x11 + j11;
    w[o + 12] ^= x12 + j12; w[o + 13] ^= x13 + j13; w[o + 14] ^= x14 + j14;
    w[o + 15] ^= x15 + j15;
  }
}

/** `data` XOR keystream from block `counter`, in a fresh 4-byte-aligned buffer. */
function xorCopy(k, n, counter, data) {
  const padded = new Uint8Array(Math.ceil(data.length / 64) * 64);
  padded.set(data);
  xorKeystream(k, n, counter, new Uint32Array(padded.buffer));
  return padded;
}

function le64(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setUint32(0, n % 0x100000000, true);
  new DataView(out.buffer).setUint32(4, Math.floor(n / 0x100000000), true);
  return out;
}

/** `bytes` followed by zeros up to a multiple of 16, as 16-bit words. */
function padded16(bytes) {
  const out = new Uint8Array(Math.ceil(bytes.length / 16) * 16);
  out.set(bytes);
  return new Uint16Array(out.buffer);
}

/**
 * The RFC 8439 2.8 tag: Poly1305 over aad, zeros to 16, ct, zeros to 16, both lengths as
 * 64-bit LE. The whole 16-byte blocks of `ct` are read where they lie (no copy of the
 * chunk); only its last partial block and the lengths go through a 32-byte scratch block.
 */
function tagOf(k, n, aad, ct) {
  const mac = new Poly1305(xorCopy(k, n, 0, new Uint8Array(64)).subarray(0, 32));
  if (aad.length > 0) polyBlocks(mac, padded16(aad));
  const whole = ct.length - (ct.length % 16);
  if (whole > 0) {
    const aligned = ct.byteOffset % 2 === 0 ? ct : ct.slice(0, whole);
    polyBlocks(mac, new Uint16Array(aligned.buffer, aligned.byteOffset, whole / 2));
  }
  const tail = new Uint8Array(ct.length > whole ? 32 : 16);
  tail.set(ct.subarray(whole));
  tail.set(le64(aad.length), tail.length - 16);
  tail.set(le64(ct.length), tail.length - 8);
  polyBlocks(mac, new Uint16Array(tail.buffer));
  return mac.digest();
}

/**
 * Poly1305 over whole 16-byte blocks: ``mac`` is a fresh @noble/ciphers Poly1305 (which
 * clamps the key and finalizes); its limbs are updated here in one loop with everything in
 * local variables, where noble makes a method call and eight helper calls per block.
 * The arithmetic is poly1305-donna-16's (ten 13-bit limbs, products within 32 bits).
 */
function polyBlocks(mac, m16) {
  const h = mac.h, r = mac.r;
  const r0 = r[0], r1 = r[1], r2 = r[2], r3 = r[3], r4 = r[4];
  const r5 = r[5], r6 = r[6], r7 = r[7], r8 = r[8], r9 = r[9];
  const s1 = 5 * r1, s2 = 5 * r2, s3 = 5 * r3, s4 = 5 * r4, s5 = 5 * r5;
  const s6 = 5 * r6, s7 = 5 * r7, s8 = 5 * r8, s9 = 5 * r9;
  let h0 = h[0], h1 = h[1], h2 = h[2], h3 = h[3], h4 = h[4];
  let h5 = h[5], h6 = h[6], h7 = h[7], h8 = h[8], h9 = h[9];
  for (let o = 0; o < m16.length; o += 8) {
    const t0 = m16[o], t1 = m16[o + 1], t2 = m16[o + 2], t3 = m16[o + 3];
    const t4 = m16[o + 4], t5 = m16[o + 5], t6 = m16[o + 6], t7 = m16[o + 7];
    h0 += t0 & 0x1fff;
    h1 += ((t0 >>> 13) | (t1 << 3)) & 0x1fff;
    h2 += ((t1 >>> 10) | (t2 << 6)) & 0x1fff;
    h3 += ((t2 >>> 7) | (t3 << 9)) & 0x1fff;
    h4 += ((t3 >>> 4) | (t4 << 12)) & 0x1fff;
    h5 += (t4 >>> 1) & 0x1fff;
    h6 += ((t4 >>> 14) | (t5 << 2)) & 0x1fff;
    h7 += ((t5 >>> 11) | (t6 << 5)) & 0x1fff;
    h8 += ((t6 >>> 8) | (t7 << 8)) & 0x1fff;
    h9 += (t7 >>> 5) | 0x800;
    let c = 0;
    let d0 = c + h0 * r0 + h1 * s9 + h2 * s8 + h3 * s7 + h4 * s6;
    c = d0 >>> 13; d0 &= 0x1fff;
    d0 += h5 * s5 + h6 * s4 + h7 * s3 + h8 * s2 + h9 * s1;
    c += d0 >>> 13; d0 &= 0x1fff;
    let d1 = c + h0 * r1 + h1 * r0 + h2 * s9 + h3 * s8 + h4 * s7;
    c = d1 >>> 13; d1 &= 0x1fff;
    d1 += h5 * s6 + h6 * s5 + h7 * s4 + h8 * s3 + h9 * s2;
    c += d1 >>> 13; d1 &= 0x1fff;
    let d2 = c + h0 * r2 + h1 * r1 + h2 * r0 + h3 * s9 + h4 * s8;
    c = d2 >>> 13; d2 &= 0x1fff;
    d2 += h5 * s7 + h6 * s6 + h7 * s5 + h8 * s4 + h9 * s3;
    c += d2 >>> 13; d2 &= 0x1fff;
    let d3 = c + h0 * r3 + h1 * r2 + h2 * r1 + h3 * r0 + h4 * s9;
    c = d3 >>> 13; d3 &= 0x1fff;
    d3 += h5 * s8 + h6 * s7 + h7 * s6 + h8 * s5 + h9 * s4;
    c += d3 >>> 13; d3 &= 0x1fff;
    let d4 = c + h0 * r4 + h1 * r3 + h2 * r2 + h3 * r1 + h4 * r0;
    c = d4 >>> 13; d4 &= 0x1fff;
    d4 += h5 * s9 + h6 * s8 + h7 * s7 + h8 * s6 + h9 * s5;
    c += d4 >>> 13; d4 &= 0x1fff;
    let d5 = c + h0 * r5 + h1 * r4 + h2 * r3 + h3 * r2 + h4 * r1;
    c = d5 >>> 13; d5 &= 0x1fff;
    d5 += h5 * r0 + h6 * s9 + h7 * s8 + h8 * s7 + h9 * s6;
    c += d5 >>> 13; d5 &= 0x1fff;
    let d6 = c + h0 * r6 + h1 * r5 + h2 * r4 + h3 * r3 + h4 * r2;
    c = d6 >>> 13; d6 &= 0x1fff;
    d6 += h5 * r1 + h6 * r0 + h7 * s9 + h8 * s8 + h9 * s7;
    c += d6 >>> 13; d6 &= 0x1fff;
    let d7 = c + h0 * r7 + h1 * r6 + h2 * r5 + h3 * r4 + h4 * r3;
    c = d7 >>> 13; d7 &= 0x1fff;
    d7 += h5 * r2 + h6 * r1 + h7 * r0 + h8 * s9 + h9 * s8;
    c += d7 >>> 13; d7 &= 0x1fff;
    let d8 = c + h0 * r8 + h1 * r7 + h2 * r6 + h3 * r5 + h4 * r4;
    c = d8 >>> 13; d8 &= 0x1fff;
    d8 += h5 * r3 + h6 * r2 + h7 * r1 + h8 * r0 + h9 * s9;
    c += d8 >>> 13; d8 &= 0x1fff;
    let d9 = c + h0 * r9 + h1 * r8 + h2 * r7 + h3 * r6 + h4 * r5;
    c = d9 >>> 13; d9 &= 0x1fff;
    d9 += h5 * r4 + h6 * r3 + h7 * r2 + h8 * r1 + h9 * r0;
    c += d9 >>> 13; d9 &= 0x1fff;
    c = ((c << 2) + c) | 0;
    c = (c + d0) | 0;
    h0 = c & 0x1fff;
    h1 = d1 + (c >>> 13);
    h2 = d2; h3 = d3; h4 = d4; h5 = d5; h6 = d6; h7 = d7; h8 = d8; h9 = d9;
  }
  h[0] = h0; h[1] = h1; h[2] = h2; h[3] = h3; h[4] = h4;
  h[5] = h5; h[6] = h6; h[7] = h7; h[8] = h8; h[9] = h9;
}

function equal16(a, b) {
  let diff = 0;
  for (let i = 0; i < 16; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export function chacha20poly1305(key, nonce, aad = new Uint8Array(0)) {
  if (!LITTLE_ENDIAN) throw new Error("this ChaCha20-Poly1305 needs a little-endian machine");
  if (!(key instanceof Uint8Array) || key.length !== 32) throw new Error("key: 32 bytes");
  if (!(nonce instanceof Uint8Array) || nonce.length !== 12) throw new Error("nonce: 12 bytes");
  const k = words(key, 8);
  const n = words(nonce, 3);
  return {
    encrypt(plaintext) {
      // one buffer, one copy: the plaintext is XORed in place over whole 64-byte blocks,
      // the tag written after it, and whatever keystream lies beyond the tag is zeroed
      const len = plaintext.length;
      const blocks = Math.ceil(len / 64) * 64;
      const out = new Uint8Array(Math.max(blocks, len + 16));
      out.set(plaintext);
      xorKeystream(k, n, 1, new Uint32Array(out.buffer, 0, blocks / 4));
      const tag = tagOf(k, n, aad, out.subarray(0, len));
      out.set(tag, len);
      out.fill(0, len + 16);
      return out.subarray(0, len + 16);
    },
    decrypt(ciphertext) {
      if (ciphertext.length < 16) throw new Error("invalid tag");
      const len = ciphertext.length - 16;
      const ct = ciphertext.subarray(0, len);
      if (!equal16(tagOf(k, n, aad, ct), ciphertext.subarray(len))) {
        throw new Error("invalid tag");
      }
      return xorCopy(k, n, 1, ct).slice(0, len);
    },
  };
}
