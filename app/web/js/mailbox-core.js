// Codename + mailbox derivation, shared by the browser bundle (mailbox.js) and the
// node helper CLI (tests/js/age-cli.mjs). The word list is passed in rather than
// imported so that node can read app/crypto/wordlist.txt from disk while the browser
// bundle gets it inlined by esbuild: one list, one algorithm, no drift.
//
// Must stay byte-for-byte equivalent to app/crypto/mailbox.py; the shared vectors in
// tests/vectors/mailbox.json are produced from this file and checked on both sides.

import { scryptAsync } from "@noble/hashes/scrypt.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex, concatBytes, utf8ToBytes } from "@noble/hashes/utils.js";
import { bech32 } from "@scure/base";
import { identityToRecipient } from "age-encryption";

/** Number of words in a codename (7 words of 7776 = 90.5 bits). */
export const CODENAME_WORDS = 7;

/**
 * scrypt parameters, fixed and documented (docs/formats.md). Changing any of them
 * changes every witness's mailbox: they are part of the format, not a tuning knob.
 */
export const KDF_PARAMS = Object.freeze({
  N: 2 ** 12,
  r: 8,
  p: 1,
  dkLen: 64,
  salt: "guwah.org/v1/mailbox",
});

/** Domain-separation prefix for the token hash the server stores. */
export const TOKEN_HASH_PREFIX = "guwah.org/v1/token";

/** Reply identity kinds; the same strings as app.crypto recipients' `.type`. */
export const KINDS = Object.freeze(["X25519", "mlkem768x25519"]);

/**
 * Separators between codename words, applied after NFKC + lowercase: any JS
 * whitespace (\s), the C0 information separators and NEL (which Python's str.split()
 * also treats as whitespace), ASCII hyphen-minus, and the Unicode hyphens/dashes a
 * phone keyboard may substitute (U+2010..U+2015, U+2212 minus, U+FE58, U+FE63, U+FF0D).
 * Python mirror: re.compile(r"[\s\x1c-\x1f\x85\u2010-\u2015\u2212\ufe58\ufe63\uff0d\ufeff-]+")
 */
export const SEPARATORS = /[\s\x1c-\x1f\x85\u2010-\u2015\u2212\ufe58\ufe63\uff0d\ufeff-]+/u;

/** A codename that cannot be used; `.message` is a sentence a person can act on. */
export class CodenameError extends Error {
  constructor(message, code) {
    super(message);
    this.name = "CodenameError";
    /** Stable machine-readable reason: "count" | "word" | "type". */
    this.code = code;
  }
}

/** Parse the word-list text (one word per line) into a frozen array, checking it. */
export function parseWordlist(text) {
  const words = text.split("\n").filter((w) => w !== "");
  if (words.length !== 7776 || new Set(words).size !== 7776) {
    throw new Error("the codename word list must hold 7776 unique words");
  }
  for (const w of words) {
    if (!/^[a-z]+$/.test(w)) throw new Error("bad word in the codename word list");
  }
  return Object.freeze(words);
}

/**
 * Build the mailbox API around one word list. Returned functions are pure apart from
 * newCodename (which uses crypto.getRandomValues).
 */
export function makeMailboxApi(words) {
  const wordSet = new Set(words);

  /** Canonical form of a codename: NFKC, lowercase, words joined by one space. */
  function normalizeCodename(input) {
    if (typeof input !== "string") {
      throw new CodenameError("The codename must be text.", "type");
    }
    const parts = input.normalize("NFKC").toLowerCase().split(SEPARATORS).filter((w) => w !== "");
    for (const w of parts) {
      if (!wordSet.has(w)) {
        throw new CodenameError(
          `"${w}" is not one of the codename words. Check the spelling.`,
          "word",
        );
      }
    }
    if (parts.length !== CODENAME_WORDS) {
      throw new CodenameError(
        `A codename has exactly ${CODENAME_WORDS} words; this one has ${parts.length}.`,
        "count",
      );
    }
    return parts.join(" ");
  }

  /**
   * A fresh codename: 7 words drawn uniformly with crypto.getRandomValues and
   * rejection sampling (62208 = 8 * 7776 is the largest multiple of 7776 below 2**16),
   * so no word is more likely than another.
   */
  function newCodename() {
    const n = words.length;
    const limit = 65536 - (65536 % n);
    const out = [];
    const buf = new Uint16Array(16);
    while (out.length < CODENAME_WORDS) {
      crypto.getRandomValues(buf);
      for (const v of buf) {
        if (v < limit && out.length < CODENAME_WORDS) out.push(words[v % n]);
      }
    }
    buf.fill(0);
    return out.join(" ");
  }

  /**
   * Derive the mailbox from a codename: scrypt → token (32 B) + reply seed (32 B).
   * Returns { codename (normalized), token, tokenHash, replyIdentity, replyRecipient }.
   * `onProgress(fraction)` is forwarded to scrypt so the page can show progress; the
   * async scrypt yields to the event loop so the page stays responsive.
   */
  async function deriveMailbox(codename, kind, { onProgress } = {}) {
    if (!KINDS.includes(kind)) {
      throw new Error(`unknown reply identity kind: ${String(kind)}`);
    }
    const normalized = normalizeCodename(codename);
    const { N, r, p, dkLen, salt } = KDF_PARAMS;
    const opts = { N, r, p, dkLen, maxmem: 2 ** 26 };
    if (onProgress) opts.onProgress = onProgress;
    const out = await scryptAsync(utf8ToBytes(normalized), utf8ToBytes(salt), opts);
    const token = out.slice(0, 32);
    const seed = out.subarray(32, 64);
    const tokenHash = bytesToHex(sha256(concatBytes(utf8ToBytes(TOKEN_HASH_PREFIX), token)));
    const hrp = kind === "X25519" ? "AGE-SECRET-KEY-" : "AGE-SECRET-KEY-PQ-";
    const replyIdentity = bech32.encodeFromBytes(hrp, seed).toUpperCase();
    out.fill(0);
    const replyRecipient = await identityToRecipient(replyIdentity);
    return { codename: normalized, kind, token, tokenHash, replyIdentity, replyRecipient };
  }

  return Object.freeze({
    WORDS: words,
    CODENAME_WORDS,
    KDF_PARAMS,
    normalizeCodename,
    newCodename,
    deriveMailbox,
  });
}
