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

/**
 * Number of secret words in a codename (7 words of 7776 = 90.5 bits). The written codename
 * adds an 8th check word; both mirror app/crypto/codename.py (docs/codename.md) and
 * tests/vectors/codename-format.json, written by the Python side, pins the two together.
 */
export const CODENAME_WORDS = 7;
export const LIST_SIZE = 7776;
/** Check word = sum(CHECK_WEIGHTS[i] * index[i]) mod 7776; each weight is coprime to 7776. */
export const CHECK_WEIGHTS = Object.freeze([1, 5, 7, 11, 13, 17, 19]);
const GROUP_DIGITS = 4;

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
    /** Stable machine-readable reason: "count" | "word" | "number" | "check" | "type". */
    this.code = code;
  }
}

/** Arabic-Indic (U+0660..) and Persian (U+06F0..) digits -> ASCII; NFKC folds fullwidth. */
function asciiDigits(text) {
  return text.replace(/[\u0660-\u0669\u06f0-\u06f9]/gu, (d) =>
    String((d.codePointAt(0) & 0x0f) % 10),
  );
}

/** The check word's index for seven secret indices (app/crypto/codename.py check_index). */
export function checkIndex(secret) {
  let sum = 0;
  for (let i = 0; i < CODENAME_WORDS; i += 1) sum += CHECK_WEIGHTS[i] * secret[i];
  return sum % LIST_SIZE;
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

  const wordIndex = new Map(words.map((w, i) => [w, i]));

  /** Seven secret indices from 7 words, or 8 with a correct check word. */
  function checked(indices) {
    const secret = indices.slice(0, CODENAME_WORDS);
    if (indices.length === CODENAME_WORDS + 1 && indices[CODENAME_WORDS] !== checkIndex(secret)) {
      throw new CodenameError("One of the words is wrong.", "check");
    }
    return secret;
  }

  function fromNumbers(parts) {
    const digits = parts.join("");
    if (digits.length !== (CODENAME_WORDS + 1) * GROUP_DIGITS) {
      throw new CodenameError("A numeric codename has 8 groups of 4 digits.", "number");
    }
    const indices = [];
    for (let k = 0; k < digits.length; k += GROUP_DIGITS) {
      indices.push(Number(digits.slice(k, k + GROUP_DIGITS)));
    }
    if (indices.some((i) => i >= LIST_SIZE)) {
      throw new CodenameError("One of the number groups is not part of a codename.", "number");
    }
    return checked(indices);
  }

  /** Seven secret indices from a codename typed as words or numbers; throws CodenameError. */
  function parseCodename(input) {
    if (typeof input !== "string") {
      throw new CodenameError("The codename must be text.", "type");
    }
    const cleaned = asciiDigits(input.normalize("NFKC").toLowerCase());
    const parts = cleaned.split(SEPARATORS).filter((w) => w !== "");
    if (parts.length > 0 && parts.every((p) => /^[0-9]+$/.test(p))) return fromNumbers(parts);
    for (const w of parts) {
      if (!wordIndex.has(w)) {
        throw new CodenameError(`"${w}" is not one of the codename words. Check the spelling.`, "word");
      }
    }
    if (parts.length !== CODENAME_WORDS && parts.length !== CODENAME_WORDS + 1) {
      throw new CodenameError(`A codename has 8 words; this one has ${parts.length}.`, "count");
    }
    return checked(parts.map((w) => wordIndex.get(w)));
  }

  /** The KDF input: the seven secret words joined by one space (check word dropped). */
  function normalizeCodename(input) {
    return parseCodename(input)
      .map((i) => words[i])
      .join(" ");
  }

  /** The 8 indices as the witness writes them: 7 secret + the check word. */
  function writtenIndices(input) {
    const secret = parseCodename(input);
    return [...secret, checkIndex(secret)];
  }

  /** The codename in words, check word included. */
  function codenameWords(input) {
    return writtenIndices(input)
      .map((i) => words[i])
      .join(" ");
  }

  /** The same codename as 8 groups of 4 digits (0000-7775). */
  function codenameNumbers(input) {
    return writtenIndices(input)
      .map((i) => String(i).padStart(GROUP_DIGITS, "0"))
      .join(" ");
  }

  /**
   * A fresh codename: 7 words drawn uniformly with crypto.getRandomValues and
   * rejection sampling (62208 = 8 * 7776 is the largest multiple of 7776 below 2**16),
   * so no word is more likely than another; then the check word.
   */
  function newCodename() {
    const n = words.length;
    const limit = 65536 - (65536 % n);
    const out = [];
    const buf = new Uint16Array(16);
    while (out.length < CODENAME_WORDS) {
      crypto.getRandomValues(buf);
      for (const v of buf) {
        if (v < limit && out.length < CODENAME_WORDS) out.push(v % n);
      }
    }
    buf.fill(0);
    out.push(checkIndex(out));
    return out.map((i) => words[i]).join(" ");
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
    codenameWords,
    codenameNumbers,
    newCodename,
    deriveMailbox,
  });
}
