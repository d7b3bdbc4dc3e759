/* Guwah witness-site bundle. Built from app/web/js with tests/js/build.mjs;
   dependencies pinned in package-lock.json (age-encryption, @noble, @scure: MIT).
   Rebuild and compare: pytest tests/test_bundle_reproducible.py */
var __defProp = Object.defineProperty;
var __export = (target, all) => {
  for (var name in all)
    __defProp(target, name, { get: all[name], enumerable: true });
};

// node_modules/@scure/base/index.js
/*! scure-base - MIT License (c) 2022 Paul Miller (paulmillr.com) */
var freeze = (fn) => Object.freeze(fn());
function isBytes(a) {
  return a instanceof Uint8Array || ArrayBuffer.isView(a) && a.constructor.name === "Uint8Array" && "BYTES_PER_ELEMENT" in a && a.BYTES_PER_ELEMENT === 1;
}
function abytes(b) {
  if (!isBytes(b))
    throw new TypeError("Uint8Array expected");
}
function isArrayOf(isString, arr) {
  if (!Array.isArray(arr))
    return false;
  if (arr.length === 0)
    return true;
  if (isString) {
    return arr.every((item) => typeof item === "string");
  } else {
    return arr.every((item) => Number.isSafeInteger(item));
  }
}
function afn(input) {
  if (typeof input !== "function")
    throw new TypeError("function expected");
  return true;
}
function astr(label, input) {
  if (typeof input !== "string")
    throw new TypeError(`${label}: string expected`);
  return true;
}
function anumber(n, title = "number") {
  if (typeof n !== "number")
    throw new TypeError(`${title}: expected number, got ${typeof n}`);
  if (!Number.isSafeInteger(n))
    throw new RangeError(`${title}: expected safe integer, got ${n}`);
}
function anumArr(label, input) {
  if (!isArrayOf(false, input))
    throw new TypeError(`${label}: array of numbers expected`);
}
function chain(...args) {
  const id = (a) => a;
  const wrap = (a, b) => (c) => a(b(c));
  const encode2 = args.map((x) => x.encode).reduceRight(wrap, id);
  const decode2 = args.map((x) => x.decode).reduce(wrap, id);
  return { encode: encode2, decode: decode2 };
}
var powers = /* @__PURE__ */ (() => {
  let res = [];
  for (let i = 0; i < 40; i++)
    res.push(2 ** i);
  return res;
})();
function u8ToNumArr(u8, len = u8.length) {
  const res = new Array(len);
  for (let i = 0; i < len; i++)
    res[i] = u8[i];
  return res;
}
var asciiDecoder = /* @__PURE__ */ (() => {
  try {
    const decoder = new TextDecoder();
    return decoder.decode(Uint8Array.of(65, 48, 43, 127)) === "A0+" ? decoder : void 0;
  } catch (e) {
    return void 0;
  }
})();
var B2S_CHUNK = 8192;
function charcodesToString(codes) {
  const len = codes.length;
  if (asciiDecoder !== void 0 && len >= 12)
    return asciiDecoder.decode(codes);
  if (len <= B2S_CHUNK)
    return String.fromCharCode.apply(null, codes);
  let res = "";
  for (let i = 0; i < len; i += B2S_CHUNK)
    res += String.fromCharCode.apply(null, codes.subarray(i, i + B2S_CHUNK));
  return res;
}
function radix2(bits) {
  anumber(bits);
  if (bits <= 0 || bits > 8)
    throw new RangeError("radix2: bits should be in (0..8]");
  const mask = powers[bits] - 1;
  return {
    encode: (bytes) => {
      abytes(bytes);
      const len = bytes.length;
      const res = new Uint8Array(Math.ceil(len * 8 / bits));
      let carry = 0;
      let pos = 0;
      let j = 0;
      for (let i = 0; i < len; ) {
        if (i + 2 < len) {
          carry = carry << 24 | bytes[i] << 16 | bytes[i + 1] << 8 | bytes[i + 2];
          pos += 24;
          i += 3;
        } else {
          carry = (carry << 8 | bytes[i]) & 65535;
          pos += 8;
          i++;
        }
        for (; ; ) {
          pos -= bits;
          res[j++] = carry >> pos & mask;
          if (pos < bits)
            break;
        }
      }
      if (pos > 0)
        res[j] = carry << bits - pos & mask;
      return res;
    },
    decode: (digits) => {
      const len = digits.length;
      const res = new Uint8Array(Math.floor(len * bits / 8));
      let carry = 0;
      let pos = 0;
      let j = 0;
      for (let i = 0; i < len; i++) {
        carry = (carry << bits | digits[i]) & 65535;
        pos += bits;
        for (; pos >= 8; pos -= 8)
          res[j++] = carry >> pos - 8 & 255;
      }
      carry = carry << 8 - pos & 255;
      if (pos >= bits)
        throw new Error("Excess padding");
      if (carry > 0)
        throw new Error(`Non-zero padding: ${carry}`);
      return res;
    }
  };
}
function alphabet(letters, aliases) {
  const len = letters.length;
  if (len > 128)
    throw new Error("alphabet: max 128 letters");
  const encTable = new Uint8Array(len);
  const decTable = new Int8Array(128).fill(-1);
  for (let i = 0; i < len; i++) {
    const code = letters.charCodeAt(i);
    if (letters.codePointAt(i) !== code || code > 127)
      throw new Error("alphabet: single-char ASCII letters only");
    encTable[i] = code;
    decTable[code] = i;
  }
  if (aliases !== void 0) {
    for (const alias of Object.keys(aliases)) {
      const code = alias.charCodeAt(0);
      const target = decTable[aliases[alias].charCodeAt(0)];
      if (alias.length !== 1 || code > 127 || target === void 0 || target === -1)
        throw new Error(`alphabet: invalid alias ${alias}`);
      decTable[code] = target;
    }
  }
  return {
    encode: (digits) => {
      const codes = new Uint8Array(digits.length);
      for (let i = 0; i < digits.length; i++) {
        const d = digits[i];
        const code = encTable[d];
        if (code === void 0)
          throw new Error(`alphabet.encode: invalid digit ${d}`);
        codes[i] = code;
      }
      return charcodesToString(codes);
    },
    decode: (input) => {
      astr("decode", input);
      const slen = input.length;
      const digits = new Uint8Array(slen);
      for (let i = 0; i < slen; i++) {
        const code = input.charCodeAt(i);
        const digit = code < 128 ? decTable[code] : -1;
        if (digit === -1)
          throw new Error(`Unknown letter "${input[i]}". Allowed: ${letters}`);
        digits[i] = digit;
      }
      return digits;
    }
  };
}
function padding(bits, chr = "=") {
  anumber(bits);
  astr("padding", chr);
  return {
    encode(data) {
      while (data.length * bits % 8)
        data += chr;
      return data;
    },
    decode(input) {
      astr("decode", input);
      let end = input.length;
      if (end * bits % 8)
        throw new Error("padding: invalid length");
      for (; end > 0 && input[end - 1] === chr; end--) {
        const byte = (end - 1) * bits;
        if (byte % 8 === 0)
          throw new Error("padding: excess padding");
      }
      return input.slice(0, end);
    }
  };
}
function unsafeWrapper(fn) {
  afn(fn);
  return function(...args) {
    try {
      return fn.apply(null, args);
    } catch (e) {
    }
  };
}
var hasBase64Builtin = /* @__PURE__ */ (() => typeof Uint8Array.from([]).toBase64 === "function" && typeof Uint8Array.fromBase64 === "function")();
var ASCII_WHITESPACE = /[\t\n\f\r ]/;
var decodeBase64Builtin = (s, isUrl) => {
  astr("base64", s);
  const alphabet2 = isUrl ? "base64url" : "base64";
  if (s.length > 0 && ASCII_WHITESPACE.test(s))
    throw new Error("invalid base64");
  return Uint8Array.fromBase64(s, { alphabet: alphabet2, lastChunkHandling: "strict" });
};
var base64Fallback = /* @__PURE__ */ freeze(() => chain(radix2(6), alphabet("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"), padding(6)));
var base64 = /* @__PURE__ */ freeze(() => hasBase64Builtin ? {
  encode(b) {
    abytes(b);
    return b.toBase64();
  },
  decode(s) {
    return decodeBase64Builtin(s, false);
  }
} : base64Fallback);
var base64nopad = /* @__PURE__ */ freeze(() => chain(radix2(6), alphabet("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")));
var BECH_ALPHABET = /* @__PURE__ */ alphabet("qpzry9x8gf2tvdw0s3jn54khce6mua7l");
var BECH_UPPERCASE_PRINTABLE = /^[\x21-\x60\x7b-\x7e]+$/;
function assertBech32Printable(label, value) {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 33 || c > 126)
      throw new Error(`${label}: printable ASCII expected`);
  }
}
function wordsToU8(words) {
  const len = words.length;
  const res = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    const w = words[i];
    if (w < 0 || w >= 32)
      throw new Error(`alphabet.encode: invalid digit ${w}`);
    res[i] = w;
  }
  return res;
}
var POLYMOD_GENERATORS = [996825010, 642813549, 513874426, 1027748829, 705979059];
function bech32Polymod(pre) {
  const b = pre >> 25;
  let chk = (pre & 33554431) << 5;
  for (let i = 0; i < POLYMOD_GENERATORS.length; i++) {
    if ((b >> i & 1) === 1)
      chk ^= POLYMOD_GENERATORS[i];
  }
  return chk;
}
function bechChecksum(prefix, words, encodingConst = 1) {
  const len = prefix.length;
  let chk = 1;
  for (let i = 0; i < len; i++) {
    const c = prefix.charCodeAt(i);
    if (c < 33 || c > 126)
      throw new Error(`Invalid prefix (${prefix})`);
    chk = bech32Polymod(chk) ^ c >> 5;
  }
  chk = bech32Polymod(chk);
  for (let i = 0; i < len; i++)
    chk = bech32Polymod(chk) ^ prefix.charCodeAt(i) & 31;
  for (let v of words)
    chk = bech32Polymod(chk) ^ v;
  for (let i = 0; i < 6; i++)
    chk = bech32Polymod(chk);
  chk ^= encodingConst;
  const sum = new Uint8Array(6);
  for (let i = 0; i < 6; i++)
    sum[i] = chk >>> 5 * (5 - i) & 31;
  return BECH_ALPHABET.encode(sum);
}
function genBech32(encoding) {
  const ENCODING_CONST = encoding === "bech32" ? 1 : 734539939;
  const _words = radix2(5);
  const toWords = (from) => {
    abytes(from);
    const len = from.length;
    const res = new Array(Math.ceil(len * 8 / 5));
    let carry = 0;
    let pos = 0;
    let j = 0;
    for (let i = 0; i < len; i++) {
      carry = carry << 8 | from[i];
      pos += 8;
      for (; pos >= 5; pos -= 5)
        res[j++] = carry >> pos - 5 & 31;
    }
    if (pos > 0)
      res[j] = carry << 5 - pos & 31;
    return res;
  };
  const fromWords = (to) => {
    anumArr("radix2.decode", to);
    const len = to.length;
    const digits = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      const w = to[i];
      if (w < 0 || w >= 32)
        throw new Error(`convertRadix2: invalid word=${w}`);
      digits[i] = w;
    }
    return _words.decode(digits);
  };
  const fromWordsUnsafe = unsafeWrapper(fromWords);
  function encode2(prefix, words, limit = 90) {
    astr("bech32.encode prefix", prefix);
    if (limit !== false)
      anumber(limit, "limit");
    if (isBytes(words))
      words = u8ToNumArr(words);
    anumArr("bech32.encode", words);
    const plen = prefix.length;
    if (plen === 0)
      throw new TypeError(`Invalid prefix length ${plen}`);
    const actualLength = plen + 7 + words.length;
    if (limit !== false && actualLength > limit)
      throw new TypeError(`Length ${actualLength} exceeds limit ${limit}`);
    assertBech32Printable("bech32.encode prefix", prefix);
    const lowered = prefix.toLowerCase();
    const sum = bechChecksum(lowered, words, ENCODING_CONST);
    return `${lowered}1${BECH_ALPHABET.encode(wordsToU8(words))}${sum}`;
  }
  function decode2(str, limit = 90) {
    astr("bech32.decode input", str);
    if (limit !== false)
      anumber(limit, "limit");
    const slen = str.length;
    if (slen < 8 || limit !== false && slen > limit)
      throw new TypeError(`invalid string length ${slen}, expected (8..${limit})`);
    const lowered = str.toLowerCase();
    if (str !== lowered) {
      if (!BECH_UPPERCASE_PRINTABLE.test(str)) {
        assertBech32Printable("bech32.decode input", str);
        throw new Error(`mixed-case string not allowed`);
      }
    }
    const sepIndex = lowered.lastIndexOf("1");
    if (sepIndex === 0 || sepIndex === -1)
      throw new Error(`invalid separator "1"`);
    const prefix = lowered.slice(0, sepIndex);
    const data = lowered.slice(sepIndex + 1);
    if (data.length < 6)
      throw new Error("invalid data length");
    const digits = BECH_ALPHABET.decode(data);
    const words = u8ToNumArr(digits, digits.length - 6);
    const sum = bechChecksum(prefix, words, ENCODING_CONST);
    if (!data.endsWith(sum))
      throw new Error(`Invalid checksum in ${str}`);
    return { prefix, words };
  }
  const decodeUnsafe = unsafeWrapper(decode2);
  function decodeToBytes(str, limit = 90) {
    const { prefix, words } = decode2(str, limit);
    return {
      prefix,
      words,
      bytes: fromWords(words)
    };
  }
  function encodeFromBytes(prefix, bytes) {
    return encode2(prefix, toWords(bytes));
  }
  return {
    encode: encode2,
    decode: decode2,
    encodeFromBytes,
    decodeToBytes,
    decodeUnsafe,
    fromWords,
    fromWordsUnsafe,
    toWords
  };
}
var bech32 = /* @__PURE__ */ freeze(() => genBech32("bech32"));

// node_modules/@noble/hashes/utils.js
function isBytes2(a) {
  return a instanceof Uint8Array || ArrayBuffer.isView(a) && a.constructor.name === "Uint8Array" && "BYTES_PER_ELEMENT" in a && a.BYTES_PER_ELEMENT === 1;
}
var atitle = (title) => title ? `"${title}" ` : "";
function anumber2(n, title = "") {
  if (typeof n !== "number")
    throw new TypeError(atitle(title) + "expected number, got " + typeof n);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new RangeError(atitle(title) + "expected integer >= 0, got " + n);
  return n;
}
function abytes2(value, length, title = "") {
  if (isBytes2(value) && (length === void 0 || value.length === length))
    return value;
  if (length !== void 0)
    anumber2(length, "length");
  const bytes = isBytes2(value);
  const ofLen = length !== void 0 ? ` of length ${length}` : "";
  const got = bytes ? `length=${value.length}` : `type=${typeof value}`;
  const message = atitle(title) + "expected Uint8Array" + ofLen + ", got " + got;
  if (!bytes)
    throw new TypeError(message);
  throw new RangeError(message);
}
function ahash(h) {
  if (typeof h !== "function" || typeof h.create !== "function")
    throw new TypeError("expected hash wrapped by utils.createHasher");
  anumber2(h.outputLen);
  anumber2(h.blockLen);
  if (h.outputLen < 1 || h.blockLen < 1)
    throw new Error("hash blockLen / outputLen must be >= 1");
}
var aobject = (value, label) => {
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new TypeError((label === "object" ? "" : `"${label}" `) + "expected object, got type=" + typeof value);
};
var aopts = (value, label) => {
  aobject(value, label);
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null)
    throw new TypeError(`"${label}" expected plain object`);
  if (Object.hasOwn(value, "__proto__"))
    throw new TypeError(`"${label}.__proto__" is not allowed`);
};
function aexists(instance, checkFinished = true) {
  if (instance.destroyed)
    throw new Error("hash was destroyed");
  if (checkFinished && instance.finished)
    throw new Error("digest() was already called");
}
function aoutput(out, instance) {
  abytes2(out, void 0, "output");
  const min = instance.outputLen;
  if (!(out.length >= min)) {
    throw new RangeError('"output" expected length >= ' + min);
  }
}
function u32(arr) {
  return new Uint32Array(arr.buffer, arr.byteOffset, Math.floor(arr.byteLength / 4));
}
function clean(...arrays) {
  for (let i = 0; i < arrays.length; i++) {
    arrays[i].fill(0);
  }
}
function createView(arr) {
  return new DataView(arr.buffer, arr.byteOffset, arr.byteLength);
}
function rotr(word, shift) {
  return word << 32 - shift | word >>> shift;
}
function rotl(word, shift) {
  return word << shift | word >>> 32 - shift >>> 0;
}
var isLE = /* @__PURE__ */ (() => new Uint8Array(new Uint32Array([287454020]).buffer)[0] === 68)();
function byteSwap(word) {
  return word << 24 & 4278190080 | word << 8 & 16711680 | word >>> 8 & 65280 | word >>> 24 & 255;
}
function byteSwap32(arr) {
  for (let i = 0; i < arr.length; i++) {
    arr[i] = byteSwap(arr[i]);
  }
  return arr;
}
var swap32IfBE = isLE ? (u) => u : byteSwap32;
var hasHexBuiltin = /* @__PURE__ */ (() => (
  // @ts-ignore
  typeof Uint8Array.from([]).toHex === "function" && typeof Uint8Array.fromHex === "function"
))();
var hexes = /* @__PURE__ */ Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
function bytesToHex(bytes) {
  abytes2(bytes);
  if (hasHexBuiltin)
    return bytes.toHex();
  let hex = "";
  for (let i = 0; i < bytes.length; i++) {
    hex += hexes[bytes[i]];
  }
  return hex;
}
function asciiToBase16(ch) {
  return ch >= 48 && ch <= 57 ? ch - 48 : ch >= 65 && ch <= 70 ? ch - (65 - 10) : ch >= 97 && ch <= 102 ? ch - (97 - 10) : void 0;
}
function hexToBytes(hex) {
  if (typeof hex !== "string")
    throw new TypeError("hex string expected, got " + typeof hex);
  if (hasHexBuiltin) {
    try {
      return Uint8Array.fromHex(hex);
    } catch (error) {
      if (error instanceof SyntaxError)
        throw new RangeError(error.message);
      throw error;
    }
  }
  const hl = hex.length;
  const al = hl / 2;
  if (hl % 2)
    throw new RangeError("hex string expected, got unpadded hex of length " + hl);
  const array = new Uint8Array(al);
  for (let ai = 0, hi = 0; ai < al; ai++, hi += 2) {
    const n1 = asciiToBase16(hex.charCodeAt(hi));
    const n2 = asciiToBase16(hex.charCodeAt(hi + 1));
    if (n1 === void 0 || n2 === void 0) {
      const char = hex[hi] + hex[hi + 1];
      throw new RangeError('hex string expected, got non-hex character "' + char + '" at index ' + hi);
    }
    array[ai] = n1 * 16 + n2;
  }
  return array;
}
function nextTick(onReject) {
  const host = globalThis;
  if (typeof host.scheduler?.yield === "function") {
    const promise = host.scheduler.yield();
    if (onReject)
      promise.catch(onReject);
    return promise;
  }
  return new Promise((resolve) => host.setTimeout(resolve, 0));
}
async function asyncLoop(iters, tick, cb, onReject) {
  anumber2(iters, "iters");
  anumber2(tick, "tick");
  if (typeof cb !== "function")
    throw new TypeError("callback must be a function");
  let ts = Date.now();
  for (let i = 0; i < iters; i++) {
    cb(i);
    const diff = Date.now() - ts;
    if (diff >= 0 && diff < tick)
      continue;
    await nextTick(onReject);
    ts = Date.now();
  }
}
function utf8ToBytes(str) {
  if (typeof str !== "string")
    throw new TypeError("string expected");
  const encoded = new TextEncoder().encode(str);
  try {
    return new Uint8Array(encoded);
  } finally {
    clean(encoded);
  }
}
function kdfInputToBytes(data, errorTitle = "") {
  if (typeof data === "string")
    return utf8ToBytes(data);
  return abytes2(data, void 0, errorTitle);
}
function concatBytes(...arrays) {
  let sum = 0;
  for (let i = 0; i < arrays.length; i++) {
    const a = arrays[i];
    abytes2(a);
    sum += a.length;
  }
  const res = new Uint8Array(sum);
  for (let i = 0, pad = 0; i < arrays.length; i++) {
    const a = arrays[i];
    res.set(a, pad);
    pad += a.length;
  }
  return res;
}
function checkOpts(defaults, opts2, title = "opts") {
  aopts(defaults, "defaults");
  if (opts2 !== void 0)
    aopts(opts2, title);
  const merged = Object.assign(/* @__PURE__ */ Object.create(null), defaults, opts2);
  return merged;
}
function createHasher(hashCons, info = {}) {
  if (typeof hashCons !== "function")
    throw new TypeError('"hashCons" expected function, got type=' + typeof hashCons);
  info = checkOpts({}, info, "info");
  const hashC = (msg2, opts2) => hashCons(opts2).update(msg2).digest();
  const tmp = hashCons(void 0);
  hashC.outputLen = tmp.outputLen;
  hashC.blockLen = tmp.blockLen;
  hashC.canXOF = tmp.canXOF;
  hashC.create = (opts2) => hashCons(opts2);
  Object.assign(hashC, info);
  return Object.freeze(hashC);
}
function randomBytes(bytesLength = 32) {
  anumber2(bytesLength, "bytesLength");
  const cr = typeof globalThis === "object" ? globalThis.crypto : null;
  if (typeof cr?.getRandomValues !== "function")
    throw new Error("crypto.getRandomValues must be defined");
  if (bytesLength > 65536)
    throw new RangeError(`"bytesLength" expected <= 65536, got ${bytesLength}`);
  return cr.getRandomValues(new Uint8Array(bytesLength));
}
var oidNist = (suffix) => ({
  // Current NIST hashAlgs suffixes used here fit in one DER subidentifier octet.
  // Larger suffix values would need base-128 OID encoding and a different length byte.
  oid: Uint8Array.from([6, 9, 96, 134, 72, 1, 101, 3, 4, 2, suffix])
});

// node_modules/@noble/hashes/hmac.js
var _HMAC = class {
  oHash;
  iHash;
  blockLen;
  outputLen;
  canXOF = false;
  finished = false;
  destroyed = false;
  constructor(hash, key) {
    ahash(hash);
    abytes2(key, void 0, "key");
    this.iHash = hash.create();
    if (typeof this.iHash.update !== "function")
      throw new Error("expected Hash instance");
    this.blockLen = this.iHash.blockLen;
    this.outputLen = this.iHash.outputLen;
    const blockLen = this.blockLen;
    const pad = new Uint8Array(blockLen);
    pad.set(key.length > blockLen ? hash.create().update(key).digest() : key);
    for (let i = 0; i < pad.length; i++)
      pad[i] ^= 54;
    this.iHash.update(pad);
    this.oHash = hash.create();
    for (let i = 0; i < pad.length; i++)
      pad[i] ^= 54 ^ 92;
    this.oHash.update(pad);
    clean(pad);
  }
  update(buf) {
    aexists(this);
    this.iHash.update(buf);
    return this;
  }
  digestInto(out) {
    aexists(this);
    aoutput(out, this);
    this.finished = true;
    const buf = out.subarray(0, this.outputLen);
    this.iHash.digestInto(buf);
    this.oHash.update(buf);
    this.oHash.digestInto(buf);
    this.destroy();
  }
  digest() {
    const out = new Uint8Array(this.oHash.outputLen);
    this.digestInto(out);
    return out;
  }
  _cloneInto(to) {
    to ||= Object.create(Object.getPrototypeOf(this), {});
    const { oHash, iHash, finished, destroyed, blockLen, outputLen, canXOF } = this;
    to = to;
    to.finished = finished;
    to.destroyed = destroyed;
    to.blockLen = blockLen;
    to.outputLen = outputLen;
    to.canXOF = canXOF;
    to.oHash = oHash._cloneInto(to.oHash);
    to.iHash = iHash._cloneInto(to.iHash);
    return to;
  }
  clone() {
    return this._cloneInto();
  }
  destroy() {
    this.destroyed = true;
    this.oHash.destroy();
    this.iHash.destroy();
  }
};
var hmac = /* @__PURE__ */ (() => {
  const hmac_ = ((hash, key, message) => new _HMAC(hash, key).update(message).digest());
  hmac_.create = (hash, key) => new _HMAC(hash, key);
  return hmac_;
})();

// node_modules/@noble/hashes/hkdf.js
function extract(hash, ikm, salt) {
  ahash(hash);
  if (salt === void 0)
    salt = new Uint8Array(hash.outputLen);
  return hmac(hash, salt, ikm);
}
var HKDF_COUNTER = /* @__PURE__ */ Uint8Array.of(0);
var EMPTY_BUFFER = /* @__PURE__ */ Uint8Array.of();
function expand(hash, prk, info, length = 32, _recycled) {
  ahash(hash);
  anumber2(length, "length");
  abytes2(prk, void 0, "prk");
  const olen = hash.outputLen;
  if (prk.length < olen)
    throw new Error('"prk" must be at least HashLen octets');
  if (length > 255 * olen)
    throw new Error("Length must be <= 255*HashLen");
  const blocks = Math.ceil(length / olen);
  if (info === void 0)
    info = EMPTY_BUFFER;
  else
    abytes2(info, void 0, "info");
  if (!blocks) {
    if (_recycled)
      clean(prk);
    return new Uint8Array();
  }
  const okm = _recycled && blocks === 1 ? prk : new Uint8Array(blocks * olen);
  const { iHash, oHash } = hmac.create(hash, prk);
  const T = _recycled ? prk : new Uint8Array(olen);
  const worker = blocks > 1 ? _recycled?.iHash || hash.create() : void 0;
  for (let counter = 0; counter < blocks - 1; counter++) {
    HKDF_COUNTER[0] = counter + 1;
    const iWork = iHash._cloneInto(worker);
    if (counter)
      iWork.update(T);
    iWork.update(info).update(HKDF_COUNTER).digestInto(T);
    oHash._cloneInto(worker).update(T).digestInto(T);
    okm.set(T, olen * counter);
  }
  HKDF_COUNTER[0] = blocks;
  if (blocks > 1)
    iHash.update(T);
  iHash.update(info).update(HKDF_COUNTER).digestInto(T);
  oHash.update(T).digestInto(T);
  okm.set(T, olen * (blocks - 1));
  iHash.destroy();
  oHash.destroy();
  worker?.destroy();
  if (T !== okm)
    clean(T);
  clean(HKDF_COUNTER);
  if (length === okm.length)
    return okm;
  const res = okm.slice(0, length);
  clean(okm);
  return res;
}
var hkdf = (hash, ikm, salt, info, length) => {
  ahash(hash);
  if (salt === void 0)
    salt = new Uint8Array(hash.outputLen);
  const HMAC = hmac.create(hash, salt).update(ikm);
  return expand(hash, HMAC.digest(), info, length, HMAC);
};

// node_modules/@noble/hashes/_u64.js
var fromNumH = (n) => n / 2 ** 32 | 0;
var fromNumL = (n) => n >>> 0;
function setU64FromNum(view, byteOffset, n, isLE4) {
  const h = fromNumH(n);
  const l = fromNumL(n);
  view.setUint32(byteOffset, isLE4 ? l : h, isLE4);
  view.setUint32(byteOffset + 4, isLE4 ? h : l, isLE4);
}

// node_modules/@noble/hashes/_md.js
function Chi(a, b, c) {
  return a & b ^ ~a & c;
}
function Maj(a, b, c) {
  return a & b ^ a & c ^ b & c;
}
var HashMD = class {
  blockLen;
  outputLen;
  canXOF = false;
  padOffset;
  isLE;
  // For partial updates less than block size
  buffer;
  view;
  finished = false;
  length = 0;
  pos = 0;
  destroyed = false;
  constructor(blockLen, outputLen, padOffset, isLE4) {
    this.blockLen = blockLen;
    this.outputLen = outputLen;
    this.padOffset = padOffset;
    this.isLE = isLE4;
    this.buffer = new Uint8Array(blockLen);
    this.view = createView(this.buffer);
  }
  update(data) {
    aexists(this);
    abytes2(data);
    const { view, buffer, blockLen } = this;
    const len = data.length;
    let processed = false;
    for (let pos = 0; pos < len; ) {
      const take = Math.min(blockLen - this.pos, len - pos);
      if (take === blockLen) {
        const dataView = createView(data);
        for (; blockLen <= len - pos; pos += blockLen)
          this.process(dataView, pos);
        processed = true;
        continue;
      }
      buffer.set(pos === 0 && take === len ? data : data.subarray(pos, pos + take), this.pos);
      this.pos += take;
      pos += take;
      if (this.pos === blockLen) {
        this.process(view, 0);
        this.pos = 0;
        processed = true;
      }
    }
    this.length += data.length;
    if (processed)
      this.roundClean();
    return this;
  }
  digestInto(out) {
    aexists(this);
    aoutput(out, this);
    this.finished = true;
    const { buffer, view, blockLen, isLE: isLE4 } = this;
    let { pos } = this;
    buffer[pos++] = 128;
    buffer.fill(0, pos);
    if (this.padOffset > blockLen - pos) {
      this.process(view, 0);
      buffer.fill(0);
    }
    setU64FromNum(view, blockLen - 8, this.length * 8, isLE4);
    this.process(view, 0);
    this.roundClean();
    const oview = out === buffer ? view : createView(out);
    const len = this.outputLen;
    const outLen = len / 4;
    const state = this.get();
    if (len % 4 || outLen > state.length)
      throw new Error("invalid outputLen");
    for (let i = 0; i < outLen; i++)
      oview.setUint32(4 * i, state[i], isLE4);
  }
  digest() {
    const { buffer, outputLen } = this;
    this.digestInto(buffer);
    const res = buffer.slice(0, outputLen);
    this.destroy();
    return res;
  }
  _cloneIntoMeta(to) {
    const { buffer, length, finished, destroyed, pos } = this;
    to.destroyed = destroyed;
    to.finished = finished;
    to.length = length;
    to.pos = pos;
    if (pos)
      to.buffer.set(buffer);
    return to;
  }
  clone() {
    return this._cloneInto();
  }
};
var SHA256_IV = /* @__PURE__ */ Uint32Array.from([
  1779033703,
  3144134277,
  1013904242,
  2773480762,
  1359893119,
  2600822924,
  528734635,
  1541459225
]);

// node_modules/@noble/hashes/sha2.js
var SHA256_K = /* @__PURE__ */ Uint32Array.from([
  1116352408,
  1899447441,
  3049323471,
  3921009573,
  961987163,
  1508970993,
  2453635748,
  2870763221,
  3624381080,
  310598401,
  607225278,
  1426881987,
  1925078388,
  2162078206,
  2614888103,
  3248222580,
  3835390401,
  4022224774,
  264347078,
  604807628,
  770255983,
  1249150122,
  1555081692,
  1996064986,
  2554220882,
  2821834349,
  2952996808,
  3210313671,
  3336571891,
  3584528711,
  113926993,
  338241895,
  666307205,
  773529912,
  1294757372,
  1396182291,
  1695183700,
  1986661051,
  2177026350,
  2456956037,
  2730485921,
  2820302411,
  3259730800,
  3345764771,
  3516065817,
  3600352804,
  4094571909,
  275423344,
  430227734,
  506948616,
  659060556,
  883997877,
  958139571,
  1322822218,
  1537002063,
  1747873779,
  1955562222,
  2024104815,
  2227730452,
  2361852424,
  2428436474,
  2756734187,
  3204031479,
  3329325298
]);
var SHA256_W = /* @__PURE__ */ new Uint32Array(64);
var SHA2_32B = class extends HashMD {
  // We cannot use array here since array allows indexing by variable
  // which means optimizer/compiler cannot use registers.
  // Numeric initializers matter: starting the fields as `undefined` changes
  // V8's field representation and makes sha256 3x slower (measured).
  A = 0;
  B = 0;
  C = 0;
  D = 0;
  E = 0;
  F = 0;
  G = 0;
  H = 0;
  constructor(outputLen, IV) {
    super(64, outputLen, 8, false);
    this.A = IV[0] | 0;
    this.B = IV[1] | 0;
    this.C = IV[2] | 0;
    this.D = IV[3] | 0;
    this.E = IV[4] | 0;
    this.F = IV[5] | 0;
    this.G = IV[6] | 0;
    this.H = IV[7] | 0;
  }
  get() {
    const { A, B, C, D, E, F: F2, G, H } = this;
    return [A, B, C, D, E, F2, G, H];
  }
  // prettier-ignore
  set(A, B, C, D, E, F2, G, H) {
    this.A = A | 0;
    this.B = B | 0;
    this.C = C | 0;
    this.D = D | 0;
    this.E = E | 0;
    this.F = F2 | 0;
    this.G = G | 0;
    this.H = H | 0;
  }
  _cloneInto(to) {
    (to ||= new this.constructor()).set(...this.get());
    return this._cloneIntoMeta(to);
  }
  process(view, offset) {
    for (let i = 0; i < 16; i++, offset += 4)
      SHA256_W[i] = view.getUint32(offset, false);
    for (let i = 16; i < 64; i++) {
      const W15 = SHA256_W[i - 15];
      const W2 = SHA256_W[i - 2];
      const s0 = rotr(W15, 7) ^ rotr(W15, 18) ^ W15 >>> 3;
      const s1 = rotr(W2, 17) ^ rotr(W2, 19) ^ W2 >>> 10;
      SHA256_W[i] = s1 + SHA256_W[i - 7] + s0 + SHA256_W[i - 16] | 0;
    }
    let { A, B, C, D, E, F: F2, G, H } = this;
    for (let i = 0; i < 64; i++) {
      const sigma1 = rotr(E, 6) ^ rotr(E, 11) ^ rotr(E, 25);
      const T1 = H + sigma1 + Chi(E, F2, G) + SHA256_K[i] + SHA256_W[i] | 0;
      const sigma0 = rotr(A, 2) ^ rotr(A, 13) ^ rotr(A, 22);
      const T2 = sigma0 + Maj(A, B, C) | 0;
      H = G;
      G = F2;
      F2 = E;
      E = D + T1 | 0;
      D = C;
      C = B;
      B = A;
      A = T1 + T2 | 0;
    }
    A = A + this.A | 0;
    B = B + this.B | 0;
    C = C + this.C | 0;
    D = D + this.D | 0;
    E = E + this.E | 0;
    F2 = F2 + this.F | 0;
    G = G + this.G | 0;
    H = H + this.H | 0;
    this.set(A, B, C, D, E, F2, G, H);
  }
  roundClean() {
    clean(SHA256_W);
  }
  destroy() {
    this.destroyed = true;
    this.set(0, 0, 0, 0, 0, 0, 0, 0);
    clean(this.buffer);
  }
};
var _SHA256 = class extends SHA2_32B {
  constructor() {
    super(32, SHA256_IV);
  }
};
var sha256 = /* @__PURE__ */ createHasher(
  () => new _SHA256(),
  /* @__PURE__ */ oidNist(1)
);

// node_modules/@noble/hashes/pbkdf2.js
function pbkdf2Init(hash, _password, _salt, _opts) {
  ahash(hash);
  const opts2 = checkOpts({ dkLen: 32, asyncTick: 10 }, _opts);
  const { c, dkLen, asyncTick } = opts2;
  anumber2(c, "c");
  anumber2(dkLen, "dkLen");
  anumber2(asyncTick, "asyncTick");
  if (c < 1)
    throw new Error('"c" (iterations) must be >= 1');
  if (dkLen < 1)
    throw new Error('"dkLen" must be >= 1');
  if (dkLen > (2 ** 32 - 1) * hash.outputLen)
    throw new Error("derived key too long");
  const p = kdfInputToBytes(_password, "password");
  try {
    const s = kdfInputToBytes(_salt, "salt");
    try {
      const DK = new Uint8Array(dkLen);
      const { iHash, oHash, outputLen } = hmac.create(hash, p);
      const u = new Uint8Array(outputLen);
      const eng = pbkdf2Engine(iHash, oHash, s, u);
      return { c, dkLen, asyncTick, DK, outputLen, eng };
    } finally {
      if (typeof _salt === "string")
        clean(s);
    }
  } finally {
    if (typeof _password === "string")
      clean(p);
  }
}
function pbkdf2Engine(iHash, oHash, salt, u) {
  const counter = new Uint8Array(4);
  const view = createView(counter);
  const salted = iHash._cloneInto().update(salt);
  const work = oHash._cloneInto();
  const iClone = iHash._cloneInto;
  const oClone = oHash._cloneInto;
  return {
    u1: (ti, Ti) => {
      view.setInt32(0, ti, false);
      salted._cloneInto(work).update(counter).digestInto(u);
      oHash._cloneInto(work).update(u).digestInto(u);
      Ti.set(u.subarray(0, Ti.length));
    },
    // Whole `F` inner loop for the sync variant: one optimized function owns the hot loop.
    rounds: (c, Ti) => {
      for (let ui = 1; ui < c; ui++) {
        iClone.call(iHash, work).update(u).digestInto(u);
        oClone.call(oHash, work).update(u).digestInto(u);
        for (let i = 0; i < Ti.length; i++)
          Ti[i] ^= u[i];
      }
    },
    output: (DK) => {
      iHash.destroy();
      oHash.destroy();
      salted.destroy();
      work.destroy();
      clean(u);
      return DK;
    }
  };
}
function pbkdf2(hash, password, salt, opts2) {
  const { c, dkLen, DK, outputLen, eng } = pbkdf2Init(hash, password, salt, opts2);
  for (let ti = 1, pos = 0; pos < dkLen; ti++, pos += outputLen) {
    const Ti = DK.subarray(pos, pos + outputLen);
    eng.u1(ti, Ti);
    eng.rounds(c, Ti);
  }
  return eng.output(DK);
}

// node_modules/@noble/hashes/scrypt.js
function XorAndSalsa(prev, pi, input, ii, out, oi) {
  let y00 = prev[pi++] ^ input[ii++], y01 = prev[pi++] ^ input[ii++];
  let y02 = prev[pi++] ^ input[ii++], y03 = prev[pi++] ^ input[ii++];
  let y04 = prev[pi++] ^ input[ii++], y05 = prev[pi++] ^ input[ii++];
  let y06 = prev[pi++] ^ input[ii++], y07 = prev[pi++] ^ input[ii++];
  let y08 = prev[pi++] ^ input[ii++], y09 = prev[pi++] ^ input[ii++];
  let y10 = prev[pi++] ^ input[ii++], y11 = prev[pi++] ^ input[ii++];
  let y12 = prev[pi++] ^ input[ii++], y13 = prev[pi++] ^ input[ii++];
  let y14 = prev[pi++] ^ input[ii++], y15 = prev[pi++] ^ input[ii++];
  let x00 = y00, x01 = y01, x02 = y02, x03 = y03, x04 = y04, x05 = y05, x06 = y06, x07 = y07, x08 = y08, x09 = y09, x10 = y10, x11 = y11, x12 = y12, x13 = y13, x14 = y14, x15 = y15;
  for (let i = 0; i < 8; i += 2) {
    x04 ^= rotl(x00 + x12 | 0, 7);
    x08 ^= rotl(x04 + x00 | 0, 9);
    x12 ^= rotl(x08 + x04 | 0, 13);
    x00 ^= rotl(x12 + x08 | 0, 18);
    x09 ^= rotl(x05 + x01 | 0, 7);
    x13 ^= rotl(x09 + x05 | 0, 9);
    x01 ^= rotl(x13 + x09 | 0, 13);
    x05 ^= rotl(x01 + x13 | 0, 18);
    x14 ^= rotl(x10 + x06 | 0, 7);
    x02 ^= rotl(x14 + x10 | 0, 9);
    x06 ^= rotl(x02 + x14 | 0, 13);
    x10 ^= rotl(x06 + x02 | 0, 18);
    x03 ^= rotl(x15 + x11 | 0, 7);
    x07 ^= rotl(x03 + x15 | 0, 9);
    x11 ^= rotl(x07 + x03 | 0, 13);
    x15 ^= rotl(x11 + x07 | 0, 18);
    x01 ^= rotl(x00 + x03 | 0, 7);
    x02 ^= rotl(x01 + x00 | 0, 9);
    x03 ^= rotl(x02 + x01 | 0, 13);
    x00 ^= rotl(x03 + x02 | 0, 18);
    x06 ^= rotl(x05 + x04 | 0, 7);
    x07 ^= rotl(x06 + x05 | 0, 9);
    x04 ^= rotl(x07 + x06 | 0, 13);
    x05 ^= rotl(x04 + x07 | 0, 18);
    x11 ^= rotl(x10 + x09 | 0, 7);
    x08 ^= rotl(x11 + x10 | 0, 9);
    x09 ^= rotl(x08 + x11 | 0, 13);
    x10 ^= rotl(x09 + x08 | 0, 18);
    x12 ^= rotl(x15 + x14 | 0, 7);
    x13 ^= rotl(x12 + x15 | 0, 9);
    x14 ^= rotl(x13 + x12 | 0, 13);
    x15 ^= rotl(x14 + x13 | 0, 18);
  }
  out[oi++] = y00 + x00 | 0;
  out[oi++] = y01 + x01 | 0;
  out[oi++] = y02 + x02 | 0;
  out[oi++] = y03 + x03 | 0;
  out[oi++] = y04 + x04 | 0;
  out[oi++] = y05 + x05 | 0;
  out[oi++] = y06 + x06 | 0;
  out[oi++] = y07 + x07 | 0;
  out[oi++] = y08 + x08 | 0;
  out[oi++] = y09 + x09 | 0;
  out[oi++] = y10 + x10 | 0;
  out[oi++] = y11 + x11 | 0;
  out[oi++] = y12 + x12 | 0;
  out[oi++] = y13 + x13 | 0;
  out[oi++] = y14 + x14 | 0;
  out[oi++] = y15 + x15 | 0;
}
function BlockMix(input, ii, out, oi, r) {
  let head = oi + 0;
  let tail = oi + 16 * r;
  for (let i = 0; i < 16; i++)
    out[tail + i] = input[ii + (2 * r - 1) * 16 + i];
  for (let i = 0; i < r; i++, head += 16, ii += 16) {
    XorAndSalsa(out, tail, input, ii, out, head);
    if (i > 0)
      tail += 16;
    XorAndSalsa(out, head, input, ii += 16, out, tail);
  }
}
var SCRYPT_DEFAULT_MAXMEM = 128 * 8 * (2 ** 20 + 1 + 1);
function scryptInit(password, salt, _opts) {
  const opts2 = checkOpts({
    dkLen: 32,
    asyncTick: 10,
    maxmem: SCRYPT_DEFAULT_MAXMEM
  }, _opts);
  const { N: N2, r, p, dkLen, asyncTick, maxmem, onProgress } = opts2;
  anumber2(N2, "N");
  anumber2(r, "r");
  anumber2(p, "p");
  anumber2(dkLen, "dkLen");
  anumber2(asyncTick, "asyncTick");
  anumber2(maxmem, "maxmem");
  if (onProgress !== void 0 && typeof onProgress !== "function")
    throw new Error('"onProgress" must be a function');
  if (r < 1)
    throw new Error('"r" expected integer >= 1');
  const blockSize = 128 * r;
  const blockSize32 = blockSize / 4;
  const pow32 = Math.pow(2, 32);
  if (N2 <= 1 || (N2 & N2 - 1) !== 0 || N2 > pow32)
    throw new Error('"N" expected a power of 2, and 2^1 <= N <= 2^32');
  if (p < 1 || p > (pow32 - 1) * 32 / blockSize)
    throw new Error('"p" expected integer 1..((2^32 - 1) * 32) / (128 * r)');
  if (dkLen < 1 || dkLen > (pow32 - 1) * 32)
    throw new Error('"dkLen" expected integer 1..(2^32 - 1) * 32');
  const memUsed = blockSize * (N2 + p + 1);
  if (memUsed > maxmem)
    throw new Error('"maxmem" limit was hit: memUsed(128*r*(N+p+1))=' + memUsed + ", maxmem=" + maxmem);
  const B = pbkdf2(sha256, password, salt, { c: 1, dkLen: blockSize * p });
  const B32 = u32(B);
  const V = u32(new Uint8Array(blockSize * N2));
  const tmp = u32(new Uint8Array(blockSize));
  let blockMixCb = () => {
  };
  if (onProgress) {
    const totalBlockMix = 2 * N2 * p;
    const callbackPer = Math.max(Math.floor(totalBlockMix / 1e4), 1);
    let blockMixCnt = 0;
    blockMixCb = () => {
      blockMixCnt++;
      if (onProgress && (!(blockMixCnt % callbackPer) || blockMixCnt === totalBlockMix)) {
        try {
          onProgress(blockMixCnt / totalBlockMix);
        } catch (e) {
          clean(B, V, tmp);
          throw e;
        }
      }
    };
  }
  return { N: N2, r, p, dkLen, blockSize32, V, B32, B, tmp, blockMixCb, asyncTick };
}
function scryptOutput(password, dkLen, B, V, tmp) {
  const res = pbkdf2(sha256, password, B, { c: 1, dkLen });
  clean(B, V, tmp);
  return res;
}
function scrypt(password, salt, opts2) {
  const { N: N2, r, p, dkLen, blockSize32, V, B32, B, tmp, blockMixCb } = scryptInit(password, salt, opts2);
  swap32IfBE(B32);
  for (let pi = 0; pi < p; pi++) {
    const Pi = blockSize32 * pi;
    for (let i = 0; i < blockSize32; i++)
      V[i] = B32[Pi + i];
    for (let i = 0, pos = 0; i < N2 - 1; i++) {
      BlockMix(V, pos, V, pos += blockSize32, r);
      blockMixCb();
    }
    BlockMix(V, (N2 - 1) * blockSize32, B32, Pi, r);
    blockMixCb();
    for (let i = 0; i < N2; i++) {
      const j = (B32[Pi + blockSize32 - 16] & N2 - 1) >>> 0;
      for (let k = 0; k < blockSize32; k++)
        tmp[k] = B32[Pi + k] ^ V[j * blockSize32 + k];
      BlockMix(tmp, 0, B32, Pi, r);
      blockMixCb();
    }
  }
  swap32IfBE(B32);
  return scryptOutput(password, dkLen, B, V, tmp);
}
async function scryptAsync(password, salt, opts2) {
  const { N: N2, r, p, dkLen, blockSize32, V, B32, B, tmp, blockMixCb, asyncTick } = scryptInit(password, salt, opts2);
  const abort = () => clean(B, V, tmp);
  swap32IfBE(B32);
  for (let pi = 0; pi < p; pi++) {
    const Pi = blockSize32 * pi;
    for (let i = 0; i < blockSize32; i++)
      V[i] = B32[Pi + i];
    let pos = 0;
    await asyncLoop(N2 - 1, asyncTick, () => {
      BlockMix(V, pos, V, pos += blockSize32, r);
      blockMixCb();
    }, abort);
    BlockMix(V, (N2 - 1) * blockSize32, B32, Pi, r);
    blockMixCb();
    await asyncLoop(N2, asyncTick, () => {
      const j = (B32[Pi + blockSize32 - 16] & N2 - 1) >>> 0;
      for (let k = 0; k < blockSize32; k++)
        tmp[k] = B32[Pi + k] ^ V[j * blockSize32 + k];
      BlockMix(tmp, 0, B32, Pi, r);
      blockMixCb();
    }, abort);
  }
  swap32IfBE(B32);
  return scryptOutput(password, dkLen, B, V, tmp);
}

// node_modules/@noble/ciphers/utils.js
/*! noble-ciphers - MIT License (c) 2023 Paul Miller (paulmillr.com) */
function isBytes3(a) {
  return a instanceof Uint8Array || ArrayBuffer.isView(a) && a.constructor.name === "Uint8Array" && "BYTES_PER_ELEMENT" in a && a.BYTES_PER_ELEMENT === 1;
}
var atitle2 = (title) => title ? `"${title}" ` : "";
function abool(value, title = "") {
  if (typeof value !== "boolean")
    throw new TypeError(atitle2(title) + "expected boolean, got type=" + typeof value);
  return value;
}
function anumber3(n, title = "") {
  if (typeof n !== "number")
    throw new TypeError(atitle2(title) + "expected number, got " + typeof n);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new RangeError(atitle2(title) + "expected integer >= 0, got " + n);
  return n;
}
function abytes3(value, length, title = "") {
  if (isBytes3(value) && (length === void 0 || value.length === length))
    return value;
  if (length !== void 0)
    anumber3(length, "length");
  const bytes = isBytes3(value);
  const ofLen = length !== void 0 ? ` of length ${length}` : "";
  const got = bytes ? `length=${value.length}` : `type=${typeof value}`;
  const message = atitle2(title) + "expected Uint8Array" + ofLen + ", got " + got;
  if (!bytes)
    throw new TypeError(message);
  throw new RangeError(message);
}
var aobject2 = (value, label) => {
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new TypeError(label === "object" ? "expected valid options object" : `"${label}" expected object, got type=${typeof value}`);
};
function aexists2(instance, checkFinished = true) {
  if (instance.destroyed)
    throw new Error("hash was destroyed");
  if (checkFinished && instance.finished)
    throw new Error("digest() was already called");
}
function aoutput2(out, instance) {
  abytes3(out, void 0, "output");
  const min = instance.outputLen;
  if (!(out.length >= min)) {
    throw new RangeError('"output" expected length >= ' + min);
  }
}
function u322(arr) {
  return new Uint32Array(arr.buffer, arr.byteOffset, Math.floor(arr.byteLength / 4));
}
function clean2(...arrays) {
  for (let i = 0; i < arrays.length; i++) {
    arrays[i].fill(0);
  }
}
function createView2(arr) {
  return new DataView(arr.buffer, arr.byteOffset, arr.byteLength);
}
var isLE2 = /* @__PURE__ */ (() => new Uint8Array(new Uint32Array([287454020]).buffer)[0] === 68)();
function byteSwap2(word) {
  return word << 24 & 4278190080 | word << 8 & 16711680 | word >>> 8 & 65280 | word >>> 24 & 255;
}
function byteSwap322(arr) {
  for (let i = 0; i < arr.length; i++) {
    arr[i] = byteSwap2(arr[i]);
  }
  return arr;
}
var swap32IfBE2 = isLE2 ? (u) => u : byteSwap322;
function overlapBytes(a, b) {
  if (!a.byteLength || !b.byteLength)
    return false;
  return a.buffer === b.buffer && // best we can do, may fail with an obscure Proxy
  a.byteOffset < b.byteOffset + b.byteLength && // a starts before b end
  b.byteOffset < a.byteOffset + a.byteLength;
}
function complexOverlapBytes(input, output) {
  if (overlapBytes(input, output) && input.byteOffset < output.byteOffset)
    throw new Error("complex overlap of input and output is not supported");
}
function checkOpts2(defaults, opts2) {
  aobject2(defaults, "defaults");
  aobject2(opts2, "opts");
  const merged = Object.assign(defaults, opts2);
  return merged;
}
function equalBytes(a, b) {
  a = abytes3(a);
  b = abytes3(b);
  if (a.length !== b.length)
    return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++)
    diff |= a[i] ^ b[i];
  return diff === 0;
}
function wrapMacConstructor(keyLen, macCons, fromMsg) {
  const mac = macCons;
  const getArgs = fromMsg || (() => []);
  const macC = (msg2, key) => mac(key, ...getArgs(msg2)).update(msg2).digest();
  const tmp = mac(new Uint8Array(keyLen), ...getArgs(new Uint8Array(0)));
  macC.outputLen = tmp.outputLen;
  macC.blockLen = tmp.blockLen;
  macC.create = (key, ...args) => mac(key, ...args);
  return macC;
}
var wrapCipher = /* @__NO_SIDE_EFFECTS__ */ (params, constructor) => {
  function wrappedCipher(key, ...args) {
    abytes3(key, void 0, "key");
    if (params.nonceLength !== void 0) {
      const nonce = args[0];
      abytes3(nonce, params.varSizeNonce ? void 0 : params.nonceLength, "nonce");
    }
    const tagl = params.tagLength;
    const aadStart = params.nonceLength !== void 0 ? 1 : 0;
    if (!params.withAAD) {
      for (let i = aadStart; i < args.length; i++)
        if (isBytes3(args[i]))
          throw new Error("AAD not supported");
    }
    if (params.withAAD && args[aadStart] !== void 0)
      abytes3(args[aadStart], void 0, "AAD");
    const cipher = constructor(key, ...args);
    const checkOutput = (fnLength, output) => {
      if (output !== void 0) {
        if (fnLength !== 2)
          throw new Error("cipher output not supported");
        abytes3(output, void 0, "output");
      }
    };
    let called = false;
    const wrCipher = {
      encrypt(data, output) {
        if (called)
          throw new Error("cannot encrypt() twice with same key + nonce");
        called = true;
        abytes3(data, void 0, "data");
        checkOutput(cipher.encrypt.length, output);
        return cipher.encrypt(data, output);
      },
      decrypt(data, output) {
        abytes3(data, void 0, "data");
        if (tagl && data.length < tagl)
          throw new Error('"ciphertext" expected length >= tagLength=' + tagl);
        checkOutput(cipher.decrypt.length, output);
        return cipher.decrypt(data, output);
      }
    };
    return wrCipher;
  }
  Object.assign(wrappedCipher, params);
  return wrappedCipher;
};
function getOutput(expectedLength, out, onlyAligned = true) {
  if (out === void 0)
    return new Uint8Array(expectedLength);
  abytes3(out, expectedLength, "output");
  if (onlyAligned && !isAligned32(out))
    throw new Error("invalid output, must be aligned");
  return out;
}
function u64Lengths(dataLength, aadLength, isLE4) {
  anumber3(dataLength);
  anumber3(aadLength);
  abool(isLE4);
  const num = new Uint8Array(16);
  const view = createView2(num);
  view.setBigUint64(0, BigInt(aadLength), isLE4);
  view.setBigUint64(8, BigInt(dataLength), isLE4);
  return num;
}
function isAligned32(bytes) {
  return bytes.byteOffset % 4 === 0;
}
function copyBytes(bytes) {
  return Uint8Array.from(abytes3(bytes));
}

// node_modules/@noble/ciphers/_arx.js
var encodeStr = (str) => Uint8Array.from(str.split(""), (c) => c.charCodeAt(0));
var sigma16_32 = /* @__PURE__ */ (() => swap32IfBE2(u322(encodeStr("expand 16-byte k"))))();
var sigma32_32 = /* @__PURE__ */ (() => swap32IfBE2(u322(encodeStr("expand 32-byte k"))))();
function rotl2(a, b) {
  return a << b | a >>> 32 - b;
}
var BLOCK_LEN = 64;
var BLOCK_LEN32 = 16;
var MAX_COUNTER = /* @__PURE__ */ (() => 2 ** 32 - 1)();
var U32_EMPTY = /* @__PURE__ */ Uint32Array.of();
function runCipher(core, sigma, key, nonce, data, output, counter, rounds) {
  const len = data.length;
  const block = new Uint8Array(BLOCK_LEN);
  const b32 = u322(block);
  const isAligned = isLE2 && isAligned32(data) && isAligned32(output);
  const d32 = isAligned ? u322(data) : U32_EMPTY;
  const o32 = isAligned ? u322(output) : U32_EMPTY;
  if (!isLE2) {
    for (let pos = 0; pos < len; counter++) {
      core(sigma, key, nonce, b32, counter, rounds);
      swap32IfBE2(b32);
      if (counter >= MAX_COUNTER)
        throw new Error("arx: counter overflow");
      const take = Math.min(BLOCK_LEN, len - pos);
      for (let j = 0, posj; j < take; j++) {
        posj = pos + j;
        output[posj] = data[posj] ^ block[j];
      }
      pos += take;
    }
    return;
  }
  for (let pos = 0; pos < len; counter++) {
    core(sigma, key, nonce, b32, counter, rounds);
    if (counter >= MAX_COUNTER)
      throw new Error("arx: counter overflow");
    const take = Math.min(BLOCK_LEN, len - pos);
    if (isAligned && take === BLOCK_LEN) {
      const pos32 = pos / 4;
      if (pos % 4 !== 0)
        throw new Error("arx: invalid block position");
      for (let j = 0, posj; j < BLOCK_LEN32; j++) {
        posj = pos32 + j;
        o32[posj] = d32[posj] ^ b32[j];
      }
      pos += BLOCK_LEN;
      continue;
    }
    for (let j = 0, posj; j < take; j++) {
      posj = pos + j;
      output[posj] = data[posj] ^ block[j];
    }
    pos += take;
  }
}
function createCipher(core, opts2) {
  const { allowShortKeys, extendNonceFn, counterLength, counterRight, rounds } = checkOpts2({ allowShortKeys: false, counterLength: 8, counterRight: false, rounds: 20 }, opts2);
  if (typeof core !== "function")
    throw new Error("core must be a function");
  anumber3(counterLength);
  anumber3(rounds);
  abool(counterRight);
  abool(allowShortKeys);
  return (key, nonce, data, output, counter = 0) => {
    abytes3(key, void 0, "key");
    abytes3(nonce, void 0, "nonce");
    abytes3(data, void 0, "data");
    const len = data.length;
    const hasOutput = output !== void 0;
    output = getOutput(len, output, false);
    if (hasOutput)
      complexOverlapBytes(data, output);
    anumber3(counter);
    if (counter < 0 || counter >= MAX_COUNTER)
      throw new Error("arx: counter overflow");
    const toClean = [];
    let l = key.length;
    let k;
    let sigma;
    if (l === 32) {
      toClean.push(k = copyBytes(key));
      sigma = sigma32_32;
    } else if (l === 16 && allowShortKeys) {
      k = new Uint8Array(32);
      k.set(key);
      k.set(key, 16);
      sigma = sigma16_32;
      toClean.push(k);
    } else {
      abytes3(key, 32, "arx key");
      throw new Error("invalid key size");
    }
    if (!isLE2 || !isAligned32(nonce))
      toClean.push(nonce = copyBytes(nonce));
    let k32 = u322(k);
    if (extendNonceFn) {
      if (nonce.length !== 24)
        throw new Error("arx: extended nonce must be 24 bytes");
      const n16 = nonce.subarray(0, 16);
      if (isLE2)
        extendNonceFn(sigma, k32, u322(n16), k32);
      else {
        const sigmaRaw = swap32IfBE2(Uint32Array.from(sigma));
        extendNonceFn(sigmaRaw, k32, u322(n16), k32);
        clean2(sigmaRaw);
        swap32IfBE2(k32);
      }
      nonce = nonce.subarray(16);
    } else if (!isLE2)
      swap32IfBE2(k32);
    const nonceNcLen = 16 - counterLength;
    if (nonceNcLen !== nonce.length)
      throw new Error(`arx: nonce must be ${nonceNcLen} or 16 bytes`);
    if (nonceNcLen !== 12) {
      const nc = new Uint8Array(12);
      nc.set(nonce, counterRight ? 0 : 12 - nonce.length);
      nonce = nc;
      toClean.push(nonce);
    }
    const n32 = swap32IfBE2(u322(nonce));
    try {
      runCipher(core, sigma, k32, n32, data, output, counter, rounds);
      return output;
    } finally {
      clean2(...toClean);
    }
  };
}

// node_modules/@noble/ciphers/_poly1305.js
function u8to16(a, i) {
  return a[i++] & 255 | (a[i++] & 255) << 8;
}
var Poly1305 = class {
  blockLen = 16;
  outputLen = 16;
  buffer = new Uint8Array(16);
  r = new Uint16Array(10);
  // Allocating 1 array with .subarray() here is slower than 3
  h = new Uint16Array(10);
  pad = new Uint16Array(8);
  pos = 0;
  finished = false;
  destroyed = false;
  // Can be speed-up using BigUint64Array, at the cost of complexity
  constructor(key) {
    key = copyBytes(abytes3(key, 32, "key"));
    const t0 = u8to16(key, 0);
    const t1 = u8to16(key, 2);
    const t2 = u8to16(key, 4);
    const t3 = u8to16(key, 6);
    const t4 = u8to16(key, 8);
    const t5 = u8to16(key, 10);
    const t6 = u8to16(key, 12);
    const t7 = u8to16(key, 14);
    this.r[0] = t0 & 8191;
    this.r[1] = (t0 >>> 13 | t1 << 3) & 8191;
    this.r[2] = (t1 >>> 10 | t2 << 6) & 7939;
    this.r[3] = (t2 >>> 7 | t3 << 9) & 8191;
    this.r[4] = (t3 >>> 4 | t4 << 12) & 255;
    this.r[5] = t4 >>> 1 & 8190;
    this.r[6] = (t4 >>> 14 | t5 << 2) & 8191;
    this.r[7] = (t5 >>> 11 | t6 << 5) & 8065;
    this.r[8] = (t6 >>> 8 | t7 << 8) & 8191;
    this.r[9] = t7 >>> 5 & 127;
    for (let i = 0; i < 8; i++)
      this.pad[i] = u8to16(key, 16 + 2 * i);
  }
  process(data, offset, isLast = false) {
    const hibit = isLast ? 0 : 1 << 11;
    const { h, r } = this;
    const r0 = r[0];
    const r1 = r[1];
    const r2 = r[2];
    const r3 = r[3];
    const r4 = r[4];
    const r5 = r[5];
    const r6 = r[6];
    const r7 = r[7];
    const r8 = r[8];
    const r9 = r[9];
    const t0 = u8to16(data, offset + 0);
    const t1 = u8to16(data, offset + 2);
    const t2 = u8to16(data, offset + 4);
    const t3 = u8to16(data, offset + 6);
    const t4 = u8to16(data, offset + 8);
    const t5 = u8to16(data, offset + 10);
    const t6 = u8to16(data, offset + 12);
    const t7 = u8to16(data, offset + 14);
    let h0 = h[0] + (t0 & 8191);
    let h1 = h[1] + ((t0 >>> 13 | t1 << 3) & 8191);
    let h2 = h[2] + ((t1 >>> 10 | t2 << 6) & 8191);
    let h3 = h[3] + ((t2 >>> 7 | t3 << 9) & 8191);
    let h4 = h[4] + ((t3 >>> 4 | t4 << 12) & 8191);
    let h5 = h[5] + (t4 >>> 1 & 8191);
    let h6 = h[6] + ((t4 >>> 14 | t5 << 2) & 8191);
    let h7 = h[7] + ((t5 >>> 11 | t6 << 5) & 8191);
    let h8 = h[8] + ((t6 >>> 8 | t7 << 8) & 8191);
    let h9 = h[9] + (t7 >>> 5 | hibit);
    let c = 0;
    let d0 = c + h0 * r0 + h1 * (5 * r9) + h2 * (5 * r8) + h3 * (5 * r7) + h4 * (5 * r6);
    c = d0 >>> 13;
    d0 &= 8191;
    d0 += h5 * (5 * r5) + h6 * (5 * r4) + h7 * (5 * r3) + h8 * (5 * r2) + h9 * (5 * r1);
    c += d0 >>> 13;
    d0 &= 8191;
    let d1 = c + h0 * r1 + h1 * r0 + h2 * (5 * r9) + h3 * (5 * r8) + h4 * (5 * r7);
    c = d1 >>> 13;
    d1 &= 8191;
    d1 += h5 * (5 * r6) + h6 * (5 * r5) + h7 * (5 * r4) + h8 * (5 * r3) + h9 * (5 * r2);
    c += d1 >>> 13;
    d1 &= 8191;
    let d2 = c + h0 * r2 + h1 * r1 + h2 * r0 + h3 * (5 * r9) + h4 * (5 * r8);
    c = d2 >>> 13;
    d2 &= 8191;
    d2 += h5 * (5 * r7) + h6 * (5 * r6) + h7 * (5 * r5) + h8 * (5 * r4) + h9 * (5 * r3);
    c += d2 >>> 13;
    d2 &= 8191;
    let d3 = c + h0 * r3 + h1 * r2 + h2 * r1 + h3 * r0 + h4 * (5 * r9);
    c = d3 >>> 13;
    d3 &= 8191;
    d3 += h5 * (5 * r8) + h6 * (5 * r7) + h7 * (5 * r6) + h8 * (5 * r5) + h9 * (5 * r4);
    c += d3 >>> 13;
    d3 &= 8191;
    let d4 = c + h0 * r4 + h1 * r3 + h2 * r2 + h3 * r1 + h4 * r0;
    c = d4 >>> 13;
    d4 &= 8191;
    d4 += h5 * (5 * r9) + h6 * (5 * r8) + h7 * (5 * r7) + h8 * (5 * r6) + h9 * (5 * r5);
    c += d4 >>> 13;
    d4 &= 8191;
    let d5 = c + h0 * r5 + h1 * r4 + h2 * r3 + h3 * r2 + h4 * r1;
    c = d5 >>> 13;
    d5 &= 8191;
    d5 += h5 * r0 + h6 * (5 * r9) + h7 * (5 * r8) + h8 * (5 * r7) + h9 * (5 * r6);
    c += d5 >>> 13;
    d5 &= 8191;
    let d6 = c + h0 * r6 + h1 * r5 + h2 * r4 + h3 * r3 + h4 * r2;
    c = d6 >>> 13;
    d6 &= 8191;
    d6 += h5 * r1 + h6 * r0 + h7 * (5 * r9) + h8 * (5 * r8) + h9 * (5 * r7);
    c += d6 >>> 13;
    d6 &= 8191;
    let d7 = c + h0 * r7 + h1 * r6 + h2 * r5 + h3 * r4 + h4 * r3;
    c = d7 >>> 13;
    d7 &= 8191;
    d7 += h5 * r2 + h6 * r1 + h7 * r0 + h8 * (5 * r9) + h9 * (5 * r8);
    c += d7 >>> 13;
    d7 &= 8191;
    let d8 = c + h0 * r8 + h1 * r7 + h2 * r6 + h3 * r5 + h4 * r4;
    c = d8 >>> 13;
    d8 &= 8191;
    d8 += h5 * r3 + h6 * r2 + h7 * r1 + h8 * r0 + h9 * (5 * r9);
    c += d8 >>> 13;
    d8 &= 8191;
    let d9 = c + h0 * r9 + h1 * r8 + h2 * r7 + h3 * r6 + h4 * r5;
    c = d9 >>> 13;
    d9 &= 8191;
    d9 += h5 * r4 + h6 * r3 + h7 * r2 + h8 * r1 + h9 * r0;
    c += d9 >>> 13;
    d9 &= 8191;
    c = (c << 2) + c | 0;
    c = c + d0 | 0;
    d0 = c & 8191;
    c = c >>> 13;
    d1 += c;
    h[0] = d0;
    h[1] = d1;
    h[2] = d2;
    h[3] = d3;
    h[4] = d4;
    h[5] = d5;
    h[6] = d6;
    h[7] = d7;
    h[8] = d8;
    h[9] = d9;
  }
  finalize() {
    const { h, pad } = this;
    const g = new Uint16Array(10);
    let c = h[1] >>> 13;
    h[1] &= 8191;
    for (let i = 2; i < 10; i++) {
      h[i] += c;
      c = h[i] >>> 13;
      h[i] &= 8191;
    }
    h[0] += c * 5;
    c = h[0] >>> 13;
    h[0] &= 8191;
    h[1] += c;
    c = h[1] >>> 13;
    h[1] &= 8191;
    h[2] += c;
    g[0] = h[0] + 5;
    c = g[0] >>> 13;
    g[0] &= 8191;
    for (let i = 1; i < 10; i++) {
      g[i] = h[i] + c;
      c = g[i] >>> 13;
      g[i] &= 8191;
    }
    g[9] -= 1 << 13;
    let mask = (c ^ 1) - 1;
    for (let i = 0; i < 10; i++)
      g[i] &= mask;
    mask = ~mask;
    for (let i = 0; i < 10; i++)
      h[i] = h[i] & mask | g[i];
    h[0] = (h[0] | h[1] << 13) & 65535;
    h[1] = (h[1] >>> 3 | h[2] << 10) & 65535;
    h[2] = (h[2] >>> 6 | h[3] << 7) & 65535;
    h[3] = (h[3] >>> 9 | h[4] << 4) & 65535;
    h[4] = (h[4] >>> 12 | h[5] << 1 | h[6] << 14) & 65535;
    h[5] = (h[6] >>> 2 | h[7] << 11) & 65535;
    h[6] = (h[7] >>> 5 | h[8] << 8) & 65535;
    h[7] = (h[8] >>> 8 | h[9] << 5) & 65535;
    let f = h[0] + pad[0];
    h[0] = f & 65535;
    for (let i = 1; i < 8; i++) {
      f = (h[i] + pad[i] | 0) + (f >>> 16) | 0;
      h[i] = f & 65535;
    }
    clean2(g);
  }
  update(data) {
    aexists2(this);
    abytes3(data);
    data = copyBytes(data);
    const { buffer, blockLen } = this;
    const len = data.length;
    for (let pos = 0; pos < len; ) {
      const take = Math.min(blockLen - this.pos, len - pos);
      if (take === blockLen) {
        for (; blockLen <= len - pos; pos += blockLen)
          this.process(data, pos);
        continue;
      }
      buffer.set(data.subarray(pos, pos + take), this.pos);
      this.pos += take;
      pos += take;
      if (this.pos === blockLen) {
        this.process(buffer, 0, false);
        this.pos = 0;
      }
    }
    return this;
  }
  destroy() {
    this.destroyed = true;
    clean2(this.h, this.r, this.buffer, this.pad);
  }
  digestInto(out) {
    aexists2(this);
    aoutput2(out, this);
    this.finished = true;
    const { buffer, h } = this;
    let { pos } = this;
    if (pos) {
      buffer[pos++] = 1;
      for (; pos < 16; pos++)
        buffer[pos] = 0;
      this.process(buffer, 0, true);
    }
    this.finalize();
    let opos = 0;
    for (let i = 0; i < 8; i++) {
      out[opos++] = h[i] >>> 0;
      out[opos++] = h[i] >>> 8;
    }
  }
  digest() {
    const { buffer, outputLen } = this;
    this.digestInto(buffer);
    const res = buffer.slice(0, outputLen);
    this.destroy();
    return res;
  }
};
var poly1305 = /* @__PURE__ */ wrapMacConstructor(32, (key) => new Poly1305(key));

// node_modules/@noble/ciphers/chacha.js
function chachaCore(s, k, n, out, cnt, rounds = 20) {
  let y00 = s[0], y01 = s[1], y02 = s[2], y03 = s[3], y04 = k[0], y05 = k[1], y06 = k[2], y07 = k[3], y08 = k[4], y09 = k[5], y10 = k[6], y11 = k[7], y12 = cnt, y13 = n[0], y14 = n[1], y15 = n[2];
  let x00 = y00, x01 = y01, x02 = y02, x03 = y03, x04 = y04, x05 = y05, x06 = y06, x07 = y07, x08 = y08, x09 = y09, x10 = y10, x11 = y11, x12 = y12, x13 = y13, x14 = y14, x15 = y15;
  for (let r = 0; r < rounds; r += 2) {
    x00 = x00 + x04 | 0;
    x12 = rotl2(x12 ^ x00, 16);
    x08 = x08 + x12 | 0;
    x04 = rotl2(x04 ^ x08, 12);
    x00 = x00 + x04 | 0;
    x12 = rotl2(x12 ^ x00, 8);
    x08 = x08 + x12 | 0;
    x04 = rotl2(x04 ^ x08, 7);
    x01 = x01 + x05 | 0;
    x13 = rotl2(x13 ^ x01, 16);
    x09 = x09 + x13 | 0;
    x05 = rotl2(x05 ^ x09, 12);
    x01 = x01 + x05 | 0;
    x13 = rotl2(x13 ^ x01, 8);
    x09 = x09 + x13 | 0;
    x05 = rotl2(x05 ^ x09, 7);
    x02 = x02 + x06 | 0;
    x14 = rotl2(x14 ^ x02, 16);
    x10 = x10 + x14 | 0;
    x06 = rotl2(x06 ^ x10, 12);
    x02 = x02 + x06 | 0;
    x14 = rotl2(x14 ^ x02, 8);
    x10 = x10 + x14 | 0;
    x06 = rotl2(x06 ^ x10, 7);
    x03 = x03 + x07 | 0;
    x15 = rotl2(x15 ^ x03, 16);
    x11 = x11 + x15 | 0;
    x07 = rotl2(x07 ^ x11, 12);
    x03 = x03 + x07 | 0;
    x15 = rotl2(x15 ^ x03, 8);
    x11 = x11 + x15 | 0;
    x07 = rotl2(x07 ^ x11, 7);
    x00 = x00 + x05 | 0;
    x15 = rotl2(x15 ^ x00, 16);
    x10 = x10 + x15 | 0;
    x05 = rotl2(x05 ^ x10, 12);
    x00 = x00 + x05 | 0;
    x15 = rotl2(x15 ^ x00, 8);
    x10 = x10 + x15 | 0;
    x05 = rotl2(x05 ^ x10, 7);
    x01 = x01 + x06 | 0;
    x12 = rotl2(x12 ^ x01, 16);
    x11 = x11 + x12 | 0;
    x06 = rotl2(x06 ^ x11, 12);
    x01 = x01 + x06 | 0;
    x12 = rotl2(x12 ^ x01, 8);
    x11 = x11 + x12 | 0;
    x06 = rotl2(x06 ^ x11, 7);
    x02 = x02 + x07 | 0;
    x13 = rotl2(x13 ^ x02, 16);
    x08 = x08 + x13 | 0;
    x07 = rotl2(x07 ^ x08, 12);
    x02 = x02 + x07 | 0;
    x13 = rotl2(x13 ^ x02, 8);
    x08 = x08 + x13 | 0;
    x07 = rotl2(x07 ^ x08, 7);
    x03 = x03 + x04 | 0;
    x14 = rotl2(x14 ^ x03, 16);
    x09 = x09 + x14 | 0;
    x04 = rotl2(x04 ^ x09, 12);
    x03 = x03 + x04 | 0;
    x14 = rotl2(x14 ^ x03, 8);
    x09 = x09 + x14 | 0;
    x04 = rotl2(x04 ^ x09, 7);
  }
  let oi = 0;
  out[oi++] = y00 + x00 | 0;
  out[oi++] = y01 + x01 | 0;
  out[oi++] = y02 + x02 | 0;
  out[oi++] = y03 + x03 | 0;
  out[oi++] = y04 + x04 | 0;
  out[oi++] = y05 + x05 | 0;
  out[oi++] = y06 + x06 | 0;
  out[oi++] = y07 + x07 | 0;
  out[oi++] = y08 + x08 | 0;
  out[oi++] = y09 + x09 | 0;
  out[oi++] = y10 + x10 | 0;
  out[oi++] = y11 + x11 | 0;
  out[oi++] = y12 + x12 | 0;
  out[oi++] = y13 + x13 | 0;
  out[oi++] = y14 + x14 | 0;
  out[oi++] = y15 + x15 | 0;
}
var chacha20 = /* @__PURE__ */ createCipher(chachaCore, {
  counterRight: false,
  counterLength: 4,
  allowShortKeys: false
});
var ZEROS16 = /* @__PURE__ */ new Uint8Array(16);
var updatePadded = (h, msg2) => {
  h.update(msg2);
  const leftover = msg2.length % 16;
  if (leftover)
    h.update(ZEROS16.subarray(leftover));
};
var ZEROS32 = /* @__PURE__ */ new Uint8Array(32);
function computeTag(fn, key, nonce, ciphertext, AAD) {
  if (AAD !== void 0)
    abytes3(AAD, void 0, "AAD");
  const authKey = fn(key, nonce, ZEROS32);
  const lengths = u64Lengths(ciphertext.length, AAD ? AAD.length : 0, true);
  const h = poly1305.create(authKey);
  if (AAD)
    updatePadded(h, AAD);
  updatePadded(h, ciphertext);
  h.update(lengths);
  const res = h.digest();
  clean2(authKey, lengths);
  return res;
}
var _poly1305_aead = (xorStream) => (key, nonce, AAD) => {
  const tagLength = 16;
  return {
    encrypt(plaintext, output) {
      const plength = plaintext.length;
      output = getOutput(plength + tagLength, output, false);
      output.set(plaintext);
      const oPlain = output.subarray(0, -tagLength);
      xorStream(key, nonce, oPlain, oPlain, 1);
      const tag = computeTag(xorStream, key, nonce, oPlain, AAD);
      output.set(tag, plength);
      clean2(tag);
      return output;
    },
    decrypt(ciphertext, output) {
      output = getOutput(ciphertext.length - tagLength, output, false);
      const data = ciphertext.subarray(0, -tagLength);
      const passedTag = ciphertext.subarray(-tagLength);
      const tag = computeTag(xorStream, key, nonce, data, AAD);
      if (!equalBytes(passedTag, tag)) {
        clean2(tag);
        throw new Error("invalid tag");
      }
      output.set(ciphertext.subarray(0, -tagLength));
      xorStream(key, nonce, output, output, 1);
      clean2(tag);
      return output;
    }
  };
};
var chacha20poly1305 = /* @__PURE__ */ wrapCipher(
  { blockSize: 64, nonceLength: 12, tagLength: 16, withAAD: true },
  /* @__PURE__ */ _poly1305_aead(chacha20)
);

// node_modules/@noble/post-quantum/node_modules/@noble/hashes/utils.js
/*! noble-hashes - MIT License (c) 2022 Paul Miller (paulmillr.com) */
function isBytes4(a) {
  return a instanceof Uint8Array || ArrayBuffer.isView(a) && a.constructor.name === "Uint8Array";
}
function anumber4(n, title = "") {
  if (!Number.isSafeInteger(n) || n < 0) {
    const prefix = title && `"${title}" `;
    throw new Error(`${prefix}expected integer >= 0, got ${n}`);
  }
}
function abytes4(value, length, title = "") {
  const bytes = isBytes4(value);
  const len = value?.length;
  const needsLen = length !== void 0;
  if (!bytes || needsLen && len !== length) {
    const prefix = title && `"${title}" `;
    const ofLen = needsLen ? ` of length ${length}` : "";
    const got = bytes ? `length=${len}` : `type=${typeof value}`;
    throw new Error(prefix + "expected Uint8Array" + ofLen + ", got " + got);
  }
  return value;
}
function ahash2(h) {
  if (typeof h !== "function" || typeof h.create !== "function")
    throw new Error("Hash must wrapped by utils.createHasher");
  anumber4(h.outputLen);
  anumber4(h.blockLen);
}
function aexists3(instance, checkFinished = true) {
  if (instance.destroyed)
    throw new Error("Hash instance has been destroyed");
  if (checkFinished && instance.finished)
    throw new Error("Hash#digest() has already been called");
}
function aoutput3(out, instance) {
  abytes4(out, void 0, "digestInto() output");
  const min = instance.outputLen;
  if (out.length < min) {
    throw new Error('"digestInto() output" expected to be of length >=' + min);
  }
}
function u323(arr) {
  return new Uint32Array(arr.buffer, arr.byteOffset, Math.floor(arr.byteLength / 4));
}
function clean3(...arrays) {
  for (let i = 0; i < arrays.length; i++) {
    arrays[i].fill(0);
  }
}
function createView3(arr) {
  return new DataView(arr.buffer, arr.byteOffset, arr.byteLength);
}
function rotr2(word, shift) {
  return word << 32 - shift | word >>> shift;
}
var isLE3 = /* @__PURE__ */ (() => new Uint8Array(new Uint32Array([287454020]).buffer)[0] === 68)();
function byteSwap3(word) {
  return word << 24 & 4278190080 | word << 8 & 16711680 | word >>> 8 & 65280 | word >>> 24 & 255;
}
function byteSwap323(arr) {
  for (let i = 0; i < arr.length; i++) {
    arr[i] = byteSwap3(arr[i]);
  }
  return arr;
}
var swap32IfBE3 = isLE3 ? (u) => u : byteSwap323;
var hasHexBuiltin2 = /* @__PURE__ */ (() => (
  // @ts-ignore
  typeof Uint8Array.from([]).toHex === "function" && typeof Uint8Array.fromHex === "function"
))();
var hexes2 = /* @__PURE__ */ Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
function bytesToHex2(bytes) {
  abytes4(bytes);
  if (hasHexBuiltin2)
    return bytes.toHex();
  let hex = "";
  for (let i = 0; i < bytes.length; i++) {
    hex += hexes2[bytes[i]];
  }
  return hex;
}
var asciis = { _0: 48, _9: 57, A: 65, F: 70, a: 97, f: 102 };
function asciiToBase162(ch) {
  if (ch >= asciis._0 && ch <= asciis._9)
    return ch - asciis._0;
  if (ch >= asciis.A && ch <= asciis.F)
    return ch - (asciis.A - 10);
  if (ch >= asciis.a && ch <= asciis.f)
    return ch - (asciis.a - 10);
  return;
}
function hexToBytes2(hex) {
  if (typeof hex !== "string")
    throw new Error("hex string expected, got " + typeof hex);
  if (hasHexBuiltin2)
    return Uint8Array.fromHex(hex);
  const hl = hex.length;
  const al = hl / 2;
  if (hl % 2)
    throw new Error("hex string expected, got unpadded hex of length " + hl);
  const array = new Uint8Array(al);
  for (let ai = 0, hi = 0; ai < al; ai++, hi += 2) {
    const n1 = asciiToBase162(hex.charCodeAt(hi));
    const n2 = asciiToBase162(hex.charCodeAt(hi + 1));
    if (n1 === void 0 || n2 === void 0) {
      const char = hex[hi] + hex[hi + 1];
      throw new Error('hex string expected, got non-hex character "' + char + '" at index ' + hi);
    }
    array[ai] = n1 * 16 + n2;
  }
  return array;
}
function concatBytes2(...arrays) {
  let sum = 0;
  for (let i = 0; i < arrays.length; i++) {
    const a = arrays[i];
    abytes4(a);
    sum += a.length;
  }
  const res = new Uint8Array(sum);
  for (let i = 0, pad = 0; i < arrays.length; i++) {
    const a = arrays[i];
    res.set(a, pad);
    pad += a.length;
  }
  return res;
}
function createHasher2(hashCons, info = {}) {
  const hashC = (msg2, opts2) => hashCons(opts2).update(msg2).digest();
  const tmp = hashCons(void 0);
  hashC.outputLen = tmp.outputLen;
  hashC.blockLen = tmp.blockLen;
  hashC.create = (opts2) => hashCons(opts2);
  Object.assign(hashC, info);
  return Object.freeze(hashC);
}
function randomBytes3(bytesLength = 32) {
  const cr = typeof globalThis === "object" ? globalThis.crypto : null;
  if (typeof cr?.getRandomValues !== "function")
    throw new Error("crypto.getRandomValues must be defined");
  return cr.getRandomValues(new Uint8Array(bytesLength));
}
var oidNist2 = (suffix) => ({
  oid: Uint8Array.from([6, 9, 96, 134, 72, 1, 101, 3, 4, 2, suffix])
});

// node_modules/@noble/post-quantum/node_modules/@noble/curves/utils.js
/*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
var _0n = /* @__PURE__ */ BigInt(0);
var _1n = /* @__PURE__ */ BigInt(1);
function abool2(value, title = "") {
  if (typeof value !== "boolean") {
    const prefix = title && `"${title}" `;
    throw new Error(prefix + "expected boolean, got type=" + typeof value);
  }
  return value;
}
function abignumber(n) {
  if (typeof n === "bigint") {
    if (!isPosBig(n))
      throw new Error("positive bigint expected, got " + n);
  } else
    anumber4(n);
  return n;
}
function numberToHexUnpadded(num) {
  const hex = abignumber(num).toString(16);
  return hex.length & 1 ? "0" + hex : hex;
}
function hexToNumber(hex) {
  if (typeof hex !== "string")
    throw new Error("hex string expected, got " + typeof hex);
  return hex === "" ? _0n : BigInt("0x" + hex);
}
function bytesToNumberBE(bytes) {
  return hexToNumber(bytesToHex2(bytes));
}
function bytesToNumberLE(bytes) {
  return hexToNumber(bytesToHex2(copyBytes2(abytes4(bytes)).reverse()));
}
function numberToBytesBE(n, len) {
  anumber4(len);
  n = abignumber(n);
  const res = hexToBytes2(n.toString(16).padStart(len * 2, "0"));
  if (res.length !== len)
    throw new Error("number too large");
  return res;
}
function numberToBytesLE(n, len) {
  return numberToBytesBE(n, len).reverse();
}
function copyBytes2(bytes) {
  return Uint8Array.from(bytes);
}
function asciiToBytes(ascii) {
  return Uint8Array.from(ascii, (c, i) => {
    const charCode = c.charCodeAt(0);
    if (c.length !== 1 || charCode > 127) {
      throw new Error(`string contains non-ASCII character "${ascii[i]}" with code ${charCode} at position ${i}`);
    }
    return charCode;
  });
}
var isPosBig = (n) => typeof n === "bigint" && _0n <= n;
function inRange(n, min, max) {
  return isPosBig(n) && isPosBig(min) && isPosBig(max) && min <= n && n < max;
}
function aInRange(title, n, min, max) {
  if (!inRange(n, min, max))
    throw new Error("expected valid " + title + ": " + min + " <= n < " + max + ", got " + n);
}
function bitLen(n) {
  let len;
  for (len = 0; n > _0n; n >>= _1n, len += 1)
    ;
  return len;
}
var bitMask = (n) => (_1n << BigInt(n)) - _1n;
function createHmacDrbg(hashLen, qByteLen, hmacFn) {
  anumber4(hashLen, "hashLen");
  anumber4(qByteLen, "qByteLen");
  if (typeof hmacFn !== "function")
    throw new Error("hmacFn must be a function");
  const u8n = (len) => new Uint8Array(len);
  const NULL = Uint8Array.of();
  const byte0 = Uint8Array.of(0);
  const byte1 = Uint8Array.of(1);
  const _maxDrbgIters = 1e3;
  let v = u8n(hashLen);
  let k = u8n(hashLen);
  let i = 0;
  const reset = () => {
    v.fill(1);
    k.fill(0);
    i = 0;
  };
  const h = (...msgs2) => hmacFn(k, concatBytes2(v, ...msgs2));
  const reseed = (seed = NULL) => {
    k = h(byte0, seed);
    v = h();
    if (seed.length === 0)
      return;
    k = h(byte1, seed);
    v = h();
  };
  const gen = () => {
    if (i++ >= _maxDrbgIters)
      throw new Error("drbg: tried max amount of iterations");
    let len = 0;
    const out = [];
    while (len < qByteLen) {
      v = h();
      const sl = v.slice();
      out.push(sl);
      len += v.length;
    }
    return concatBytes2(...out);
  };
  const genUntil = (seed, pred) => {
    reset();
    reseed(seed);
    let res = void 0;
    while (!(res = pred(gen())))
      reseed();
    reset();
    return res;
  };
  return genUntil;
}
function validateObject(object, fields = {}, optFields = {}) {
  if (!object || typeof object !== "object")
    throw new Error("expected valid options object");
  function checkField(fieldName, expectedType, isOpt) {
    const val = object[fieldName];
    if (isOpt && val === void 0)
      return;
    const current = typeof val;
    if (current !== expectedType || val === null)
      throw new Error(`param "${fieldName}" is invalid: expected ${expectedType}, got ${current}`);
  }
  const iter = (f, isOpt) => Object.entries(f).forEach(([k, v]) => checkField(k, v, isOpt));
  iter(fields, false);
  iter(optFields, true);
}
function memoized(fn) {
  const map = /* @__PURE__ */ new WeakMap();
  return (arg, ...args) => {
    const val = map.get(arg);
    if (val !== void 0)
      return val;
    const computed = fn(arg, ...args);
    map.set(arg, computed);
    return computed;
  };
}

// node_modules/@noble/post-quantum/node_modules/@noble/curves/abstract/modular.js
/*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
var _0n2 = /* @__PURE__ */ BigInt(0);
var _1n2 = /* @__PURE__ */ BigInt(1);
var _2n = /* @__PURE__ */ BigInt(2);
var _3n = /* @__PURE__ */ BigInt(3);
var _4n = /* @__PURE__ */ BigInt(4);
var _5n = /* @__PURE__ */ BigInt(5);
var _7n = /* @__PURE__ */ BigInt(7);
var _8n = /* @__PURE__ */ BigInt(8);
var _9n = /* @__PURE__ */ BigInt(9);
var _16n = /* @__PURE__ */ BigInt(16);
function mod(a, b) {
  const result = a % b;
  return result >= _0n2 ? result : b + result;
}
function pow2(x, power, modulo) {
  let res = x;
  while (power-- > _0n2) {
    res *= res;
    res %= modulo;
  }
  return res;
}
function invert(number, modulo) {
  if (number === _0n2)
    throw new Error("invert: expected non-zero number");
  if (modulo <= _0n2)
    throw new Error("invert: expected positive modulus, got " + modulo);
  let a = mod(number, modulo);
  let b = modulo;
  let x = _0n2, y = _1n2, u = _1n2, v = _0n2;
  while (a !== _0n2) {
    const q = b / a;
    const r = b % a;
    const m = x - u * q;
    const n = y - v * q;
    b = a, a = r, x = u, y = v, u = m, v = n;
  }
  const gcd = b;
  if (gcd !== _1n2)
    throw new Error("invert: does not exist");
  return mod(x, modulo);
}
function assertIsSquare(Fp, root, n) {
  if (!Fp.eql(Fp.sqr(root), n))
    throw new Error("Cannot find square root");
}
function sqrt3mod4(Fp, n) {
  const p1div4 = (Fp.ORDER + _1n2) / _4n;
  const root = Fp.pow(n, p1div4);
  assertIsSquare(Fp, root, n);
  return root;
}
function sqrt5mod8(Fp, n) {
  const p5div8 = (Fp.ORDER - _5n) / _8n;
  const n2 = Fp.mul(n, _2n);
  const v = Fp.pow(n2, p5div8);
  const nv = Fp.mul(n, v);
  const i = Fp.mul(Fp.mul(nv, _2n), v);
  const root = Fp.mul(nv, Fp.sub(i, Fp.ONE));
  assertIsSquare(Fp, root, n);
  return root;
}
function sqrt9mod16(P) {
  const Fp_ = Field(P);
  const tn = tonelliShanks(P);
  const c1 = tn(Fp_, Fp_.neg(Fp_.ONE));
  const c2 = tn(Fp_, c1);
  const c3 = tn(Fp_, Fp_.neg(c1));
  const c4 = (P + _7n) / _16n;
  return (Fp, n) => {
    let tv1 = Fp.pow(n, c4);
    let tv2 = Fp.mul(tv1, c1);
    const tv3 = Fp.mul(tv1, c2);
    const tv4 = Fp.mul(tv1, c3);
    const e1 = Fp.eql(Fp.sqr(tv2), n);
    const e2 = Fp.eql(Fp.sqr(tv3), n);
    tv1 = Fp.cmov(tv1, tv2, e1);
    tv2 = Fp.cmov(tv4, tv3, e2);
    const e3 = Fp.eql(Fp.sqr(tv2), n);
    const root = Fp.cmov(tv1, tv2, e3);
    assertIsSquare(Fp, root, n);
    return root;
  };
}
function tonelliShanks(P) {
  if (P < _3n)
    throw new Error("sqrt is not defined for small field");
  let Q2 = P - _1n2;
  let S = 0;
  while (Q2 % _2n === _0n2) {
    Q2 /= _2n;
    S++;
  }
  let Z = _2n;
  const _Fp = Field(P);
  while (FpLegendre(_Fp, Z) === 1) {
    if (Z++ > 1e3)
      throw new Error("Cannot find square root: probably non-prime P");
  }
  if (S === 1)
    return sqrt3mod4;
  let cc = _Fp.pow(Z, Q2);
  const Q1div2 = (Q2 + _1n2) / _2n;
  return function tonelliSlow(Fp, n) {
    if (Fp.is0(n))
      return n;
    if (FpLegendre(Fp, n) !== 1)
      throw new Error("Cannot find square root");
    let M = S;
    let c = Fp.mul(Fp.ONE, cc);
    let t = Fp.pow(n, Q2);
    let R = Fp.pow(n, Q1div2);
    while (!Fp.eql(t, Fp.ONE)) {
      if (Fp.is0(t))
        return Fp.ZERO;
      let i = 1;
      let t_tmp = Fp.sqr(t);
      while (!Fp.eql(t_tmp, Fp.ONE)) {
        i++;
        t_tmp = Fp.sqr(t_tmp);
        if (i === M)
          throw new Error("Cannot find square root");
      }
      const exponent = _1n2 << BigInt(M - i - 1);
      const b = Fp.pow(c, exponent);
      M = i;
      c = Fp.sqr(b);
      t = Fp.mul(t, c);
      R = Fp.mul(R, b);
    }
    return R;
  };
}
function FpSqrt(P) {
  if (P % _4n === _3n)
    return sqrt3mod4;
  if (P % _8n === _5n)
    return sqrt5mod8;
  if (P % _16n === _9n)
    return sqrt9mod16(P);
  return tonelliShanks(P);
}
var FIELD_FIELDS = [
  "create",
  "isValid",
  "is0",
  "neg",
  "inv",
  "sqrt",
  "sqr",
  "eql",
  "add",
  "sub",
  "mul",
  "pow",
  "div",
  "addN",
  "subN",
  "mulN",
  "sqrN"
];
function validateField(field) {
  const initial = {
    ORDER: "bigint",
    BYTES: "number",
    BITS: "number"
  };
  const opts2 = FIELD_FIELDS.reduce((map, val) => {
    map[val] = "function";
    return map;
  }, initial);
  validateObject(field, opts2);
  return field;
}
function FpPow(Fp, num, power) {
  if (power < _0n2)
    throw new Error("invalid exponent, negatives unsupported");
  if (power === _0n2)
    return Fp.ONE;
  if (power === _1n2)
    return num;
  let p = Fp.ONE;
  let d = num;
  while (power > _0n2) {
    if (power & _1n2)
      p = Fp.mul(p, d);
    d = Fp.sqr(d);
    power >>= _1n2;
  }
  return p;
}
function FpInvertBatch(Fp, nums, passZero = false) {
  const inverted = new Array(nums.length).fill(passZero ? Fp.ZERO : void 0);
  const multipliedAcc = nums.reduce((acc, num, i) => {
    if (Fp.is0(num))
      return acc;
    inverted[i] = acc;
    return Fp.mul(acc, num);
  }, Fp.ONE);
  const invertedAcc = Fp.inv(multipliedAcc);
  nums.reduceRight((acc, num, i) => {
    if (Fp.is0(num))
      return acc;
    inverted[i] = Fp.mul(acc, inverted[i]);
    return Fp.mul(acc, num);
  }, invertedAcc);
  return inverted;
}
function FpLegendre(Fp, n) {
  const p1mod2 = (Fp.ORDER - _1n2) / _2n;
  const powered = Fp.pow(n, p1mod2);
  const yes = Fp.eql(powered, Fp.ONE);
  const zero = Fp.eql(powered, Fp.ZERO);
  const no = Fp.eql(powered, Fp.neg(Fp.ONE));
  if (!yes && !zero && !no)
    throw new Error("invalid Legendre symbol result");
  return yes ? 1 : zero ? 0 : -1;
}
function nLength(n, nBitLength) {
  if (nBitLength !== void 0)
    anumber4(nBitLength);
  const _nBitLength = nBitLength !== void 0 ? nBitLength : n.toString(2).length;
  const nByteLength = Math.ceil(_nBitLength / 8);
  return { nBitLength: _nBitLength, nByteLength };
}
var _Field = class {
  ORDER;
  BITS;
  BYTES;
  isLE;
  ZERO = _0n2;
  ONE = _1n2;
  _lengths;
  _sqrt;
  // cached sqrt
  _mod;
  constructor(ORDER, opts2 = {}) {
    if (ORDER <= _0n2)
      throw new Error("invalid field: expected ORDER > 0, got " + ORDER);
    let _nbitLength = void 0;
    this.isLE = false;
    if (opts2 != null && typeof opts2 === "object") {
      if (typeof opts2.BITS === "number")
        _nbitLength = opts2.BITS;
      if (typeof opts2.sqrt === "function")
        this.sqrt = opts2.sqrt;
      if (typeof opts2.isLE === "boolean")
        this.isLE = opts2.isLE;
      if (opts2.allowedLengths)
        this._lengths = opts2.allowedLengths?.slice();
      if (typeof opts2.modFromBytes === "boolean")
        this._mod = opts2.modFromBytes;
    }
    const { nBitLength, nByteLength } = nLength(ORDER, _nbitLength);
    if (nByteLength > 2048)
      throw new Error("invalid field: expected ORDER of <= 2048 bytes");
    this.ORDER = ORDER;
    this.BITS = nBitLength;
    this.BYTES = nByteLength;
    this._sqrt = void 0;
    Object.preventExtensions(this);
  }
  create(num) {
    return mod(num, this.ORDER);
  }
  isValid(num) {
    if (typeof num !== "bigint")
      throw new Error("invalid field element: expected bigint, got " + typeof num);
    return _0n2 <= num && num < this.ORDER;
  }
  is0(num) {
    return num === _0n2;
  }
  // is valid and invertible
  isValidNot0(num) {
    return !this.is0(num) && this.isValid(num);
  }
  isOdd(num) {
    return (num & _1n2) === _1n2;
  }
  neg(num) {
    return mod(-num, this.ORDER);
  }
  eql(lhs, rhs) {
    return lhs === rhs;
  }
  sqr(num) {
    return mod(num * num, this.ORDER);
  }
  add(lhs, rhs) {
    return mod(lhs + rhs, this.ORDER);
  }
  sub(lhs, rhs) {
    return mod(lhs - rhs, this.ORDER);
  }
  mul(lhs, rhs) {
    return mod(lhs * rhs, this.ORDER);
  }
  pow(num, power) {
    return FpPow(this, num, power);
  }
  div(lhs, rhs) {
    return mod(lhs * invert(rhs, this.ORDER), this.ORDER);
  }
  // Same as above, but doesn't normalize
  sqrN(num) {
    return num * num;
  }
  addN(lhs, rhs) {
    return lhs + rhs;
  }
  subN(lhs, rhs) {
    return lhs - rhs;
  }
  mulN(lhs, rhs) {
    return lhs * rhs;
  }
  inv(num) {
    return invert(num, this.ORDER);
  }
  sqrt(num) {
    if (!this._sqrt)
      this._sqrt = FpSqrt(this.ORDER);
    return this._sqrt(this, num);
  }
  toBytes(num) {
    return this.isLE ? numberToBytesLE(num, this.BYTES) : numberToBytesBE(num, this.BYTES);
  }
  fromBytes(bytes, skipValidation = false) {
    abytes4(bytes);
    const { _lengths: allowedLengths, BYTES, isLE: isLE4, ORDER, _mod: modFromBytes } = this;
    if (allowedLengths) {
      if (!allowedLengths.includes(bytes.length) || bytes.length > BYTES) {
        throw new Error("Field.fromBytes: expected " + allowedLengths + " bytes, got " + bytes.length);
      }
      const padded = new Uint8Array(BYTES);
      padded.set(bytes, isLE4 ? 0 : padded.length - bytes.length);
      bytes = padded;
    }
    if (bytes.length !== BYTES)
      throw new Error("Field.fromBytes: expected " + BYTES + " bytes, got " + bytes.length);
    let scalar = isLE4 ? bytesToNumberLE(bytes) : bytesToNumberBE(bytes);
    if (modFromBytes)
      scalar = mod(scalar, ORDER);
    if (!skipValidation) {
      if (!this.isValid(scalar))
        throw new Error("invalid field element: outside of range 0..ORDER");
    }
    return scalar;
  }
  // TODO: we don't need it here, move out to separate fn
  invertBatch(lst) {
    return FpInvertBatch(this, lst);
  }
  // We can't move this out because Fp6, Fp12 implement it
  // and it's unclear what to return in there.
  cmov(a, b, condition) {
    return condition ? b : a;
  }
};
function Field(ORDER, opts2 = {}) {
  return new _Field(ORDER, opts2);
}
function getFieldBytesLength(fieldOrder) {
  if (typeof fieldOrder !== "bigint")
    throw new Error("field order must be bigint");
  const bitLength2 = fieldOrder.toString(2).length;
  return Math.ceil(bitLength2 / 8);
}
function getMinHashLength(fieldOrder) {
  const length = getFieldBytesLength(fieldOrder);
  return length + Math.ceil(length / 2);
}
function mapHashToField(key, fieldOrder, isLE4 = false) {
  abytes4(key);
  const len = key.length;
  const fieldLen = getFieldBytesLength(fieldOrder);
  const minLen = getMinHashLength(fieldOrder);
  if (len < 16 || len < minLen || len > 1024)
    throw new Error("expected " + minLen + "-1024 bytes of input, got " + len);
  const num = isLE4 ? bytesToNumberLE(key) : bytesToNumberBE(key);
  const reduced = mod(num, fieldOrder - _1n2) + _1n2;
  return isLE4 ? numberToBytesLE(reduced, fieldLen) : numberToBytesBE(reduced, fieldLen);
}

// node_modules/@noble/post-quantum/node_modules/@noble/curves/abstract/curve.js
/*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
var _0n3 = /* @__PURE__ */ BigInt(0);
var _1n3 = /* @__PURE__ */ BigInt(1);
function negateCt(condition, item) {
  const neg = item.negate();
  return condition ? neg : item;
}
function normalizeZ(c, points) {
  const invertedZs = FpInvertBatch(c.Fp, points.map((p) => p.Z));
  return points.map((p, i) => c.fromAffine(p.toAffine(invertedZs[i])));
}
function validateW(W, bits) {
  if (!Number.isSafeInteger(W) || W <= 0 || W > bits)
    throw new Error("invalid window size, expected [1.." + bits + "], got W=" + W);
}
function calcWOpts(W, scalarBits) {
  validateW(W, scalarBits);
  const windows = Math.ceil(scalarBits / W) + 1;
  const windowSize = 2 ** (W - 1);
  const maxNumber = 2 ** W;
  const mask = bitMask(W);
  const shiftBy = BigInt(W);
  return { windows, windowSize, mask, maxNumber, shiftBy };
}
function calcOffsets(n, window2, wOpts) {
  const { windowSize, mask, maxNumber, shiftBy } = wOpts;
  let wbits = Number(n & mask);
  let nextN = n >> shiftBy;
  if (wbits > windowSize) {
    wbits -= maxNumber;
    nextN += _1n3;
  }
  const offsetStart = window2 * windowSize;
  const offset = offsetStart + Math.abs(wbits) - 1;
  const isZero = wbits === 0;
  const isNeg = wbits < 0;
  const isNegF = window2 % 2 !== 0;
  const offsetF = offsetStart;
  return { nextN, offset, isZero, isNeg, isNegF, offsetF };
}
var pointPrecomputes = /* @__PURE__ */ new WeakMap();
var pointWindowSizes = /* @__PURE__ */ new WeakMap();
function getW(P) {
  return pointWindowSizes.get(P) || 1;
}
function assert0(n) {
  if (n !== _0n3)
    throw new Error("invalid wNAF");
}
var wNAF = class {
  BASE;
  ZERO;
  Fn;
  bits;
  // Parametrized with a given Point class (not individual point)
  constructor(Point, bits) {
    this.BASE = Point.BASE;
    this.ZERO = Point.ZERO;
    this.Fn = Point.Fn;
    this.bits = bits;
  }
  // non-const time multiplication ladder
  _unsafeLadder(elm, n, p = this.ZERO) {
    let d = elm;
    while (n > _0n3) {
      if (n & _1n3)
        p = p.add(d);
      d = d.double();
      n >>= _1n3;
    }
    return p;
  }
  /**
   * Creates a wNAF precomputation window. Used for caching.
   * Default window size is set by `utils.precompute()` and is equal to 8.
   * Number of precomputed points depends on the curve size:
   * 2^(𝑊−1) * (Math.ceil(𝑛 / 𝑊) + 1), where:
   * - 𝑊 is the window size
   * - 𝑛 is the bitlength of the curve order.
   * For a 256-bit curve and window size 8, the number of precomputed points is 128 * 33 = 4224.
   * @param point Point instance
   * @param W window size
   * @returns precomputed point tables flattened to a single array
   */
  precomputeWindow(point, W) {
    const { windows, windowSize } = calcWOpts(W, this.bits);
    const points = [];
    let p = point;
    let base = p;
    for (let window2 = 0; window2 < windows; window2++) {
      base = p;
      points.push(base);
      for (let i = 1; i < windowSize; i++) {
        base = base.add(p);
        points.push(base);
      }
      p = base.double();
    }
    return points;
  }
  /**
   * Implements ec multiplication using precomputed tables and w-ary non-adjacent form.
   * More compact implementation:
   * https://github.com/paulmillr/noble-secp256k1/blob/47cb1669b6e506ad66b35fe7d76132ae97465da2/index.ts#L502-L541
   * @returns real and fake (for const-time) points
   */
  wNAF(W, precomputes, n) {
    if (!this.Fn.isValid(n))
      throw new Error("invalid scalar");
    let p = this.ZERO;
    let f = this.BASE;
    const wo = calcWOpts(W, this.bits);
    for (let window2 = 0; window2 < wo.windows; window2++) {
      const { nextN, offset, isZero, isNeg, isNegF, offsetF } = calcOffsets(n, window2, wo);
      n = nextN;
      if (isZero) {
        f = f.add(negateCt(isNegF, precomputes[offsetF]));
      } else {
        p = p.add(negateCt(isNeg, precomputes[offset]));
      }
    }
    assert0(n);
    return { p, f };
  }
  /**
   * Implements ec unsafe (non const-time) multiplication using precomputed tables and w-ary non-adjacent form.
   * @param acc accumulator point to add result of multiplication
   * @returns point
   */
  wNAFUnsafe(W, precomputes, n, acc = this.ZERO) {
    const wo = calcWOpts(W, this.bits);
    for (let window2 = 0; window2 < wo.windows; window2++) {
      if (n === _0n3)
        break;
      const { nextN, offset, isZero, isNeg } = calcOffsets(n, window2, wo);
      n = nextN;
      if (isZero) {
        continue;
      } else {
        const item = precomputes[offset];
        acc = acc.add(isNeg ? item.negate() : item);
      }
    }
    assert0(n);
    return acc;
  }
  getPrecomputes(W, point, transform) {
    let comp = pointPrecomputes.get(point);
    if (!comp) {
      comp = this.precomputeWindow(point, W);
      if (W !== 1) {
        if (typeof transform === "function")
          comp = transform(comp);
        pointPrecomputes.set(point, comp);
      }
    }
    return comp;
  }
  cached(point, scalar, transform) {
    const W = getW(point);
    return this.wNAF(W, this.getPrecomputes(W, point, transform), scalar);
  }
  unsafe(point, scalar, transform, prev) {
    const W = getW(point);
    if (W === 1)
      return this._unsafeLadder(point, scalar, prev);
    return this.wNAFUnsafe(W, this.getPrecomputes(W, point, transform), scalar, prev);
  }
  // We calculate precomputes for elliptic curve point multiplication
  // using windowed method. This specifies window size and
  // stores precomputed values. Usually only base point would be precomputed.
  createCache(P, W) {
    validateW(W, this.bits);
    pointWindowSizes.set(P, W);
    pointPrecomputes.delete(P);
  }
  hasCache(elm) {
    return getW(elm) !== 1;
  }
};
function mulEndoUnsafe(Point, point, k1, k2) {
  let acc = point;
  let p1 = Point.ZERO;
  let p2 = Point.ZERO;
  while (k1 > _0n3 || k2 > _0n3) {
    if (k1 & _1n3)
      p1 = p1.add(acc);
    if (k2 & _1n3)
      p2 = p2.add(acc);
    acc = acc.double();
    k1 >>= _1n3;
    k2 >>= _1n3;
  }
  return { p1, p2 };
}
function createField(order, field, isLE4) {
  if (field) {
    if (field.ORDER !== order)
      throw new Error("Field.ORDER must match order: Fp == p, Fn == n");
    validateField(field);
    return field;
  } else {
    return Field(order, { isLE: isLE4 });
  }
}
function createCurveFields(type, CURVE, curveOpts = {}, FpFnLE) {
  if (FpFnLE === void 0)
    FpFnLE = type === "edwards";
  if (!CURVE || typeof CURVE !== "object")
    throw new Error(`expected valid ${type} CURVE object`);
  for (const p of ["p", "n", "h"]) {
    const val = CURVE[p];
    if (!(typeof val === "bigint" && val > _0n3))
      throw new Error(`CURVE.${p} must be positive bigint`);
  }
  const Fp = createField(CURVE.p, curveOpts.Fp, FpFnLE);
  const Fn = createField(CURVE.n, curveOpts.Fn, FpFnLE);
  const _b = type === "weierstrass" ? "b" : "d";
  const params = ["Gx", "Gy", "a", _b];
  for (const p of params) {
    if (!Fp.isValid(CURVE[p]))
      throw new Error(`CURVE.${p} must be valid field element of CURVE.Fp`);
  }
  CURVE = Object.freeze(Object.assign({}, CURVE));
  return { CURVE, Fp, Fn };
}
function createKeygen(randomSecretKey, getPublicKey) {
  return function keygen(seed) {
    const secretKey = randomSecretKey(seed);
    return { secretKey, publicKey: getPublicKey(secretKey) };
  };
}

// node_modules/@noble/post-quantum/node_modules/@noble/curves/abstract/montgomery.js
/*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
var _0n4 = BigInt(0);
var _1n4 = BigInt(1);
var _2n2 = BigInt(2);
function validateOpts(curve) {
  validateObject(curve, {
    adjustScalarBytes: "function",
    powPminus2: "function"
  });
  return Object.freeze({ ...curve });
}
function montgomery(curveDef) {
  const CURVE = validateOpts(curveDef);
  const { P, type, adjustScalarBytes: adjustScalarBytes3, powPminus2, randomBytes: rand } = CURVE;
  const is25519 = type === "x25519";
  if (!is25519 && type !== "x448")
    throw new Error("invalid type");
  const randomBytes_ = rand || randomBytes3;
  const montgomeryBits = is25519 ? 255 : 448;
  const fieldLen = is25519 ? 32 : 56;
  const Gu = is25519 ? BigInt(9) : BigInt(5);
  const a24 = is25519 ? BigInt(121665) : BigInt(39081);
  const minScalar = is25519 ? _2n2 ** BigInt(254) : _2n2 ** BigInt(447);
  const maxAdded = is25519 ? BigInt(8) * _2n2 ** BigInt(251) - _1n4 : BigInt(4) * _2n2 ** BigInt(445) - _1n4;
  const maxScalar = minScalar + maxAdded + _1n4;
  const modP = (n) => mod(n, P);
  const GuBytes = encodeU(Gu);
  function encodeU(u) {
    return numberToBytesLE(modP(u), fieldLen);
  }
  function decodeU(u) {
    const _u = copyBytes2(abytes4(u, fieldLen, "uCoordinate"));
    if (is25519)
      _u[31] &= 127;
    return modP(bytesToNumberLE(_u));
  }
  function decodeScalar(scalar) {
    return bytesToNumberLE(adjustScalarBytes3(copyBytes2(abytes4(scalar, fieldLen, "scalar"))));
  }
  function scalarMult2(scalar, u) {
    const pu = montgomeryLadder(decodeU(u), decodeScalar(scalar));
    if (pu === _0n4)
      throw new Error("invalid private or public key received");
    return encodeU(pu);
  }
  function scalarMultBase2(scalar) {
    return scalarMult2(scalar, GuBytes);
  }
  const getPublicKey = scalarMultBase2;
  const getSharedSecret = scalarMult2;
  function cswap2(swap, x_2, x_3) {
    const dummy = modP(swap * (x_2 - x_3));
    x_2 = modP(x_2 - dummy);
    x_3 = modP(x_3 + dummy);
    return { x_2, x_3 };
  }
  function montgomeryLadder(u, scalar) {
    aInRange("u", u, _0n4, P);
    aInRange("scalar", scalar, minScalar, maxScalar);
    const k = scalar;
    const x_1 = u;
    let x_2 = _1n4;
    let z_2 = _0n4;
    let x_3 = u;
    let z_3 = _1n4;
    let swap = _0n4;
    for (let t = BigInt(montgomeryBits - 1); t >= _0n4; t--) {
      const k_t = k >> t & _1n4;
      swap ^= k_t;
      ({ x_2, x_3 } = cswap2(swap, x_2, x_3));
      ({ x_2: z_2, x_3: z_3 } = cswap2(swap, z_2, z_3));
      swap = k_t;
      const A = x_2 + z_2;
      const AA = modP(A * A);
      const B = x_2 - z_2;
      const BB = modP(B * B);
      const E = AA - BB;
      const C = x_3 + z_3;
      const D = x_3 - z_3;
      const DA = modP(D * A);
      const CB = modP(C * B);
      const dacb = DA + CB;
      const da_cb = DA - CB;
      x_3 = modP(dacb * dacb);
      z_3 = modP(x_1 * modP(da_cb * da_cb));
      x_2 = modP(AA * BB);
      z_2 = modP(E * (AA + modP(a24 * E)));
    }
    ({ x_2, x_3 } = cswap2(swap, x_2, x_3));
    ({ x_2: z_2, x_3: z_3 } = cswap2(swap, z_2, z_3));
    const z2 = powPminus2(z_2);
    return modP(x_2 * z2);
  }
  const lengths = {
    secretKey: fieldLen,
    publicKey: fieldLen,
    seed: fieldLen
  };
  const randomSecretKey = (seed = randomBytes_(fieldLen)) => {
    abytes4(seed, lengths.seed, "seed");
    return seed;
  };
  const utils = { randomSecretKey };
  return Object.freeze({
    keygen: createKeygen(randomSecretKey, getPublicKey),
    getSharedSecret,
    getPublicKey,
    scalarMult: scalarMult2,
    scalarMultBase: scalarMultBase2,
    utils,
    GuBytes: GuBytes.slice(),
    lengths
  });
}

// node_modules/@noble/post-quantum/node_modules/@noble/hashes/hmac.js
var _HMAC2 = class {
  oHash;
  iHash;
  blockLen;
  outputLen;
  finished = false;
  destroyed = false;
  constructor(hash, key) {
    ahash2(hash);
    abytes4(key, void 0, "key");
    this.iHash = hash.create();
    if (typeof this.iHash.update !== "function")
      throw new Error("Expected instance of class which extends utils.Hash");
    this.blockLen = this.iHash.blockLen;
    this.outputLen = this.iHash.outputLen;
    const blockLen = this.blockLen;
    const pad = new Uint8Array(blockLen);
    pad.set(key.length > blockLen ? hash.create().update(key).digest() : key);
    for (let i = 0; i < pad.length; i++)
      pad[i] ^= 54;
    this.iHash.update(pad);
    this.oHash = hash.create();
    for (let i = 0; i < pad.length; i++)
      pad[i] ^= 54 ^ 92;
    this.oHash.update(pad);
    clean3(pad);
  }
  update(buf) {
    aexists3(this);
    this.iHash.update(buf);
    return this;
  }
  digestInto(out) {
    aexists3(this);
    abytes4(out, this.outputLen, "output");
    this.finished = true;
    this.iHash.digestInto(out);
    this.oHash.update(out);
    this.oHash.digestInto(out);
    this.destroy();
  }
  digest() {
    const out = new Uint8Array(this.oHash.outputLen);
    this.digestInto(out);
    return out;
  }
  _cloneInto(to) {
    to ||= Object.create(Object.getPrototypeOf(this), {});
    const { oHash, iHash, finished, destroyed, blockLen, outputLen } = this;
    to = to;
    to.finished = finished;
    to.destroyed = destroyed;
    to.blockLen = blockLen;
    to.outputLen = outputLen;
    to.oHash = oHash._cloneInto(to.oHash);
    to.iHash = iHash._cloneInto(to.iHash);
    return to;
  }
  clone() {
    return this._cloneInto();
  }
  destroy() {
    this.destroyed = true;
    this.oHash.destroy();
    this.iHash.destroy();
  }
};
var hmac2 = (hash, key, message) => new _HMAC2(hash, key).update(message).digest();
hmac2.create = (hash, key) => new _HMAC2(hash, key);

// node_modules/@noble/post-quantum/node_modules/@noble/curves/abstract/weierstrass.js
/*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
var divNearest = (num, den) => (num + (num >= 0 ? den : -den) / _2n3) / den;
function _splitEndoScalar(k, basis, n) {
  const [[a1, b1], [a2, b2]] = basis;
  const c1 = divNearest(b2 * k, n);
  const c2 = divNearest(-b1 * k, n);
  let k1 = k - c1 * a1 - c2 * a2;
  let k2 = -c1 * b1 - c2 * b2;
  const k1neg = k1 < _0n5;
  const k2neg = k2 < _0n5;
  if (k1neg)
    k1 = -k1;
  if (k2neg)
    k2 = -k2;
  const MAX_NUM = bitMask(Math.ceil(bitLen(n) / 2)) + _1n5;
  if (k1 < _0n5 || k1 >= MAX_NUM || k2 < _0n5 || k2 >= MAX_NUM) {
    throw new Error("splitScalar (endomorphism): failed, k=" + k);
  }
  return { k1neg, k1, k2neg, k2 };
}
function validateSigFormat(format) {
  if (!["compact", "recovered", "der"].includes(format))
    throw new Error('Signature format must be "compact", "recovered", or "der"');
  return format;
}
function validateSigOpts(opts2, def) {
  const optsn = {};
  for (let optName of Object.keys(def)) {
    optsn[optName] = opts2[optName] === void 0 ? def[optName] : opts2[optName];
  }
  abool2(optsn.lowS, "lowS");
  abool2(optsn.prehash, "prehash");
  if (optsn.format !== void 0)
    validateSigFormat(optsn.format);
  return optsn;
}
var DERErr = class extends Error {
  constructor(m = "") {
    super(m);
  }
};
var DER = {
  // asn.1 DER encoding utils
  Err: DERErr,
  // Basic building block is TLV (Tag-Length-Value)
  _tlv: {
    encode: (tag, data) => {
      const { Err: E } = DER;
      if (tag < 0 || tag > 256)
        throw new E("tlv.encode: wrong tag");
      if (data.length & 1)
        throw new E("tlv.encode: unpadded data");
      const dataLen = data.length / 2;
      const len = numberToHexUnpadded(dataLen);
      if (len.length / 2 & 128)
        throw new E("tlv.encode: long form length too big");
      const lenLen = dataLen > 127 ? numberToHexUnpadded(len.length / 2 | 128) : "";
      const t = numberToHexUnpadded(tag);
      return t + lenLen + len + data;
    },
    // v - value, l - left bytes (unparsed)
    decode(tag, data) {
      const { Err: E } = DER;
      let pos = 0;
      if (tag < 0 || tag > 256)
        throw new E("tlv.encode: wrong tag");
      if (data.length < 2 || data[pos++] !== tag)
        throw new E("tlv.decode: wrong tlv");
      const first = data[pos++];
      const isLong = !!(first & 128);
      let length = 0;
      if (!isLong)
        length = first;
      else {
        const lenLen = first & 127;
        if (!lenLen)
          throw new E("tlv.decode(long): indefinite length not supported");
        if (lenLen > 4)
          throw new E("tlv.decode(long): byte length is too big");
        const lengthBytes = data.subarray(pos, pos + lenLen);
        if (lengthBytes.length !== lenLen)
          throw new E("tlv.decode: length bytes not complete");
        if (lengthBytes[0] === 0)
          throw new E("tlv.decode(long): zero leftmost byte");
        for (const b of lengthBytes)
          length = length << 8 | b;
        pos += lenLen;
        if (length < 128)
          throw new E("tlv.decode(long): not minimal encoding");
      }
      const v = data.subarray(pos, pos + length);
      if (v.length !== length)
        throw new E("tlv.decode: wrong value length");
      return { v, l: data.subarray(pos + length) };
    }
  },
  // https://crypto.stackexchange.com/a/57734 Leftmost bit of first byte is 'negative' flag,
  // since we always use positive integers here. It must always be empty:
  // - add zero byte if exists
  // - if next byte doesn't have a flag, leading zero is not allowed (minimal encoding)
  _int: {
    encode(num) {
      const { Err: E } = DER;
      if (num < _0n5)
        throw new E("integer: negative integers are not allowed");
      let hex = numberToHexUnpadded(num);
      if (Number.parseInt(hex[0], 16) & 8)
        hex = "00" + hex;
      if (hex.length & 1)
        throw new E("unexpected DER parsing assertion: unpadded hex");
      return hex;
    },
    decode(data) {
      const { Err: E } = DER;
      if (data[0] & 128)
        throw new E("invalid signature integer: negative");
      if (data[0] === 0 && !(data[1] & 128))
        throw new E("invalid signature integer: unnecessary leading zero");
      return bytesToNumberBE(data);
    }
  },
  toSig(bytes) {
    const { Err: E, _int: int, _tlv: tlv } = DER;
    const data = abytes4(bytes, void 0, "signature");
    const { v: seqBytes, l: seqLeftBytes } = tlv.decode(48, data);
    if (seqLeftBytes.length)
      throw new E("invalid signature: left bytes after parsing");
    const { v: rBytes, l: rLeftBytes } = tlv.decode(2, seqBytes);
    const { v: sBytes, l: sLeftBytes } = tlv.decode(2, rLeftBytes);
    if (sLeftBytes.length)
      throw new E("invalid signature: left bytes after parsing");
    return { r: int.decode(rBytes), s: int.decode(sBytes) };
  },
  hexFromSig(sig) {
    const { _tlv: tlv, _int: int } = DER;
    const rs = tlv.encode(2, int.encode(sig.r));
    const ss = tlv.encode(2, int.encode(sig.s));
    const seq = rs + ss;
    return tlv.encode(48, seq);
  }
};
var _0n5 = BigInt(0);
var _1n5 = BigInt(1);
var _2n3 = BigInt(2);
var _3n2 = BigInt(3);
var _4n2 = BigInt(4);
function weierstrass(params, extraOpts = {}) {
  const validated = createCurveFields("weierstrass", params, extraOpts);
  const { Fp, Fn } = validated;
  let CURVE = validated.CURVE;
  const { h: cofactor, n: CURVE_ORDER } = CURVE;
  validateObject(extraOpts, {}, {
    allowInfinityPoint: "boolean",
    clearCofactor: "function",
    isTorsionFree: "function",
    fromBytes: "function",
    toBytes: "function",
    endo: "object"
  });
  const { endo } = extraOpts;
  if (endo) {
    if (!Fp.is0(CURVE.a) || typeof endo.beta !== "bigint" || !Array.isArray(endo.basises)) {
      throw new Error('invalid endo: expected "beta": bigint and "basises": array');
    }
  }
  const lengths = getWLengths(Fp, Fn);
  function assertCompressionIsSupported() {
    if (!Fp.isOdd)
      throw new Error("compression is not supported: Field does not have .isOdd()");
  }
  function pointToBytes(_c, point, isCompressed) {
    const { x, y } = point.toAffine();
    const bx = Fp.toBytes(x);
    abool2(isCompressed, "isCompressed");
    if (isCompressed) {
      assertCompressionIsSupported();
      const hasEvenY = !Fp.isOdd(y);
      return concatBytes2(pprefix(hasEvenY), bx);
    } else {
      return concatBytes2(Uint8Array.of(4), bx, Fp.toBytes(y));
    }
  }
  function pointFromBytes(bytes) {
    abytes4(bytes, void 0, "Point");
    const { publicKey: comp, publicKeyUncompressed: uncomp } = lengths;
    const length = bytes.length;
    const head = bytes[0];
    const tail = bytes.subarray(1);
    if (length === comp && (head === 2 || head === 3)) {
      const x = Fp.fromBytes(tail);
      if (!Fp.isValid(x))
        throw new Error("bad point: is not on curve, wrong x");
      const y2 = weierstrassEquation(x);
      let y;
      try {
        y = Fp.sqrt(y2);
      } catch (sqrtError) {
        const err = sqrtError instanceof Error ? ": " + sqrtError.message : "";
        throw new Error("bad point: is not on curve, sqrt error" + err);
      }
      assertCompressionIsSupported();
      const evenY = Fp.isOdd(y);
      const evenH = (head & 1) === 1;
      if (evenH !== evenY)
        y = Fp.neg(y);
      return { x, y };
    } else if (length === uncomp && head === 4) {
      const L = Fp.BYTES;
      const x = Fp.fromBytes(tail.subarray(0, L));
      const y = Fp.fromBytes(tail.subarray(L, L * 2));
      if (!isValidXY(x, y))
        throw new Error("bad point: is not on curve");
      return { x, y };
    } else {
      throw new Error(`bad point: got length ${length}, expected compressed=${comp} or uncompressed=${uncomp}`);
    }
  }
  const encodePoint = extraOpts.toBytes || pointToBytes;
  const decodePoint = extraOpts.fromBytes || pointFromBytes;
  function weierstrassEquation(x) {
    const x2 = Fp.sqr(x);
    const x3 = Fp.mul(x2, x);
    return Fp.add(Fp.add(x3, Fp.mul(x, CURVE.a)), CURVE.b);
  }
  function isValidXY(x, y) {
    const left = Fp.sqr(y);
    const right = weierstrassEquation(x);
    return Fp.eql(left, right);
  }
  if (!isValidXY(CURVE.Gx, CURVE.Gy))
    throw new Error("bad curve params: generator point");
  const _4a3 = Fp.mul(Fp.pow(CURVE.a, _3n2), _4n2);
  const _27b2 = Fp.mul(Fp.sqr(CURVE.b), BigInt(27));
  if (Fp.is0(Fp.add(_4a3, _27b2)))
    throw new Error("bad curve params: a or b");
  function acoord(title, n, banZero = false) {
    if (!Fp.isValid(n) || banZero && Fp.is0(n))
      throw new Error(`bad point coordinate ${title}`);
    return n;
  }
  function aprjpoint(other) {
    if (!(other instanceof Point))
      throw new Error("Weierstrass Point expected");
  }
  function splitEndoScalarN(k) {
    if (!endo || !endo.basises)
      throw new Error("no endo");
    return _splitEndoScalar(k, endo.basises, Fn.ORDER);
  }
  const toAffineMemo = memoized((p, iz) => {
    const { X, Y, Z } = p;
    if (Fp.eql(Z, Fp.ONE))
      return { x: X, y: Y };
    const is0 = p.is0();
    if (iz == null)
      iz = is0 ? Fp.ONE : Fp.inv(Z);
    const x = Fp.mul(X, iz);
    const y = Fp.mul(Y, iz);
    const zz = Fp.mul(Z, iz);
    if (is0)
      return { x: Fp.ZERO, y: Fp.ZERO };
    if (!Fp.eql(zz, Fp.ONE))
      throw new Error("invZ was invalid");
    return { x, y };
  });
  const assertValidMemo = memoized((p) => {
    if (p.is0()) {
      if (extraOpts.allowInfinityPoint && !Fp.is0(p.Y))
        return;
      throw new Error("bad point: ZERO");
    }
    const { x, y } = p.toAffine();
    if (!Fp.isValid(x) || !Fp.isValid(y))
      throw new Error("bad point: x or y not field elements");
    if (!isValidXY(x, y))
      throw new Error("bad point: equation left != right");
    if (!p.isTorsionFree())
      throw new Error("bad point: not in prime-order subgroup");
    return true;
  });
  function finishEndo(endoBeta, k1p, k2p, k1neg, k2neg) {
    k2p = new Point(Fp.mul(k2p.X, endoBeta), k2p.Y, k2p.Z);
    k1p = negateCt(k1neg, k1p);
    k2p = negateCt(k2neg, k2p);
    return k1p.add(k2p);
  }
  class Point {
    // base / generator point
    static BASE = new Point(CURVE.Gx, CURVE.Gy, Fp.ONE);
    // zero / infinity / identity point
    static ZERO = new Point(Fp.ZERO, Fp.ONE, Fp.ZERO);
    // 0, 1, 0
    // math field
    static Fp = Fp;
    // scalar field
    static Fn = Fn;
    X;
    Y;
    Z;
    /** Does NOT validate if the point is valid. Use `.assertValidity()`. */
    constructor(X, Y, Z) {
      this.X = acoord("x", X);
      this.Y = acoord("y", Y, true);
      this.Z = acoord("z", Z);
      Object.freeze(this);
    }
    static CURVE() {
      return CURVE;
    }
    /** Does NOT validate if the point is valid. Use `.assertValidity()`. */
    static fromAffine(p) {
      const { x, y } = p || {};
      if (!p || !Fp.isValid(x) || !Fp.isValid(y))
        throw new Error("invalid affine point");
      if (p instanceof Point)
        throw new Error("projective point not allowed");
      if (Fp.is0(x) && Fp.is0(y))
        return Point.ZERO;
      return new Point(x, y, Fp.ONE);
    }
    static fromBytes(bytes) {
      const P = Point.fromAffine(decodePoint(abytes4(bytes, void 0, "point")));
      P.assertValidity();
      return P;
    }
    static fromHex(hex) {
      return Point.fromBytes(hexToBytes2(hex));
    }
    get x() {
      return this.toAffine().x;
    }
    get y() {
      return this.toAffine().y;
    }
    /**
     *
     * @param windowSize
     * @param isLazy true will defer table computation until the first multiplication
     * @returns
     */
    precompute(windowSize = 8, isLazy = true) {
      wnaf.createCache(this, windowSize);
      if (!isLazy)
        this.multiply(_3n2);
      return this;
    }
    // TODO: return `this`
    /** A point on curve is valid if it conforms to equation. */
    assertValidity() {
      assertValidMemo(this);
    }
    hasEvenY() {
      const { y } = this.toAffine();
      if (!Fp.isOdd)
        throw new Error("Field doesn't support isOdd");
      return !Fp.isOdd(y);
    }
    /** Compare one point to another. */
    equals(other) {
      aprjpoint(other);
      const { X: X1, Y: Y1, Z: Z1 } = this;
      const { X: X2, Y: Y2, Z: Z2 } = other;
      const U1 = Fp.eql(Fp.mul(X1, Z2), Fp.mul(X2, Z1));
      const U2 = Fp.eql(Fp.mul(Y1, Z2), Fp.mul(Y2, Z1));
      return U1 && U2;
    }
    /** Flips point to one corresponding to (x, -y) in Affine coordinates. */
    negate() {
      return new Point(this.X, Fp.neg(this.Y), this.Z);
    }
    // Renes-Costello-Batina exception-free doubling formula.
    // There is 30% faster Jacobian formula, but it is not complete.
    // https://eprint.iacr.org/2015/1060, algorithm 3
    // Cost: 8M + 3S + 3*a + 2*b3 + 15add.
    double() {
      const { a, b } = CURVE;
      const b3 = Fp.mul(b, _3n2);
      const { X: X1, Y: Y1, Z: Z1 } = this;
      let X3 = Fp.ZERO, Y3 = Fp.ZERO, Z3 = Fp.ZERO;
      let t0 = Fp.mul(X1, X1);
      let t1 = Fp.mul(Y1, Y1);
      let t2 = Fp.mul(Z1, Z1);
      let t3 = Fp.mul(X1, Y1);
      t3 = Fp.add(t3, t3);
      Z3 = Fp.mul(X1, Z1);
      Z3 = Fp.add(Z3, Z3);
      X3 = Fp.mul(a, Z3);
      Y3 = Fp.mul(b3, t2);
      Y3 = Fp.add(X3, Y3);
      X3 = Fp.sub(t1, Y3);
      Y3 = Fp.add(t1, Y3);
      Y3 = Fp.mul(X3, Y3);
      X3 = Fp.mul(t3, X3);
      Z3 = Fp.mul(b3, Z3);
      t2 = Fp.mul(a, t2);
      t3 = Fp.sub(t0, t2);
      t3 = Fp.mul(a, t3);
      t3 = Fp.add(t3, Z3);
      Z3 = Fp.add(t0, t0);
      t0 = Fp.add(Z3, t0);
      t0 = Fp.add(t0, t2);
      t0 = Fp.mul(t0, t3);
      Y3 = Fp.add(Y3, t0);
      t2 = Fp.mul(Y1, Z1);
      t2 = Fp.add(t2, t2);
      t0 = Fp.mul(t2, t3);
      X3 = Fp.sub(X3, t0);
      Z3 = Fp.mul(t2, t1);
      Z3 = Fp.add(Z3, Z3);
      Z3 = Fp.add(Z3, Z3);
      return new Point(X3, Y3, Z3);
    }
    // Renes-Costello-Batina exception-free addition formula.
    // There is 30% faster Jacobian formula, but it is not complete.
    // https://eprint.iacr.org/2015/1060, algorithm 1
    // Cost: 12M + 0S + 3*a + 3*b3 + 23add.
    add(other) {
      aprjpoint(other);
      const { X: X1, Y: Y1, Z: Z1 } = this;
      const { X: X2, Y: Y2, Z: Z2 } = other;
      let X3 = Fp.ZERO, Y3 = Fp.ZERO, Z3 = Fp.ZERO;
      const a = CURVE.a;
      const b3 = Fp.mul(CURVE.b, _3n2);
      let t0 = Fp.mul(X1, X2);
      let t1 = Fp.mul(Y1, Y2);
      let t2 = Fp.mul(Z1, Z2);
      let t3 = Fp.add(X1, Y1);
      let t4 = Fp.add(X2, Y2);
      t3 = Fp.mul(t3, t4);
      t4 = Fp.add(t0, t1);
      t3 = Fp.sub(t3, t4);
      t4 = Fp.add(X1, Z1);
      let t5 = Fp.add(X2, Z2);
      t4 = Fp.mul(t4, t5);
      t5 = Fp.add(t0, t2);
      t4 = Fp.sub(t4, t5);
      t5 = Fp.add(Y1, Z1);
      X3 = Fp.add(Y2, Z2);
      t5 = Fp.mul(t5, X3);
      X3 = Fp.add(t1, t2);
      t5 = Fp.sub(t5, X3);
      Z3 = Fp.mul(a, t4);
      X3 = Fp.mul(b3, t2);
      Z3 = Fp.add(X3, Z3);
      X3 = Fp.sub(t1, Z3);
      Z3 = Fp.add(t1, Z3);
      Y3 = Fp.mul(X3, Z3);
      t1 = Fp.add(t0, t0);
      t1 = Fp.add(t1, t0);
      t2 = Fp.mul(a, t2);
      t4 = Fp.mul(b3, t4);
      t1 = Fp.add(t1, t2);
      t2 = Fp.sub(t0, t2);
      t2 = Fp.mul(a, t2);
      t4 = Fp.add(t4, t2);
      t0 = Fp.mul(t1, t4);
      Y3 = Fp.add(Y3, t0);
      t0 = Fp.mul(t5, t4);
      X3 = Fp.mul(t3, X3);
      X3 = Fp.sub(X3, t0);
      t0 = Fp.mul(t3, t1);
      Z3 = Fp.mul(t5, Z3);
      Z3 = Fp.add(Z3, t0);
      return new Point(X3, Y3, Z3);
    }
    subtract(other) {
      return this.add(other.negate());
    }
    is0() {
      return this.equals(Point.ZERO);
    }
    /**
     * Constant time multiplication.
     * Uses wNAF method. Windowed method may be 10% faster,
     * but takes 2x longer to generate and consumes 2x memory.
     * Uses precomputes when available.
     * Uses endomorphism for Koblitz curves.
     * @param scalar by which the point would be multiplied
     * @returns New point
     */
    multiply(scalar) {
      const { endo: endo2 } = extraOpts;
      if (!Fn.isValidNot0(scalar))
        throw new Error("invalid scalar: out of range");
      let point, fake;
      const mul = (n) => wnaf.cached(this, n, (p) => normalizeZ(Point, p));
      if (endo2) {
        const { k1neg, k1, k2neg, k2 } = splitEndoScalarN(scalar);
        const { p: k1p, f: k1f } = mul(k1);
        const { p: k2p, f: k2f } = mul(k2);
        fake = k1f.add(k2f);
        point = finishEndo(endo2.beta, k1p, k2p, k1neg, k2neg);
      } else {
        const { p, f } = mul(scalar);
        point = p;
        fake = f;
      }
      return normalizeZ(Point, [point, fake])[0];
    }
    /**
     * Non-constant-time multiplication. Uses double-and-add algorithm.
     * It's faster, but should only be used when you don't care about
     * an exposed secret key e.g. sig verification, which works over *public* keys.
     */
    multiplyUnsafe(sc) {
      const { endo: endo2 } = extraOpts;
      const p = this;
      if (!Fn.isValid(sc))
        throw new Error("invalid scalar: out of range");
      if (sc === _0n5 || p.is0())
        return Point.ZERO;
      if (sc === _1n5)
        return p;
      if (wnaf.hasCache(this))
        return this.multiply(sc);
      if (endo2) {
        const { k1neg, k1, k2neg, k2 } = splitEndoScalarN(sc);
        const { p1, p2 } = mulEndoUnsafe(Point, p, k1, k2);
        return finishEndo(endo2.beta, p1, p2, k1neg, k2neg);
      } else {
        return wnaf.unsafe(p, sc);
      }
    }
    /**
     * Converts Projective point to affine (x, y) coordinates.
     * @param invertedZ Z^-1 (inverted zero) - optional, precomputation is useful for invertBatch
     */
    toAffine(invertedZ) {
      return toAffineMemo(this, invertedZ);
    }
    /**
     * Checks whether Point is free of torsion elements (is in prime subgroup).
     * Always torsion-free for cofactor=1 curves.
     */
    isTorsionFree() {
      const { isTorsionFree } = extraOpts;
      if (cofactor === _1n5)
        return true;
      if (isTorsionFree)
        return isTorsionFree(Point, this);
      return wnaf.unsafe(this, CURVE_ORDER).is0();
    }
    clearCofactor() {
      const { clearCofactor } = extraOpts;
      if (cofactor === _1n5)
        return this;
      if (clearCofactor)
        return clearCofactor(Point, this);
      return this.multiplyUnsafe(cofactor);
    }
    isSmallOrder() {
      return this.multiplyUnsafe(cofactor).is0();
    }
    toBytes(isCompressed = true) {
      abool2(isCompressed, "isCompressed");
      this.assertValidity();
      return encodePoint(Point, this, isCompressed);
    }
    toHex(isCompressed = true) {
      return bytesToHex2(this.toBytes(isCompressed));
    }
    toString() {
      return `<Point ${this.is0() ? "ZERO" : this.toHex()}>`;
    }
  }
  const bits = Fn.BITS;
  const wnaf = new wNAF(Point, extraOpts.endo ? Math.ceil(bits / 2) : bits);
  Point.BASE.precompute(8);
  return Point;
}
function pprefix(hasEvenY) {
  return Uint8Array.of(hasEvenY ? 2 : 3);
}
function getWLengths(Fp, Fn) {
  return {
    secretKey: Fn.BYTES,
    publicKey: 1 + Fp.BYTES,
    publicKeyUncompressed: 1 + 2 * Fp.BYTES,
    publicKeyHasPrefix: true,
    signature: 2 * Fn.BYTES
  };
}
function ecdh(Point, ecdhOpts = {}) {
  const { Fn } = Point;
  const randomBytes_ = ecdhOpts.randomBytes || randomBytes3;
  const lengths = Object.assign(getWLengths(Point.Fp, Fn), { seed: getMinHashLength(Fn.ORDER) });
  function isValidSecretKey(secretKey) {
    try {
      const num = Fn.fromBytes(secretKey);
      return Fn.isValidNot0(num);
    } catch (error) {
      return false;
    }
  }
  function isValidPublicKey(publicKey, isCompressed) {
    const { publicKey: comp, publicKeyUncompressed } = lengths;
    try {
      const l = publicKey.length;
      if (isCompressed === true && l !== comp)
        return false;
      if (isCompressed === false && l !== publicKeyUncompressed)
        return false;
      return !!Point.fromBytes(publicKey);
    } catch (error) {
      return false;
    }
  }
  function randomSecretKey(seed = randomBytes_(lengths.seed)) {
    return mapHashToField(abytes4(seed, lengths.seed, "seed"), Fn.ORDER);
  }
  function getPublicKey(secretKey, isCompressed = true) {
    return Point.BASE.multiply(Fn.fromBytes(secretKey)).toBytes(isCompressed);
  }
  function isProbPub(item) {
    const { secretKey, publicKey, publicKeyUncompressed } = lengths;
    if (!isBytes4(item))
      return void 0;
    if ("_lengths" in Fn && Fn._lengths || secretKey === publicKey)
      return void 0;
    const l = abytes4(item, void 0, "key").length;
    return l === publicKey || l === publicKeyUncompressed;
  }
  function getSharedSecret(secretKeyA, publicKeyB, isCompressed = true) {
    if (isProbPub(secretKeyA) === true)
      throw new Error("first arg must be private key");
    if (isProbPub(publicKeyB) === false)
      throw new Error("second arg must be public key");
    const s = Fn.fromBytes(secretKeyA);
    const b = Point.fromBytes(publicKeyB);
    return b.multiply(s).toBytes(isCompressed);
  }
  const utils = {
    isValidSecretKey,
    isValidPublicKey,
    randomSecretKey
  };
  const keygen = createKeygen(randomSecretKey, getPublicKey);
  return Object.freeze({ getPublicKey, getSharedSecret, keygen, Point, utils, lengths });
}
function ecdsa(Point, hash, ecdsaOpts = {}) {
  ahash2(hash);
  validateObject(ecdsaOpts, {}, {
    hmac: "function",
    lowS: "boolean",
    randomBytes: "function",
    bits2int: "function",
    bits2int_modN: "function"
  });
  ecdsaOpts = Object.assign({}, ecdsaOpts);
  const randomBytes6 = ecdsaOpts.randomBytes || randomBytes3;
  const hmac3 = ecdsaOpts.hmac || ((key, msg2) => hmac2(hash, key, msg2));
  const { Fp, Fn } = Point;
  const { ORDER: CURVE_ORDER, BITS: fnBits } = Fn;
  const { keygen, getPublicKey, getSharedSecret, utils, lengths } = ecdh(Point, ecdsaOpts);
  const defaultSigOpts = {
    prehash: true,
    lowS: typeof ecdsaOpts.lowS === "boolean" ? ecdsaOpts.lowS : true,
    format: "compact",
    extraEntropy: false
  };
  const hasLargeCofactor = CURVE_ORDER * _2n3 < Fp.ORDER;
  function isBiggerThanHalfOrder(number) {
    const HALF = CURVE_ORDER >> _1n5;
    return number > HALF;
  }
  function validateRS(title, num) {
    if (!Fn.isValidNot0(num))
      throw new Error(`invalid signature ${title}: out of range 1..Point.Fn.ORDER`);
    return num;
  }
  function assertSmallCofactor() {
    if (hasLargeCofactor)
      throw new Error('"recovered" sig type is not supported for cofactor >2 curves');
  }
  function validateSigLength(bytes, format) {
    validateSigFormat(format);
    const size = lengths.signature;
    const sizer = format === "compact" ? size : format === "recovered" ? size + 1 : void 0;
    return abytes4(bytes, sizer);
  }
  class Signature {
    r;
    s;
    recovery;
    constructor(r, s, recovery) {
      this.r = validateRS("r", r);
      this.s = validateRS("s", s);
      if (recovery != null) {
        assertSmallCofactor();
        if (![0, 1, 2, 3].includes(recovery))
          throw new Error("invalid recovery id");
        this.recovery = recovery;
      }
      Object.freeze(this);
    }
    static fromBytes(bytes, format = defaultSigOpts.format) {
      validateSigLength(bytes, format);
      let recid;
      if (format === "der") {
        const { r: r2, s: s2 } = DER.toSig(abytes4(bytes));
        return new Signature(r2, s2);
      }
      if (format === "recovered") {
        recid = bytes[0];
        format = "compact";
        bytes = bytes.subarray(1);
      }
      const L = lengths.signature / 2;
      const r = bytes.subarray(0, L);
      const s = bytes.subarray(L, L * 2);
      return new Signature(Fn.fromBytes(r), Fn.fromBytes(s), recid);
    }
    static fromHex(hex, format) {
      return this.fromBytes(hexToBytes2(hex), format);
    }
    assertRecovery() {
      const { recovery } = this;
      if (recovery == null)
        throw new Error("invalid recovery id: must be present");
      return recovery;
    }
    addRecoveryBit(recovery) {
      return new Signature(this.r, this.s, recovery);
    }
    recoverPublicKey(messageHash) {
      const { r, s } = this;
      const recovery = this.assertRecovery();
      const radj = recovery === 2 || recovery === 3 ? r + CURVE_ORDER : r;
      if (!Fp.isValid(radj))
        throw new Error("invalid recovery id: sig.r+curve.n != R.x");
      const x = Fp.toBytes(radj);
      const R = Point.fromBytes(concatBytes2(pprefix((recovery & 1) === 0), x));
      const ir = Fn.inv(radj);
      const h = bits2int_modN(abytes4(messageHash, void 0, "msgHash"));
      const u1 = Fn.create(-h * ir);
      const u2 = Fn.create(s * ir);
      const Q2 = Point.BASE.multiplyUnsafe(u1).add(R.multiplyUnsafe(u2));
      if (Q2.is0())
        throw new Error("invalid recovery: point at infinify");
      Q2.assertValidity();
      return Q2;
    }
    // Signatures should be low-s, to prevent malleability.
    hasHighS() {
      return isBiggerThanHalfOrder(this.s);
    }
    toBytes(format = defaultSigOpts.format) {
      validateSigFormat(format);
      if (format === "der")
        return hexToBytes2(DER.hexFromSig(this));
      const { r, s } = this;
      const rb = Fn.toBytes(r);
      const sb = Fn.toBytes(s);
      if (format === "recovered") {
        assertSmallCofactor();
        return concatBytes2(Uint8Array.of(this.assertRecovery()), rb, sb);
      }
      return concatBytes2(rb, sb);
    }
    toHex(format) {
      return bytesToHex2(this.toBytes(format));
    }
  }
  const bits2int = ecdsaOpts.bits2int || function bits2int_def(bytes) {
    if (bytes.length > 8192)
      throw new Error("input is too large");
    const num = bytesToNumberBE(bytes);
    const delta = bytes.length * 8 - fnBits;
    return delta > 0 ? num >> BigInt(delta) : num;
  };
  const bits2int_modN = ecdsaOpts.bits2int_modN || function bits2int_modN_def(bytes) {
    return Fn.create(bits2int(bytes));
  };
  const ORDER_MASK = bitMask(fnBits);
  function int2octets(num) {
    aInRange("num < 2^" + fnBits, num, _0n5, ORDER_MASK);
    return Fn.toBytes(num);
  }
  function validateMsgAndHash(message, prehash) {
    abytes4(message, void 0, "message");
    return prehash ? abytes4(hash(message), void 0, "prehashed message") : message;
  }
  function prepSig(message, secretKey, opts2) {
    const { lowS, prehash, extraEntropy } = validateSigOpts(opts2, defaultSigOpts);
    message = validateMsgAndHash(message, prehash);
    const h1int = bits2int_modN(message);
    const d = Fn.fromBytes(secretKey);
    if (!Fn.isValidNot0(d))
      throw new Error("invalid private key");
    const seedArgs = [int2octets(d), int2octets(h1int)];
    if (extraEntropy != null && extraEntropy !== false) {
      const e = extraEntropy === true ? randomBytes6(lengths.secretKey) : extraEntropy;
      seedArgs.push(abytes4(e, void 0, "extraEntropy"));
    }
    const seed = concatBytes2(...seedArgs);
    const m = h1int;
    function k2sig(kBytes) {
      const k = bits2int(kBytes);
      if (!Fn.isValidNot0(k))
        return;
      const ik = Fn.inv(k);
      const q = Point.BASE.multiply(k).toAffine();
      const r = Fn.create(q.x);
      if (r === _0n5)
        return;
      const s = Fn.create(ik * Fn.create(m + r * d));
      if (s === _0n5)
        return;
      let recovery = (q.x === r ? 0 : 2) | Number(q.y & _1n5);
      let normS = s;
      if (lowS && isBiggerThanHalfOrder(s)) {
        normS = Fn.neg(s);
        recovery ^= 1;
      }
      return new Signature(r, normS, hasLargeCofactor ? void 0 : recovery);
    }
    return { seed, k2sig };
  }
  function sign(message, secretKey, opts2 = {}) {
    const { seed, k2sig } = prepSig(message, secretKey, opts2);
    const drbg = createHmacDrbg(hash.outputLen, Fn.BYTES, hmac3);
    const sig = drbg(seed, k2sig);
    return sig.toBytes(opts2.format);
  }
  function verify(signature, message, publicKey, opts2 = {}) {
    const { lowS, prehash, format } = validateSigOpts(opts2, defaultSigOpts);
    publicKey = abytes4(publicKey, void 0, "publicKey");
    message = validateMsgAndHash(message, prehash);
    if (!isBytes4(signature)) {
      const end = signature instanceof Signature ? ", use sig.toBytes()" : "";
      throw new Error("verify expects Uint8Array signature" + end);
    }
    validateSigLength(signature, format);
    try {
      const sig = Signature.fromBytes(signature, format);
      const P = Point.fromBytes(publicKey);
      if (lowS && sig.hasHighS())
        return false;
      const { r, s } = sig;
      const h = bits2int_modN(message);
      const is = Fn.inv(s);
      const u1 = Fn.create(h * is);
      const u2 = Fn.create(r * is);
      const R = Point.BASE.multiplyUnsafe(u1).add(P.multiplyUnsafe(u2));
      if (R.is0())
        return false;
      const v = Fn.create(R.x);
      return v === r;
    } catch (e) {
      return false;
    }
  }
  function recoverPublicKey(signature, message, opts2 = {}) {
    const { prehash } = validateSigOpts(opts2, defaultSigOpts);
    message = validateMsgAndHash(message, prehash);
    return Signature.fromBytes(signature, "recovered").recoverPublicKey(message).toBytes();
  }
  return Object.freeze({
    keygen,
    getPublicKey,
    getSharedSecret,
    utils,
    lengths,
    Point,
    sign,
    verify,
    recoverPublicKey,
    Signature,
    hash
  });
}

// node_modules/@noble/post-quantum/node_modules/@noble/hashes/_md.js
function Chi2(a, b, c) {
  return a & b ^ ~a & c;
}
function Maj2(a, b, c) {
  return a & b ^ a & c ^ b & c;
}
var HashMD2 = class {
  blockLen;
  outputLen;
  padOffset;
  isLE;
  // For partial updates less than block size
  buffer;
  view;
  finished = false;
  length = 0;
  pos = 0;
  destroyed = false;
  constructor(blockLen, outputLen, padOffset, isLE4) {
    this.blockLen = blockLen;
    this.outputLen = outputLen;
    this.padOffset = padOffset;
    this.isLE = isLE4;
    this.buffer = new Uint8Array(blockLen);
    this.view = createView3(this.buffer);
  }
  update(data) {
    aexists3(this);
    abytes4(data);
    const { view, buffer, blockLen } = this;
    const len = data.length;
    for (let pos = 0; pos < len; ) {
      const take = Math.min(blockLen - this.pos, len - pos);
      if (take === blockLen) {
        const dataView = createView3(data);
        for (; blockLen <= len - pos; pos += blockLen)
          this.process(dataView, pos);
        continue;
      }
      buffer.set(data.subarray(pos, pos + take), this.pos);
      this.pos += take;
      pos += take;
      if (this.pos === blockLen) {
        this.process(view, 0);
        this.pos = 0;
      }
    }
    this.length += data.length;
    this.roundClean();
    return this;
  }
  digestInto(out) {
    aexists3(this);
    aoutput3(out, this);
    this.finished = true;
    const { buffer, view, blockLen, isLE: isLE4 } = this;
    let { pos } = this;
    buffer[pos++] = 128;
    clean3(this.buffer.subarray(pos));
    if (this.padOffset > blockLen - pos) {
      this.process(view, 0);
      pos = 0;
    }
    for (let i = pos; i < blockLen; i++)
      buffer[i] = 0;
    view.setBigUint64(blockLen - 8, BigInt(this.length * 8), isLE4);
    this.process(view, 0);
    const oview = createView3(out);
    const len = this.outputLen;
    if (len % 4)
      throw new Error("_sha2: outputLen must be aligned to 32bit");
    const outLen = len / 4;
    const state = this.get();
    if (outLen > state.length)
      throw new Error("_sha2: outputLen bigger than state");
    for (let i = 0; i < outLen; i++)
      oview.setUint32(4 * i, state[i], isLE4);
  }
  digest() {
    const { buffer, outputLen } = this;
    this.digestInto(buffer);
    const res = buffer.slice(0, outputLen);
    this.destroy();
    return res;
  }
  _cloneInto(to) {
    to ||= new this.constructor();
    to.set(...this.get());
    const { blockLen, buffer, length, finished, destroyed, pos } = this;
    to.destroyed = destroyed;
    to.finished = finished;
    to.length = length;
    to.pos = pos;
    if (length % blockLen)
      to.buffer.set(buffer);
    return to;
  }
  clone() {
    return this._cloneInto();
  }
};
var SHA256_IV2 = /* @__PURE__ */ Uint32Array.from([
  1779033703,
  3144134277,
  1013904242,
  2773480762,
  1359893119,
  2600822924,
  528734635,
  1541459225
]);
var SHA384_IV2 = /* @__PURE__ */ Uint32Array.from([
  3418070365,
  3238371032,
  1654270250,
  914150663,
  2438529370,
  812702999,
  355462360,
  4144912697,
  1731405415,
  4290775857,
  2394180231,
  1750603025,
  3675008525,
  1694076839,
  1203062813,
  3204075428
]);

// node_modules/@noble/post-quantum/node_modules/@noble/hashes/_u64.js
var U32_MASK64 = /* @__PURE__ */ BigInt(2 ** 32 - 1);
var _32n = /* @__PURE__ */ BigInt(32);
function fromBig(n, le = false) {
  if (le)
    return { h: Number(n & U32_MASK64), l: Number(n >> _32n & U32_MASK64) };
  return { h: Number(n >> _32n & U32_MASK64) | 0, l: Number(n & U32_MASK64) | 0 };
}
function split(lst, le = false) {
  const len = lst.length;
  let Ah = new Uint32Array(len);
  let Al = new Uint32Array(len);
  for (let i = 0; i < len; i++) {
    const { h, l } = fromBig(lst[i], le);
    [Ah[i], Al[i]] = [h, l];
  }
  return [Ah, Al];
}
var shrSH = (h, _l, s) => h >>> s;
var shrSL = (h, l, s) => h << 32 - s | l >>> s;
var rotrSH = (h, l, s) => h >>> s | l << 32 - s;
var rotrSL = (h, l, s) => h << 32 - s | l >>> s;
var rotrBH = (h, l, s) => h << 64 - s | l >>> s - 32;
var rotrBL = (h, l, s) => h >>> s - 32 | l << 64 - s;
var rotlSH = (h, l, s) => h << s | l >>> 32 - s;
var rotlSL = (h, l, s) => l << s | h >>> 32 - s;
var rotlBH = (h, l, s) => l << s - 32 | h >>> 64 - s;
var rotlBL = (h, l, s) => h << s - 32 | l >>> 64 - s;
function add(Ah, Al, Bh, Bl) {
  const l = (Al >>> 0) + (Bl >>> 0);
  return { h: Ah + Bh + (l / 2 ** 32 | 0) | 0, l: l | 0 };
}
var add3L = (Al, Bl, Cl) => (Al >>> 0) + (Bl >>> 0) + (Cl >>> 0);
var add3H = (low, Ah, Bh, Ch) => Ah + Bh + Ch + (low / 2 ** 32 | 0) | 0;
var add4L = (Al, Bl, Cl, Dl) => (Al >>> 0) + (Bl >>> 0) + (Cl >>> 0) + (Dl >>> 0);
var add4H = (low, Ah, Bh, Ch, Dh) => Ah + Bh + Ch + Dh + (low / 2 ** 32 | 0) | 0;
var add5L = (Al, Bl, Cl, Dl, El) => (Al >>> 0) + (Bl >>> 0) + (Cl >>> 0) + (Dl >>> 0) + (El >>> 0);
var add5H = (low, Ah, Bh, Ch, Dh, Eh) => Ah + Bh + Ch + Dh + Eh + (low / 2 ** 32 | 0) | 0;

// node_modules/@noble/post-quantum/node_modules/@noble/hashes/sha2.js
var SHA256_K2 = /* @__PURE__ */ Uint32Array.from([
  1116352408,
  1899447441,
  3049323471,
  3921009573,
  961987163,
  1508970993,
  2453635748,
  2870763221,
  3624381080,
  310598401,
  607225278,
  1426881987,
  1925078388,
  2162078206,
  2614888103,
  3248222580,
  3835390401,
  4022224774,
  264347078,
  604807628,
  770255983,
  1249150122,
  1555081692,
  1996064986,
  2554220882,
  2821834349,
  2952996808,
  3210313671,
  3336571891,
  3584528711,
  113926993,
  338241895,
  666307205,
  773529912,
  1294757372,
  1396182291,
  1695183700,
  1986661051,
  2177026350,
  2456956037,
  2730485921,
  2820302411,
  3259730800,
  3345764771,
  3516065817,
  3600352804,
  4094571909,
  275423344,
  430227734,
  506948616,
  659060556,
  883997877,
  958139571,
  1322822218,
  1537002063,
  1747873779,
  1955562222,
  2024104815,
  2227730452,
  2361852424,
  2428436474,
  2756734187,
  3204031479,
  3329325298
]);
var SHA256_W2 = /* @__PURE__ */ new Uint32Array(64);
var SHA2_32B2 = class extends HashMD2 {
  constructor(outputLen) {
    super(64, outputLen, 8, false);
  }
  get() {
    const { A, B, C, D, E, F: F2, G, H } = this;
    return [A, B, C, D, E, F2, G, H];
  }
  // prettier-ignore
  set(A, B, C, D, E, F2, G, H) {
    this.A = A | 0;
    this.B = B | 0;
    this.C = C | 0;
    this.D = D | 0;
    this.E = E | 0;
    this.F = F2 | 0;
    this.G = G | 0;
    this.H = H | 0;
  }
  process(view, offset) {
    for (let i = 0; i < 16; i++, offset += 4)
      SHA256_W2[i] = view.getUint32(offset, false);
    for (let i = 16; i < 64; i++) {
      const W15 = SHA256_W2[i - 15];
      const W2 = SHA256_W2[i - 2];
      const s0 = rotr2(W15, 7) ^ rotr2(W15, 18) ^ W15 >>> 3;
      const s1 = rotr2(W2, 17) ^ rotr2(W2, 19) ^ W2 >>> 10;
      SHA256_W2[i] = s1 + SHA256_W2[i - 7] + s0 + SHA256_W2[i - 16] | 0;
    }
    let { A, B, C, D, E, F: F2, G, H } = this;
    for (let i = 0; i < 64; i++) {
      const sigma1 = rotr2(E, 6) ^ rotr2(E, 11) ^ rotr2(E, 25);
      const T1 = H + sigma1 + Chi2(E, F2, G) + SHA256_K2[i] + SHA256_W2[i] | 0;
      const sigma0 = rotr2(A, 2) ^ rotr2(A, 13) ^ rotr2(A, 22);
      const T2 = sigma0 + Maj2(A, B, C) | 0;
      H = G;
      G = F2;
      F2 = E;
      E = D + T1 | 0;
      D = C;
      C = B;
      B = A;
      A = T1 + T2 | 0;
    }
    A = A + this.A | 0;
    B = B + this.B | 0;
    C = C + this.C | 0;
    D = D + this.D | 0;
    E = E + this.E | 0;
    F2 = F2 + this.F | 0;
    G = G + this.G | 0;
    H = H + this.H | 0;
    this.set(A, B, C, D, E, F2, G, H);
  }
  roundClean() {
    clean3(SHA256_W2);
  }
  destroy() {
    this.set(0, 0, 0, 0, 0, 0, 0, 0);
    clean3(this.buffer);
  }
};
var _SHA2562 = class extends SHA2_32B2 {
  // We cannot use array here since array allows indexing by variable
  // which means optimizer/compiler cannot use registers.
  A = SHA256_IV2[0] | 0;
  B = SHA256_IV2[1] | 0;
  C = SHA256_IV2[2] | 0;
  D = SHA256_IV2[3] | 0;
  E = SHA256_IV2[4] | 0;
  F = SHA256_IV2[5] | 0;
  G = SHA256_IV2[6] | 0;
  H = SHA256_IV2[7] | 0;
  constructor() {
    super(32);
  }
};
var K512 = /* @__PURE__ */ (() => split([
  "0x428a2f98d728ae22",
  "0x7137449123ef65cd",
  "0xb5c0fbcfec4d3b2f",
  "0xe9b5dba58189dbbc",
  "0x3956c25bf348b538",
  "0x59f111f1b605d019",
  "0x923f82a4af194f9b",
  "0xab1c5ed5da6d8118",
  "0xd807aa98a3030242",
  "0x12835b0145706fbe",
  "0x243185be4ee4b28c",
  "0x550c7dc3d5ffb4e2",
  "0x72be5d74f27b896f",
  "0x80deb1fe3b1696b1",
  "0x9bdc06a725c71235",
  "0xc19bf174cf692694",
  "0xe49b69c19ef14ad2",
  "0xefbe4786384f25e3",
  "0x0fc19dc68b8cd5b5",
  "0x240ca1cc77ac9c65",
  "0x2de92c6f592b0275",
  "0x4a7484aa6ea6e483",
  "0x5cb0a9dcbd41fbd4",
  "0x76f988da831153b5",
  "0x983e5152ee66dfab",
  "0xa831c66d2db43210",
  "0xb00327c898fb213f",
  "0xbf597fc7beef0ee4",
  "0xc6e00bf33da88fc2",
  "0xd5a79147930aa725",
  "0x06ca6351e003826f",
  "0x142929670a0e6e70",
  "0x27b70a8546d22ffc",
  "0x2e1b21385c26c926",
  "0x4d2c6dfc5ac42aed",
  "0x53380d139d95b3df",
  "0x650a73548baf63de",
  "0x766a0abb3c77b2a8",
  "0x81c2c92e47edaee6",
  "0x92722c851482353b",
  "0xa2bfe8a14cf10364",
  "0xa81a664bbc423001",
  "0xc24b8b70d0f89791",
  "0xc76c51a30654be30",
  "0xd192e819d6ef5218",
  "0xd69906245565a910",
  "0xf40e35855771202a",
  "0x106aa07032bbd1b8",
  "0x19a4c116b8d2d0c8",
  "0x1e376c085141ab53",
  "0x2748774cdf8eeb99",
  "0x34b0bcb5e19b48a8",
  "0x391c0cb3c5c95a63",
  "0x4ed8aa4ae3418acb",
  "0x5b9cca4f7763e373",
  "0x682e6ff3d6b2b8a3",
  "0x748f82ee5defb2fc",
  "0x78a5636f43172f60",
  "0x84c87814a1f0ab72",
  "0x8cc702081a6439ec",
  "0x90befffa23631e28",
  "0xa4506cebde82bde9",
  "0xbef9a3f7b2c67915",
  "0xc67178f2e372532b",
  "0xca273eceea26619c",
  "0xd186b8c721c0c207",
  "0xeada7dd6cde0eb1e",
  "0xf57d4f7fee6ed178",
  "0x06f067aa72176fba",
  "0x0a637dc5a2c898a6",
  "0x113f9804bef90dae",
  "0x1b710b35131c471b",
  "0x28db77f523047d84",
  "0x32caab7b40c72493",
  "0x3c9ebe0a15c9bebc",
  "0x431d67c49c100d4c",
  "0x4cc5d4becb3e42b6",
  "0x597f299cfc657e2a",
  "0x5fcb6fab3ad6faec",
  "0x6c44198c4a475817"
].map((n) => BigInt(n))))();
var SHA512_Kh = /* @__PURE__ */ (() => K512[0])();
var SHA512_Kl = /* @__PURE__ */ (() => K512[1])();
var SHA512_W_H = /* @__PURE__ */ new Uint32Array(80);
var SHA512_W_L = /* @__PURE__ */ new Uint32Array(80);
var SHA2_64B = class extends HashMD2 {
  constructor(outputLen) {
    super(128, outputLen, 16, false);
  }
  // prettier-ignore
  get() {
    const { Ah, Al, Bh, Bl, Ch, Cl, Dh, Dl, Eh, El, Fh, Fl, Gh, Gl, Hh, Hl } = this;
    return [Ah, Al, Bh, Bl, Ch, Cl, Dh, Dl, Eh, El, Fh, Fl, Gh, Gl, Hh, Hl];
  }
  // prettier-ignore
  set(Ah, Al, Bh, Bl, Ch, Cl, Dh, Dl, Eh, El, Fh, Fl, Gh, Gl, Hh, Hl) {
    this.Ah = Ah | 0;
    this.Al = Al | 0;
    this.Bh = Bh | 0;
    this.Bl = Bl | 0;
    this.Ch = Ch | 0;
    this.Cl = Cl | 0;
    this.Dh = Dh | 0;
    this.Dl = Dl | 0;
    this.Eh = Eh | 0;
    this.El = El | 0;
    this.Fh = Fh | 0;
    this.Fl = Fl | 0;
    this.Gh = Gh | 0;
    this.Gl = Gl | 0;
    this.Hh = Hh | 0;
    this.Hl = Hl | 0;
  }
  process(view, offset) {
    for (let i = 0; i < 16; i++, offset += 4) {
      SHA512_W_H[i] = view.getUint32(offset);
      SHA512_W_L[i] = view.getUint32(offset += 4);
    }
    for (let i = 16; i < 80; i++) {
      const W15h = SHA512_W_H[i - 15] | 0;
      const W15l = SHA512_W_L[i - 15] | 0;
      const s0h = rotrSH(W15h, W15l, 1) ^ rotrSH(W15h, W15l, 8) ^ shrSH(W15h, W15l, 7);
      const s0l = rotrSL(W15h, W15l, 1) ^ rotrSL(W15h, W15l, 8) ^ shrSL(W15h, W15l, 7);
      const W2h = SHA512_W_H[i - 2] | 0;
      const W2l = SHA512_W_L[i - 2] | 0;
      const s1h = rotrSH(W2h, W2l, 19) ^ rotrBH(W2h, W2l, 61) ^ shrSH(W2h, W2l, 6);
      const s1l = rotrSL(W2h, W2l, 19) ^ rotrBL(W2h, W2l, 61) ^ shrSL(W2h, W2l, 6);
      const SUMl = add4L(s0l, s1l, SHA512_W_L[i - 7], SHA512_W_L[i - 16]);
      const SUMh = add4H(SUMl, s0h, s1h, SHA512_W_H[i - 7], SHA512_W_H[i - 16]);
      SHA512_W_H[i] = SUMh | 0;
      SHA512_W_L[i] = SUMl | 0;
    }
    let { Ah, Al, Bh, Bl, Ch, Cl, Dh, Dl, Eh, El, Fh, Fl, Gh, Gl, Hh, Hl } = this;
    for (let i = 0; i < 80; i++) {
      const sigma1h = rotrSH(Eh, El, 14) ^ rotrSH(Eh, El, 18) ^ rotrBH(Eh, El, 41);
      const sigma1l = rotrSL(Eh, El, 14) ^ rotrSL(Eh, El, 18) ^ rotrBL(Eh, El, 41);
      const CHIh = Eh & Fh ^ ~Eh & Gh;
      const CHIl = El & Fl ^ ~El & Gl;
      const T1ll = add5L(Hl, sigma1l, CHIl, SHA512_Kl[i], SHA512_W_L[i]);
      const T1h = add5H(T1ll, Hh, sigma1h, CHIh, SHA512_Kh[i], SHA512_W_H[i]);
      const T1l = T1ll | 0;
      const sigma0h = rotrSH(Ah, Al, 28) ^ rotrBH(Ah, Al, 34) ^ rotrBH(Ah, Al, 39);
      const sigma0l = rotrSL(Ah, Al, 28) ^ rotrBL(Ah, Al, 34) ^ rotrBL(Ah, Al, 39);
      const MAJh = Ah & Bh ^ Ah & Ch ^ Bh & Ch;
      const MAJl = Al & Bl ^ Al & Cl ^ Bl & Cl;
      Hh = Gh | 0;
      Hl = Gl | 0;
      Gh = Fh | 0;
      Gl = Fl | 0;
      Fh = Eh | 0;
      Fl = El | 0;
      ({ h: Eh, l: El } = add(Dh | 0, Dl | 0, T1h | 0, T1l | 0));
      Dh = Ch | 0;
      Dl = Cl | 0;
      Ch = Bh | 0;
      Cl = Bl | 0;
      Bh = Ah | 0;
      Bl = Al | 0;
      const All = add3L(T1l, sigma0l, MAJl);
      Ah = add3H(All, T1h, sigma0h, MAJh);
      Al = All | 0;
    }
    ({ h: Ah, l: Al } = add(this.Ah | 0, this.Al | 0, Ah | 0, Al | 0));
    ({ h: Bh, l: Bl } = add(this.Bh | 0, this.Bl | 0, Bh | 0, Bl | 0));
    ({ h: Ch, l: Cl } = add(this.Ch | 0, this.Cl | 0, Ch | 0, Cl | 0));
    ({ h: Dh, l: Dl } = add(this.Dh | 0, this.Dl | 0, Dh | 0, Dl | 0));
    ({ h: Eh, l: El } = add(this.Eh | 0, this.El | 0, Eh | 0, El | 0));
    ({ h: Fh, l: Fl } = add(this.Fh | 0, this.Fl | 0, Fh | 0, Fl | 0));
    ({ h: Gh, l: Gl } = add(this.Gh | 0, this.Gl | 0, Gh | 0, Gl | 0));
    ({ h: Hh, l: Hl } = add(this.Hh | 0, this.Hl | 0, Hh | 0, Hl | 0));
    this.set(Ah, Al, Bh, Bl, Ch, Cl, Dh, Dl, Eh, El, Fh, Fl, Gh, Gl, Hh, Hl);
  }
  roundClean() {
    clean3(SHA512_W_H, SHA512_W_L);
  }
  destroy() {
    clean3(this.buffer);
    this.set(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  }
};
var _SHA384 = class extends SHA2_64B {
  Ah = SHA384_IV2[0] | 0;
  Al = SHA384_IV2[1] | 0;
  Bh = SHA384_IV2[2] | 0;
  Bl = SHA384_IV2[3] | 0;
  Ch = SHA384_IV2[4] | 0;
  Cl = SHA384_IV2[5] | 0;
  Dh = SHA384_IV2[6] | 0;
  Dl = SHA384_IV2[7] | 0;
  Eh = SHA384_IV2[8] | 0;
  El = SHA384_IV2[9] | 0;
  Fh = SHA384_IV2[10] | 0;
  Fl = SHA384_IV2[11] | 0;
  Gh = SHA384_IV2[12] | 0;
  Gl = SHA384_IV2[13] | 0;
  Hh = SHA384_IV2[14] | 0;
  Hl = SHA384_IV2[15] | 0;
  constructor() {
    super(48);
  }
};
var sha2562 = /* @__PURE__ */ createHasher2(
  () => new _SHA2562(),
  /* @__PURE__ */ oidNist2(1)
);
var sha384 = /* @__PURE__ */ createHasher2(
  () => new _SHA384(),
  /* @__PURE__ */ oidNist2(2)
);

// node_modules/@noble/post-quantum/node_modules/@noble/curves/ed25519.js
/*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
var _1n6 = BigInt(1);
var _2n4 = BigInt(2);
var _3n3 = /* @__PURE__ */ BigInt(3);
var _5n2 = BigInt(5);
var _8n2 = BigInt(8);
var ed25519_CURVE_p = BigInt("0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed");
function ed25519_pow_2_252_3(x) {
  const _10n = BigInt(10), _20n = BigInt(20), _40n = BigInt(40), _80n = BigInt(80);
  const P = ed25519_CURVE_p;
  const x2 = x * x % P;
  const b2 = x2 * x % P;
  const b4 = pow2(b2, _2n4, P) * b2 % P;
  const b5 = pow2(b4, _1n6, P) * x % P;
  const b10 = pow2(b5, _5n2, P) * b5 % P;
  const b20 = pow2(b10, _10n, P) * b10 % P;
  const b40 = pow2(b20, _20n, P) * b20 % P;
  const b80 = pow2(b40, _40n, P) * b40 % P;
  const b160 = pow2(b80, _80n, P) * b80 % P;
  const b240 = pow2(b160, _80n, P) * b80 % P;
  const b250 = pow2(b240, _10n, P) * b10 % P;
  const pow_p_5_8 = pow2(b250, _2n4, P) * x % P;
  return { pow_p_5_8, b2 };
}
function adjustScalarBytes(bytes) {
  bytes[0] &= 248;
  bytes[31] &= 127;
  bytes[31] |= 64;
  return bytes;
}
var x25519 = /* @__PURE__ */ (() => {
  const P = ed25519_CURVE_p;
  return montgomery({
    P,
    type: "x25519",
    powPminus2: (x) => {
      const { pow_p_5_8, b2 } = ed25519_pow_2_252_3(x);
      return mod(pow2(pow_p_5_8, _3n3, P) * b2, P);
    },
    adjustScalarBytes
  });
})();

// node_modules/@noble/post-quantum/node_modules/@noble/curves/nist.js
/*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
var p256_CURVE = /* @__PURE__ */ (() => ({
  p: BigInt("0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff"),
  n: BigInt("0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"),
  h: BigInt(1),
  a: BigInt("0xffffffff00000001000000000000000000000000fffffffffffffffffffffffc"),
  b: BigInt("0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b"),
  Gx: BigInt("0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"),
  Gy: BigInt("0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
}))();
var p384_CURVE = /* @__PURE__ */ (() => ({
  p: BigInt("0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff"),
  n: BigInt("0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973"),
  h: BigInt(1),
  a: BigInt("0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000fffffffc"),
  b: BigInt("0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef"),
  Gx: BigInt("0xaa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7"),
  Gy: BigInt("0x3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f")
}))();
var p256_Point = /* @__PURE__ */ weierstrass(p256_CURVE);
var p256 = /* @__PURE__ */ ecdsa(p256_Point, sha2562);
var p384_Point = /* @__PURE__ */ weierstrass(p384_CURVE);
var p384 = /* @__PURE__ */ ecdsa(p384_Point, sha384);

// node_modules/@noble/post-quantum/node_modules/@noble/hashes/hkdf.js
function extract2(hash, ikm, salt) {
  ahash2(hash);
  if (salt === void 0)
    salt = new Uint8Array(hash.outputLen);
  return hmac2(hash, salt, ikm);
}
var HKDF_COUNTER2 = /* @__PURE__ */ Uint8Array.of(0);
var EMPTY_BUFFER2 = /* @__PURE__ */ Uint8Array.of();
function expand2(hash, prk, info, length = 32) {
  ahash2(hash);
  anumber4(length, "length");
  const olen = hash.outputLen;
  if (length > 255 * olen)
    throw new Error("Length must be <= 255*HashLen");
  const blocks = Math.ceil(length / olen);
  if (info === void 0)
    info = EMPTY_BUFFER2;
  else
    abytes4(info, void 0, "info");
  const okm = new Uint8Array(blocks * olen);
  const HMAC = hmac2.create(hash, prk);
  const HMACTmp = HMAC._cloneInto();
  const T = new Uint8Array(HMAC.outputLen);
  for (let counter = 0; counter < blocks; counter++) {
    HKDF_COUNTER2[0] = counter + 1;
    HMACTmp.update(counter === 0 ? EMPTY_BUFFER2 : T).update(info).update(HKDF_COUNTER2).digestInto(T);
    okm.set(T, olen * counter);
    HMAC._cloneInto(HMACTmp);
  }
  HMAC.destroy();
  HMACTmp.destroy();
  clean3(T, HKDF_COUNTER2);
  return okm.slice(0, length);
}

// node_modules/@noble/post-quantum/node_modules/@noble/hashes/sha3.js
var _0n6 = BigInt(0);
var _1n7 = BigInt(1);
var _2n5 = BigInt(2);
var _7n2 = BigInt(7);
var _256n = BigInt(256);
var _0x71n = BigInt(113);
var SHA3_PI = [];
var SHA3_ROTL = [];
var _SHA3_IOTA = [];
for (let round = 0, R = _1n7, x = 1, y = 0; round < 24; round++) {
  [x, y] = [y, (2 * x + 3 * y) % 5];
  SHA3_PI.push(2 * (5 * y + x));
  SHA3_ROTL.push((round + 1) * (round + 2) / 2 % 64);
  let t = _0n6;
  for (let j = 0; j < 7; j++) {
    R = (R << _1n7 ^ (R >> _7n2) * _0x71n) % _256n;
    if (R & _2n5)
      t ^= _1n7 << (_1n7 << BigInt(j)) - _1n7;
  }
  _SHA3_IOTA.push(t);
}
var IOTAS = split(_SHA3_IOTA, true);
var SHA3_IOTA_H = IOTAS[0];
var SHA3_IOTA_L = IOTAS[1];
var rotlH = (h, l, s) => s > 32 ? rotlBH(h, l, s) : rotlSH(h, l, s);
var rotlL = (h, l, s) => s > 32 ? rotlBL(h, l, s) : rotlSL(h, l, s);
function keccakP(s, rounds = 24) {
  const B = new Uint32Array(5 * 2);
  for (let round = 24 - rounds; round < 24; round++) {
    for (let x = 0; x < 10; x++)
      B[x] = s[x] ^ s[x + 10] ^ s[x + 20] ^ s[x + 30] ^ s[x + 40];
    for (let x = 0; x < 10; x += 2) {
      const idx1 = (x + 8) % 10;
      const idx0 = (x + 2) % 10;
      const B0 = B[idx0];
      const B1 = B[idx0 + 1];
      const Th = rotlH(B0, B1, 1) ^ B[idx1];
      const Tl = rotlL(B0, B1, 1) ^ B[idx1 + 1];
      for (let y = 0; y < 50; y += 10) {
        s[x + y] ^= Th;
        s[x + y + 1] ^= Tl;
      }
    }
    let curH = s[2];
    let curL = s[3];
    for (let t = 0; t < 24; t++) {
      const shift = SHA3_ROTL[t];
      const Th = rotlH(curH, curL, shift);
      const Tl = rotlL(curH, curL, shift);
      const PI = SHA3_PI[t];
      curH = s[PI];
      curL = s[PI + 1];
      s[PI] = Th;
      s[PI + 1] = Tl;
    }
    for (let y = 0; y < 50; y += 10) {
      for (let x = 0; x < 10; x++)
        B[x] = s[y + x];
      for (let x = 0; x < 10; x++)
        s[y + x] ^= ~B[(x + 2) % 10] & B[(x + 4) % 10];
    }
    s[0] ^= SHA3_IOTA_H[round];
    s[1] ^= SHA3_IOTA_L[round];
  }
  clean3(B);
}
var Keccak = class _Keccak {
  state;
  pos = 0;
  posOut = 0;
  finished = false;
  state32;
  destroyed = false;
  blockLen;
  suffix;
  outputLen;
  enableXOF = false;
  rounds;
  // NOTE: we accept arguments in bytes instead of bits here.
  constructor(blockLen, suffix, outputLen, enableXOF = false, rounds = 24) {
    this.blockLen = blockLen;
    this.suffix = suffix;
    this.outputLen = outputLen;
    this.enableXOF = enableXOF;
    this.rounds = rounds;
    anumber4(outputLen, "outputLen");
    if (!(0 < blockLen && blockLen < 200))
      throw new Error("only keccak-f1600 function is supported");
    this.state = new Uint8Array(200);
    this.state32 = u323(this.state);
  }
  clone() {
    return this._cloneInto();
  }
  keccak() {
    swap32IfBE3(this.state32);
    keccakP(this.state32, this.rounds);
    swap32IfBE3(this.state32);
    this.posOut = 0;
    this.pos = 0;
  }
  update(data) {
    aexists3(this);
    abytes4(data);
    const { blockLen, state } = this;
    const len = data.length;
    for (let pos = 0; pos < len; ) {
      const take = Math.min(blockLen - this.pos, len - pos);
      for (let i = 0; i < take; i++)
        state[this.pos++] ^= data[pos++];
      if (this.pos === blockLen)
        this.keccak();
    }
    return this;
  }
  finish() {
    if (this.finished)
      return;
    this.finished = true;
    const { state, suffix, pos, blockLen } = this;
    state[pos] ^= suffix;
    if ((suffix & 128) !== 0 && pos === blockLen - 1)
      this.keccak();
    state[blockLen - 1] ^= 128;
    this.keccak();
  }
  writeInto(out) {
    aexists3(this, false);
    abytes4(out);
    this.finish();
    const bufferOut = this.state;
    const { blockLen } = this;
    for (let pos = 0, len = out.length; pos < len; ) {
      if (this.posOut >= blockLen)
        this.keccak();
      const take = Math.min(blockLen - this.posOut, len - pos);
      out.set(bufferOut.subarray(this.posOut, this.posOut + take), pos);
      this.posOut += take;
      pos += take;
    }
    return out;
  }
  xofInto(out) {
    if (!this.enableXOF)
      throw new Error("XOF is not possible for this instance");
    return this.writeInto(out);
  }
  xof(bytes) {
    anumber4(bytes);
    return this.xofInto(new Uint8Array(bytes));
  }
  digestInto(out) {
    aoutput3(out, this);
    if (this.finished)
      throw new Error("digest() was already called");
    this.writeInto(out);
    this.destroy();
    return out;
  }
  digest() {
    return this.digestInto(new Uint8Array(this.outputLen));
  }
  destroy() {
    this.destroyed = true;
    clean3(this.state);
  }
  _cloneInto(to) {
    const { blockLen, suffix, outputLen, rounds, enableXOF } = this;
    to ||= new _Keccak(blockLen, suffix, outputLen, enableXOF, rounds);
    to.state32.set(this.state32);
    to.pos = this.pos;
    to.posOut = this.posOut;
    to.finished = this.finished;
    to.rounds = rounds;
    to.suffix = suffix;
    to.outputLen = outputLen;
    to.enableXOF = enableXOF;
    to.destroyed = this.destroyed;
    return to;
  }
};
var genKeccak = (suffix, blockLen, outputLen, info = {}) => createHasher2(() => new Keccak(blockLen, suffix, outputLen), info);
var sha3_256 = /* @__PURE__ */ genKeccak(
  6,
  136,
  32,
  /* @__PURE__ */ oidNist2(8)
);
var sha3_512 = /* @__PURE__ */ genKeccak(
  6,
  72,
  64,
  /* @__PURE__ */ oidNist2(10)
);
var genShake = (suffix, blockLen, outputLen, info = {}) => createHasher2((opts2 = {}) => new Keccak(blockLen, suffix, opts2.dkLen === void 0 ? outputLen : opts2.dkLen, true), info);
var shake128 = /* @__PURE__ */ genShake(31, 168, 16, /* @__PURE__ */ oidNist2(11));
var shake256 = /* @__PURE__ */ genShake(31, 136, 32, /* @__PURE__ */ oidNist2(12));

// node_modules/@noble/post-quantum/node_modules/@noble/curves/abstract/fft.js
function checkU32(n) {
  if (!Number.isSafeInteger(n) || n < 0 || n > 4294967295)
    throw new Error("wrong u32 integer:" + n);
  return n;
}
function isPowerOfTwo(x) {
  checkU32(x);
  return (x & x - 1) === 0 && x !== 0;
}
function reverseBits(n, bits) {
  checkU32(n);
  let reversed = 0;
  for (let i = 0; i < bits; i++, n >>>= 1)
    reversed = reversed << 1 | n & 1;
  return reversed;
}
function log2(n) {
  checkU32(n);
  return 31 - Math.clz32(n);
}
function bitReversalInplace(values) {
  const n = values.length;
  if (n < 2 || !isPowerOfTwo(n))
    throw new Error("n must be a power of 2 and greater than 1. Got " + n);
  const bits = log2(n);
  for (let i = 0; i < n; i++) {
    const j = reverseBits(i, bits);
    if (i < j) {
      const tmp = values[i];
      values[i] = values[j];
      values[j] = tmp;
    }
  }
  return values;
}
var FFTCore = (F2, coreOpts) => {
  const { N: N2, roots, dit, invertButterflies = false, skipStages = 0, brp = true } = coreOpts;
  const bits = log2(N2);
  if (!isPowerOfTwo(N2))
    throw new Error("FFT: Polynomial size should be power of two");
  const isDit = dit !== invertButterflies;
  isDit;
  return (values) => {
    if (values.length !== N2)
      throw new Error("FFT: wrong Polynomial length");
    if (dit && brp)
      bitReversalInplace(values);
    for (let i = 0, g = 1; i < bits - skipStages; i++) {
      const s = dit ? i + 1 + skipStages : bits - i;
      const m = 1 << s;
      const m2 = m >> 1;
      const stride = N2 >> s;
      for (let k = 0; k < N2; k += m) {
        for (let j = 0, grp = g++; j < m2; j++) {
          const rootPos = invertButterflies ? dit ? N2 - grp : grp : j * stride;
          const i0 = k + j;
          const i1 = k + j + m2;
          const omega = roots[rootPos];
          const b = values[i1];
          const a = values[i0];
          if (isDit) {
            const t = F2.mul(b, omega);
            values[i0] = F2.add(a, t);
            values[i1] = F2.sub(a, t);
          } else if (invertButterflies) {
            values[i0] = F2.add(b, a);
            values[i1] = F2.mul(F2.sub(b, a), omega);
          } else {
            values[i0] = F2.add(a, b);
            values[i1] = F2.mul(F2.sub(a, b), omega);
          }
        }
      }
    }
    if (!dit && brp)
      bitReversalInplace(values);
    return values;
  };
};

// node_modules/@noble/post-quantum/utils.js
/*! noble-post-quantum - MIT License (c) 2024 Paul Miller (paulmillr.com) */
var randomBytes4 = randomBytes3;
function equalBytes2(a, b) {
  if (a.length !== b.length)
    return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++)
    diff |= a[i] ^ b[i];
  return diff === 0;
}
function copyBytes3(bytes) {
  return Uint8Array.from(bytes);
}
function splitCoder(label, ...lengths) {
  const getLength = (c) => typeof c === "number" ? c : c.bytesLen;
  const bytesLen = lengths.reduce((sum, a) => sum + getLength(a), 0);
  return {
    bytesLen,
    encode: (bufs) => {
      const res = new Uint8Array(bytesLen);
      for (let i = 0, pos = 0; i < lengths.length; i++) {
        const c = lengths[i];
        const l = getLength(c);
        const b = typeof c === "number" ? bufs[i] : c.encode(bufs[i]);
        abytes4(b, l, label);
        res.set(b, pos);
        if (typeof c !== "number")
          b.fill(0);
        pos += l;
      }
      return res;
    },
    decode: (buf) => {
      abytes4(buf, bytesLen, label);
      const res = [];
      for (const c of lengths) {
        const l = getLength(c);
        const b = buf.subarray(0, l);
        res.push(typeof c === "number" ? b : c.decode(b));
        buf = buf.subarray(l);
      }
      return res;
    }
  };
}
function vecCoder(c, vecLen) {
  const bytesLen = vecLen * c.bytesLen;
  return {
    bytesLen,
    encode: (u) => {
      if (u.length !== vecLen)
        throw new Error(`vecCoder.encode: wrong length=${u.length}. Expected: ${vecLen}`);
      const res = new Uint8Array(bytesLen);
      for (let i = 0, pos = 0; i < u.length; i++) {
        const b = c.encode(u[i]);
        res.set(b, pos);
        b.fill(0);
        pos += b.length;
      }
      return res;
    },
    decode: (a) => {
      abytes4(a, bytesLen);
      const r = [];
      for (let i = 0; i < a.length; i += c.bytesLen)
        r.push(c.decode(a.subarray(i, i + c.bytesLen)));
      return r;
    }
  };
}
function cleanBytes(...list) {
  for (const t of list) {
    if (Array.isArray(t))
      for (const b of t)
        b.fill(0);
    else
      t.fill(0);
  }
}
function getMask(bits) {
  return (1 << bits) - 1;
}
var EMPTY = Uint8Array.of();

// node_modules/@noble/post-quantum/_crystals.js
/*! noble-post-quantum - MIT License (c) 2024 Paul Miller (paulmillr.com) */
var genCrystals = (opts2) => {
  const { newPoly, N: N2, Q: Q2, F: F2, ROOT_OF_UNITY: ROOT_OF_UNITY2, brvBits, isKyber } = opts2;
  const mod4 = (a, modulo = Q2) => {
    const result = a % modulo | 0;
    return (result >= 0 ? result | 0 : modulo + result | 0) | 0;
  };
  const smod = (a, modulo = Q2) => {
    const r = mod4(a, modulo) | 0;
    return (r > modulo >> 1 ? r - modulo | 0 : r) | 0;
  };
  function getZettas() {
    const out = newPoly(N2);
    for (let i = 0; i < N2; i++) {
      const b = reverseBits(i, brvBits);
      const p = BigInt(ROOT_OF_UNITY2) ** BigInt(b) % BigInt(Q2);
      out[i] = Number(p) | 0;
    }
    return out;
  }
  const nttZetas2 = getZettas();
  const field = {
    add: (a, b) => mod4((a | 0) + (b | 0)) | 0,
    sub: (a, b) => mod4((a | 0) - (b | 0)) | 0,
    mul: (a, b) => mod4((a | 0) * (b | 0)) | 0,
    inv: (_a) => {
      throw new Error("not implemented");
    }
  };
  const nttOpts = {
    N: N2,
    roots: nttZetas2,
    invertButterflies: true,
    skipStages: isKyber ? 1 : 0,
    brp: false
  };
  const dif = FFTCore(field, { dit: false, ...nttOpts });
  const dit = FFTCore(field, { dit: true, ...nttOpts });
  const NTT2 = {
    encode: (r) => {
      return dif(r);
    },
    decode: (r) => {
      dit(r);
      for (let i = 0; i < r.length; i++)
        r[i] = mod4(F2 * r[i]);
      return r;
    }
  };
  const bitsCoder2 = (d, c) => {
    const mask = getMask(d);
    const bytesLen = d * (N2 / 8);
    return {
      bytesLen,
      encode: (poly) => {
        const r = new Uint8Array(bytesLen);
        for (let i = 0, buf = 0, bufLen = 0, pos = 0; i < poly.length; i++) {
          buf |= (c.encode(poly[i]) & mask) << bufLen;
          bufLen += d;
          for (; bufLen >= 8; bufLen -= 8, buf >>= 8)
            r[pos++] = buf & getMask(bufLen);
        }
        return r;
      },
      decode: (bytes) => {
        const r = newPoly(N2);
        for (let i = 0, buf = 0, bufLen = 0, pos = 0; i < bytes.length; i++) {
          buf |= bytes[i] << bufLen;
          bufLen += 8;
          for (; bufLen >= d; bufLen -= d, buf >>= d)
            r[pos++] = c.decode(buf & mask);
        }
        return r;
      }
    };
  };
  return { mod: mod4, smod, nttZetas: nttZetas2, NTT: NTT2, bitsCoder: bitsCoder2 };
};
var createXofShake = (shake) => (seed, blockLen) => {
  if (!blockLen)
    blockLen = shake.blockLen;
  const _seed = new Uint8Array(seed.length + 2);
  _seed.set(seed);
  const seedLen = seed.length;
  const buf = new Uint8Array(blockLen);
  let h = shake.create({});
  let calls = 0;
  let xofs = 0;
  return {
    stats: () => ({ calls, xofs }),
    get: (x, y) => {
      _seed[seedLen + 0] = x;
      _seed[seedLen + 1] = y;
      h.destroy();
      h = shake.create({}).update(_seed);
      calls++;
      return () => {
        xofs++;
        return h.xofInto(buf);
      };
    },
    clean: () => {
      h.destroy();
      cleanBytes(buf, _seed);
    }
  };
};
var XOF128 = /* @__PURE__ */ createXofShake(shake128);

// node_modules/@noble/post-quantum/ml-kem.js
/*! noble-post-quantum - MIT License (c) 2024 Paul Miller (paulmillr.com) */
var N = 256;
var Q = 3329;
var F = 3303;
var ROOT_OF_UNITY = 17;
var { mod: mod2, nttZetas, NTT, bitsCoder } = genCrystals({
  N,
  Q,
  F,
  ROOT_OF_UNITY,
  newPoly: (n) => new Uint16Array(n),
  brvBits: 7,
  isKyber: true
});
var PARAMS = {
  512: { N, Q, K: 2, ETA1: 3, ETA2: 2, du: 10, dv: 4, RBGstrength: 128 },
  768: { N, Q, K: 3, ETA1: 2, ETA2: 2, du: 10, dv: 4, RBGstrength: 192 },
  1024: { N, Q, K: 4, ETA1: 2, ETA2: 2, du: 11, dv: 5, RBGstrength: 256 }
};
var compress = (d) => {
  if (d >= 12)
    return { encode: (i) => i, decode: (i) => i };
  const a = 2 ** (d - 1);
  return {
    // const compress = (i: number) => round((2 ** d / Q) * i) % 2 ** d;
    encode: (i) => ((i << d) + Q / 2) / Q,
    // const decompress = (i: number) => round((Q / 2 ** d) * i);
    decode: (i) => i * Q + a >>> d
  };
};
var polyCoder = (d) => bitsCoder(d, compress(d));
function polyAdd(a, b) {
  for (let i = 0; i < N; i++)
    a[i] = mod2(a[i] + b[i]);
}
function polySub(a, b) {
  for (let i = 0; i < N; i++)
    a[i] = mod2(a[i] - b[i]);
}
function BaseCaseMultiply(a0, a1, b0, b1, zeta) {
  const c0 = mod2(a1 * b1 * zeta + a0 * b0);
  const c1 = mod2(a0 * b1 + a1 * b0);
  return { c0, c1 };
}
function MultiplyNTTs(f, g) {
  for (let i = 0; i < N / 2; i++) {
    let z = nttZetas[64 + (i >> 1)];
    if (i & 1)
      z = -z;
    const { c0, c1 } = BaseCaseMultiply(f[2 * i + 0], f[2 * i + 1], g[2 * i + 0], g[2 * i + 1], z);
    f[2 * i + 0] = c0;
    f[2 * i + 1] = c1;
  }
  return f;
}
function SampleNTT(xof) {
  const r = new Uint16Array(N);
  for (let j = 0; j < N; ) {
    const b = xof();
    if (b.length % 3)
      throw new Error("SampleNTT: unaligned block");
    for (let i = 0; j < N && i + 3 <= b.length; i += 3) {
      const d1 = (b[i + 0] >> 0 | b[i + 1] << 8) & 4095;
      const d2 = (b[i + 1] >> 4 | b[i + 2] << 4) & 4095;
      if (d1 < Q)
        r[j++] = d1;
      if (j < N && d2 < Q)
        r[j++] = d2;
    }
  }
  return r;
}
function sampleCBD(PRF, seed, nonce, eta) {
  const buf = PRF(eta * N / 4, seed, nonce);
  const r = new Uint16Array(N);
  const b32 = u323(buf);
  let len = 0;
  for (let i = 0, p = 0, bb = 0, t0 = 0; i < b32.length; i++) {
    let b = b32[i];
    for (let j = 0; j < 32; j++) {
      bb += b & 1;
      b >>= 1;
      len += 1;
      if (len === eta) {
        t0 = bb;
        bb = 0;
      } else if (len === 2 * eta) {
        r[p++] = mod2(t0 - bb);
        bb = 0;
        len = 0;
      }
    }
  }
  if (len)
    throw new Error(`sampleCBD: leftover bits: ${len}`);
  return r;
}
var genKPKE = (opts2) => {
  const { K, PRF, XOF, HASH512, ETA1, ETA2, du, dv } = opts2;
  const poly1 = polyCoder(1);
  const polyV = polyCoder(dv);
  const polyU = polyCoder(du);
  const publicCoder = splitCoder("publicKey", vecCoder(polyCoder(12), K), 32);
  const secretCoder = vecCoder(polyCoder(12), K);
  const cipherCoder = splitCoder("ciphertext", vecCoder(polyU, K), polyV);
  const seedCoder = splitCoder("seed", 32, 32);
  return {
    secretCoder,
    lengths: {
      secretKey: secretCoder.bytesLen,
      publicKey: publicCoder.bytesLen,
      cipherText: cipherCoder.bytesLen
    },
    keygen: (seed) => {
      abytes4(seed, 32, "seed");
      const seedDst = new Uint8Array(33);
      seedDst.set(seed);
      seedDst[32] = K;
      const seedHash = HASH512(seedDst);
      const [rho, sigma] = seedCoder.decode(seedHash);
      const sHat = [];
      const tHat = [];
      for (let i = 0; i < K; i++)
        sHat.push(NTT.encode(sampleCBD(PRF, sigma, i, ETA1)));
      const x = XOF(rho);
      for (let i = 0; i < K; i++) {
        const e = NTT.encode(sampleCBD(PRF, sigma, K + i, ETA1));
        for (let j = 0; j < K; j++) {
          const aji = SampleNTT(x.get(j, i));
          polyAdd(e, MultiplyNTTs(aji, sHat[j]));
        }
        tHat.push(e);
      }
      x.clean();
      const res = {
        publicKey: publicCoder.encode([tHat, rho]),
        secretKey: secretCoder.encode(sHat)
      };
      cleanBytes(rho, sigma, sHat, tHat, seedDst, seedHash);
      return res;
    },
    encrypt: (publicKey, msg2, seed) => {
      const [tHat, rho] = publicCoder.decode(publicKey);
      const rHat = [];
      for (let i = 0; i < K; i++)
        rHat.push(NTT.encode(sampleCBD(PRF, seed, i, ETA1)));
      const x = XOF(rho);
      const tmp2 = new Uint16Array(N);
      const u = [];
      for (let i = 0; i < K; i++) {
        const e1 = sampleCBD(PRF, seed, K + i, ETA2);
        const tmp = new Uint16Array(N);
        for (let j = 0; j < K; j++) {
          const aij = SampleNTT(x.get(i, j));
          polyAdd(tmp, MultiplyNTTs(aij, rHat[j]));
        }
        polyAdd(e1, NTT.decode(tmp));
        u.push(e1);
        polyAdd(tmp2, MultiplyNTTs(tHat[i], rHat[i]));
        cleanBytes(tmp);
      }
      x.clean();
      const e2 = sampleCBD(PRF, seed, 2 * K, ETA2);
      polyAdd(e2, NTT.decode(tmp2));
      const v = poly1.decode(msg2);
      polyAdd(v, e2);
      cleanBytes(tHat, rHat, tmp2, e2);
      return cipherCoder.encode([u, v]);
    },
    decrypt: (cipherText, privateKey) => {
      const [u, v] = cipherCoder.decode(cipherText);
      const sk = secretCoder.decode(privateKey);
      const tmp = new Uint16Array(N);
      for (let i = 0; i < K; i++)
        polyAdd(tmp, MultiplyNTTs(sk[i], NTT.encode(u[i])));
      polySub(v, NTT.decode(tmp));
      cleanBytes(tmp, sk, u);
      return poly1.encode(v);
    }
  };
};
function createKyber(opts2) {
  const KPKE = genKPKE(opts2);
  const { HASH256, HASH512, KDF } = opts2;
  const { secretCoder: KPKESecretCoder, lengths } = KPKE;
  const secretCoder = splitCoder("secretKey", lengths.secretKey, lengths.publicKey, 32, 32);
  const msgLen = 32;
  const seedLen = 64;
  return {
    info: { type: "ml-kem" },
    lengths: {
      ...lengths,
      seed: 64,
      msg: msgLen,
      msgRand: msgLen,
      secretKey: secretCoder.bytesLen
    },
    keygen: (seed = randomBytes4(seedLen)) => {
      abytes4(seed, seedLen, "seed");
      const { publicKey, secretKey: sk } = KPKE.keygen(seed.subarray(0, 32));
      const publicKeyHash = HASH256(publicKey);
      const secretKey = secretCoder.encode([sk, publicKey, publicKeyHash, seed.subarray(32)]);
      cleanBytes(sk, publicKeyHash);
      return { publicKey, secretKey };
    },
    getPublicKey: (secretKey) => {
      const [_sk, publicKey, _publicKeyHash, _z] = secretCoder.decode(secretKey);
      return Uint8Array.from(publicKey);
    },
    encapsulate: (publicKey, msg2 = randomBytes4(msgLen)) => {
      abytes4(publicKey, lengths.publicKey, "publicKey");
      abytes4(msg2, msgLen, "message");
      const eke = publicKey.subarray(0, 384 * opts2.K);
      const ek = KPKESecretCoder.encode(KPKESecretCoder.decode(copyBytes3(eke)));
      if (!equalBytes2(ek, eke)) {
        cleanBytes(ek);
        throw new Error("ML-KEM.encapsulate: wrong publicKey modulus");
      }
      cleanBytes(ek);
      const kr = HASH512.create().update(msg2).update(HASH256(publicKey)).digest();
      const cipherText = KPKE.encrypt(publicKey, msg2, kr.subarray(32, 64));
      cleanBytes(kr.subarray(32));
      return { cipherText, sharedSecret: kr.subarray(0, 32) };
    },
    decapsulate: (cipherText, secretKey) => {
      abytes4(secretKey, secretCoder.bytesLen, "secretKey");
      abytes4(cipherText, lengths.cipherText, "cipherText");
      const k768 = secretCoder.bytesLen - 96;
      const start2 = k768 + 32;
      const test = HASH256(secretKey.subarray(k768 / 2, start2));
      if (!equalBytes2(test, secretKey.subarray(start2, start2 + 32)))
        throw new Error("invalid secretKey: hash check failed");
      const [sk, publicKey, publicKeyHash, z] = secretCoder.decode(secretKey);
      const msg2 = KPKE.decrypt(cipherText, sk);
      const kr = HASH512.create().update(msg2).update(publicKeyHash).digest();
      const Khat = kr.subarray(0, 32);
      const cipherText2 = KPKE.encrypt(publicKey, msg2, kr.subarray(32, 64));
      const isValid = equalBytes2(cipherText, cipherText2);
      const Kbar = KDF.create({ dkLen: 32 }).update(z).update(cipherText).digest();
      cleanBytes(msg2, cipherText2, !isValid ? Khat : Kbar);
      return isValid ? Khat : Kbar;
    }
  };
}
function shakePRF(dkLen, key, nonce) {
  return shake256.create({ dkLen }).update(key).update(new Uint8Array([nonce])).digest();
}
var opts = {
  HASH256: sha3_256,
  HASH512: sha3_512,
  KDF: shake256,
  XOF: XOF128,
  PRF: shakePRF
};
var ml_kem512 = /* @__PURE__ */ createKyber({
  ...opts,
  ...PARAMS[512]
});
var ml_kem768 = /* @__PURE__ */ createKyber({
  ...opts,
  ...PARAMS[768]
});
var ml_kem1024 = /* @__PURE__ */ createKyber({
  ...opts,
  ...PARAMS[1024]
});

// node_modules/@noble/post-quantum/hybrid.js
/*! noble-post-quantum - MIT License (c) 2024 Paul Miller (paulmillr.com) */
function ecKeygen(curve, allowZeroKey = false) {
  const lengths = curve.lengths;
  let keygen = curve.keygen;
  if (allowZeroKey) {
    const wCurve = curve;
    const Fn = wCurve.Point.Fn;
    if (!Fn)
      throw new Error("No Point.Fn");
    keygen = (seed = randomBytes4(lengths.seed)) => {
      abytes4(seed, lengths.seed, "seed");
      const seedScalar = Fn.isLE ? bytesToNumberLE(seed) : bytesToNumberBE(seed);
      const secretKey = Fn.toBytes(Fn.create(seedScalar));
      return { secretKey, publicKey: curve.getPublicKey(secretKey) };
    };
  }
  return {
    lengths: { secretKey: lengths.secretKey, publicKey: lengths.publicKey, seed: lengths.seed },
    keygen,
    getPublicKey: (secretKey) => curve.getPublicKey(secretKey)
  };
}
function ecdhKem(curve, allowZeroKey = false) {
  const kg = ecKeygen(curve, allowZeroKey);
  if (!curve.getSharedSecret)
    throw new Error("wrong curve");
  return {
    lengths: { ...kg.lengths, msg: kg.lengths.seed, cipherText: kg.lengths.publicKey },
    keygen: kg.keygen,
    getPublicKey: kg.getPublicKey,
    encapsulate(publicKey, rand = randomBytes4(curve.lengths.seed)) {
      const ek = this.keygen(rand).secretKey;
      const sharedSecret = this.decapsulate(publicKey, ek);
      const cipherText = curve.getPublicKey(ek);
      cleanBytes(ek);
      return { sharedSecret, cipherText };
    },
    decapsulate(cipherText, secretKey) {
      const res = curve.getSharedSecret(secretKey, cipherText);
      return curve.lengths.publicKeyHasPrefix ? res.subarray(1) : res;
    }
  };
}
function splitLengths(lst, name) {
  return splitCoder(name, ...lst.map((i) => {
    if (typeof i.lengths[name] !== "number")
      throw new Error("wrong length: " + name);
    return i.lengths[name];
  }));
}
function expandSeedXof(xof) {
  return (seed, seedLen) => xof(seed, { dkLen: seedLen });
}
function combineKeys(realSeedLen, expandSeed, ...ck) {
  const seedCoder = splitLengths(ck, "seed");
  const pkCoder = splitLengths(ck, "publicKey");
  if (realSeedLen === void 0)
    realSeedLen = seedCoder.bytesLen;
  anumber4(realSeedLen);
  function expandDecapsulationKey(seed) {
    abytes4(seed, realSeedLen);
    const expanded = seedCoder.decode(expandSeed(seed, seedCoder.bytesLen));
    const keys = ck.map((i, j) => i.keygen(expanded[j]));
    const secretKey = keys.map((i) => i.secretKey);
    const publicKey = keys.map((i) => i.publicKey);
    return { secretKey, publicKey };
  }
  return {
    info: { lengths: { seed: realSeedLen, publicKey: pkCoder.bytesLen, secretKey: realSeedLen } },
    getPublicKey(secretKey) {
      return this.keygen(secretKey).publicKey;
    },
    keygen(seed = randomBytes4(realSeedLen)) {
      const { publicKey: pk, secretKey } = expandDecapsulationKey(seed);
      const publicKey = pkCoder.encode(pk);
      cleanBytes(pk);
      cleanBytes(secretKey);
      return { secretKey: seed, publicKey };
    },
    expandDecapsulationKey,
    realSeedLen
  };
}
function combineKEMS(realSeedLen, realMsgLen, expandSeed, combiner, ...kems) {
  const keys = combineKeys(realSeedLen, expandSeed, ...kems);
  const ctCoder = splitLengths(kems, "cipherText");
  const pkCoder = splitLengths(kems, "publicKey");
  const msgCoder = splitLengths(kems, "msg");
  if (realMsgLen === void 0)
    realMsgLen = msgCoder.bytesLen;
  anumber4(realMsgLen);
  return {
    lengths: {
      ...keys.info.lengths,
      msg: realMsgLen,
      msgRand: msgCoder.bytesLen,
      cipherText: ctCoder.bytesLen
    },
    getPublicKey: keys.getPublicKey,
    keygen: keys.keygen,
    encapsulate(pk, randomness = randomBytes4(msgCoder.bytesLen)) {
      const pks = pkCoder.decode(pk);
      const rand = msgCoder.decode(randomness);
      const enc = kems.map((i, j) => i.encapsulate(pks[j], rand[j]));
      const sharedSecret = enc.map((i) => i.sharedSecret);
      const cipherText = enc.map((i) => i.cipherText);
      const res = {
        sharedSecret: combiner(pks, cipherText, sharedSecret),
        cipherText: ctCoder.encode(cipherText)
      };
      cleanBytes(sharedSecret, cipherText);
      return res;
    },
    decapsulate(ct, seed) {
      const cts = ctCoder.decode(ct);
      const { publicKey, secretKey } = keys.expandDecapsulationKey(seed);
      const sharedSecret = kems.map((i, j) => i.decapsulate(cts[j], secretKey[j]));
      return combiner(publicKey, cts, sharedSecret);
    }
  };
}
function QSF(label, pqc, curveKEM, xof, kdf) {
  ahash2(xof);
  ahash2(kdf);
  return combineKEMS(32, 32, expandSeedXof(xof), (pk, ct, ss) => kdf(concatBytes2(ss[0], ss[1], ct[1], pk[1], asciiToBytes(label))), pqc, curveKEM);
}
var QSF_ml_kem768_p256 = QSF("QSF-KEM(ML-KEM-768,P-256)-XOF(SHAKE256)-KDF(SHA3-256)", ml_kem768, ecdhKem(p256, true), shake256, sha3_256);
var QSF_ml_kem1024_p384 = QSF("QSF-KEM(ML-KEM-1024,P-384)-XOF(SHAKE256)-KDF(SHA3-256)", ml_kem1024, ecdhKem(p384, true), shake256, sha3_256);
function createKitchenSink(label, pqc, curveKEM, xof, hash) {
  ahash2(xof);
  ahash2(hash);
  return combineKEMS(32, 32, expandSeedXof(xof), (pk, ct, ss) => {
    const preimage = concatBytes2(ss[0], ss[1], ct[0], pk[0], ct[1], pk[1], asciiToBytes(label));
    const len = 32;
    const ikm = concatBytes2(asciiToBytes("hybrid_prk"), preimage);
    const prk = extract2(hash, ikm);
    const info = concatBytes2(numberToBytesBE(len, 2), asciiToBytes("shared_secret"), asciiToBytes(""));
    const res = expand2(hash, prk, info, len);
    cleanBytes(prk, info, ikm, preimage);
    return res;
  }, pqc, curveKEM);
}
var x25519kem = ecdhKem(x25519);
var KitchenSink_ml_kem768_x25519 = createKitchenSink("KitchenSink-KEM(ML-KEM-768,X25519)-XOF(SHAKE256)-KDF(HKDF-SHA-256)", ml_kem768, x25519kem, shake256, sha2562);
var ml_kem768_x25519 = /* @__PURE__ */ (() => combineKEMS(
  32,
  32,
  expandSeedXof(shake256),
  // Awesome label, so much escaping hell in a single line.
  (pk, ct, ss) => sha3_256(concatBytes2(ss[0], ss[1], ct[1], pk[1], asciiToBytes("\\.//^\\"))),
  ml_kem768,
  x25519kem
))();
var MLKEM768X25519 = ml_kem768_x25519;

// node_modules/@noble/curves/utils.js
/*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
function aarray(item, title, inner = () => {
}) {
  if (!Array.isArray(item))
    throw new TypeError(`"${title}" expected array, got type=${typeof item}`);
  for (let i = 0; i < item.length; i++)
    inner(item[i], `${title}[${i}]`);
  return item;
}
var abytes5 = (value, length, title) => abytes2(value, length, title);
var anumber5 = anumber2;
function aobject3(value, title = "object") {
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new TypeError(title === "object" ? "expected valid options object" : `"${title}" expected object, got type=${typeof value}`);
  return value;
}
function afunction(value, title) {
  if (typeof value !== "function")
    throw new TypeError(`"${title}" is invalid: expected function, got ${typeof value}`);
  return value;
}
var bytesToHex3 = bytesToHex;
var hexToBytes3 = (hex) => hexToBytes(hex);
var isBytes5 = isBytes2;
var randomBytes5 = (bytesLength) => randomBytes(bytesLength);
var _0n7 = /* @__PURE__ */ BigInt(0);
var _1n8 = /* @__PURE__ */ BigInt(1);
var atitle3 = (title) => title ? `"${title}" ` : "";
function abool3(value, title = "") {
  if (typeof value !== "boolean")
    throw new TypeError(atitle3(title) + "expected boolean, got type=" + typeof value);
  return value;
}
function abignumber2(n) {
  if (typeof n === "bigint") {
    if (!isPosBig2(n))
      throw new RangeError("positive bigint expected, got " + n);
  } else
    anumber5(n);
  return n;
}
function asafenumber(value, title = "") {
  if (typeof value !== "number") {
    const prefix = title && `"${title}" `;
    throw new TypeError(prefix + "expected number, got type=" + typeof value);
  }
  if (!Number.isSafeInteger(value)) {
    const prefix = title && `"${title}" `;
    throw new RangeError(prefix + "expected safe integer, got " + value);
  }
}
function hexToNumber2(hex) {
  if (typeof hex !== "string")
    throw new TypeError("hex string expected, got " + typeof hex);
  return hex === "" ? _0n7 : BigInt("0x" + hex);
}
function bytesToNumberBE2(bytes) {
  return hexToNumber2(bytesToHex(bytes));
}
function bytesToNumberLE2(bytes) {
  return hexToNumber2(bytesToHex(copyBytes4(abytes2(bytes)).reverse()));
}
function numberToBytesBE2(n, len) {
  anumber2(len);
  if (len === 0)
    throw new Error("zero output length is invalid");
  n = abignumber2(n);
  const expectedLen = len * 2;
  const hex = n.toString(16);
  if (hex.length > expectedLen)
    throw new RangeError("number is too large");
  return hexToBytes(hex.padStart(expectedLen, "0"));
}
function numberToBytesLE2(n, len) {
  return numberToBytesBE2(n, len).reverse();
}
function copyBytes4(bytes) {
  return Uint8Array.from(abytes5(bytes));
}
function isPosBig2(n) {
  return typeof n === "bigint" && _0n7 <= n;
}
function inRange2(n, min, max) {
  return isPosBig2(n) && isPosBig2(min) && isPosBig2(max) && min <= n && n < max;
}
function aInRange2(title, n, min, max) {
  if (!inRange2(n, min, max))
    throw new RangeError("expected valid " + title + ": " + min + " <= n < " + max + ", got " + n);
}
function bitLen2(n) {
  if (n < _0n7)
    throw new Error("expected non-negative bigint, got " + n);
  return n === _0n7 ? 0 : n.toString(2).length;
}
var bitMask2 = (n) => {
  asafenumber(n, "n");
  return (_1n8 << BigInt(n)) - _1n8;
};
function validateObject2(object, fields = {}, optFields = {}, title = "object") {
  aobject3(object, title);
  aobject3(fields, "fields");
  aobject3(optFields, "optFields");
  function checkField(fieldName, expectedType, isOpt) {
    const label = title === "object" ? `param "${String(fieldName)}"` : `"${title}.${String(fieldName)}"`;
    const val = object[fieldName];
    if (!Object.hasOwn(object, fieldName) && (isOpt ? val !== void 0 : expectedType !== "function")) {
      throw new TypeError(`${label} is invalid: expected own property`);
    }
    if (isOpt && val === void 0)
      return;
    const current = typeof val;
    if (current !== expectedType || val === null)
      throw new TypeError(`${label} is invalid: expected ${expectedType}, got ${current}`);
  }
  const iter = (f, isOpt) => Object.entries(f).forEach(([k, v]) => checkField(k, v, isOpt));
  iter(fields, false);
  iter(optFields, true);
}

// node_modules/@noble/curves/abstract/modular.js
/*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
var _0n8 = /* @__PURE__ */ BigInt(0);
var _1n9 = /* @__PURE__ */ BigInt(1);
var _2n6 = /* @__PURE__ */ BigInt(2);
var _3n4 = /* @__PURE__ */ BigInt(3);
var _4n3 = /* @__PURE__ */ BigInt(4);
var _5n3 = /* @__PURE__ */ BigInt(5);
var _7n3 = /* @__PURE__ */ BigInt(7);
var _8n3 = /* @__PURE__ */ BigInt(8);
var _9n2 = /* @__PURE__ */ BigInt(9);
var _15n = /* @__PURE__ */ BigInt(15);
var _16n2 = /* @__PURE__ */ BigInt(16);
var POW_WINDOWED_MIN = /* @__PURE__ */ BigInt("0x10000000000000000");
function mod3(a, b) {
  if (b <= _0n8)
    throw new Error("mod: expected positive modulus, got " + b);
  const result = a % b;
  return result >= _0n8 ? result : b + result;
}
function pow(num, power, modulo) {
  if (modulo <= _1n9)
    throw new Error("pow: expected modulus > 1, got " + modulo);
  if (typeof power !== "bigint")
    throw new TypeError("invalid exponent: expected bigint, got " + typeof power);
  if (power < _0n8)
    throw new Error("invalid exponent, negatives unsupported");
  if (power === _0n8)
    return _1n9;
  if (power === _1n9)
    return num;
  let d = num % modulo;
  if (d < _0n8)
    d += modulo;
  if (power < POW_WINDOWED_MIN) {
    let p2 = _1n9;
    while (power > _0n8) {
      if (power & _1n9)
        p2 = p2 * d % modulo;
      d = d * d % modulo;
      power >>= _1n9;
    }
    return p2;
  }
  const digits = [];
  while (power > _0n8) {
    digits.push(Number(power & _15n));
    power >>= _4n3;
  }
  const table = new Array(16);
  table[0] = _1n9;
  table[1] = d;
  for (let i = 2; i < 16; i++)
    table[i] = table[i - 1] * d % modulo;
  let p = table[digits[digits.length - 1]];
  for (let w = digits.length - 2; w >= 0; w--) {
    p = p * p % modulo;
    p = p * p % modulo;
    p = p * p % modulo;
    p = p * p % modulo;
    const digit = digits[w];
    if (digit !== 0)
      p = p * table[digit] % modulo;
  }
  return p;
}
function pow22(x, power, modulo) {
  if (modulo <= _1n9)
    throw new Error("pow2: expected modulus > 1, got " + modulo);
  if (power < _0n8)
    throw new Error("pow2: expected non-negative exponent, got " + power);
  let res = x;
  while (power-- > _0n8) {
    res *= res;
    res %= modulo;
  }
  return res;
}
function invert2(number, modulo) {
  if (number === _0n8)
    throw new Error("invert: expected non-zero number");
  if (modulo <= _1n9)
    throw new Error("invert: expected modulus > 1, got " + modulo);
  let a = mod3(number, modulo);
  let b = modulo;
  let x = _0n8, u = _1n9;
  while (a !== _0n8) {
    const q = b / a;
    const r = b - a * q;
    const m = x - u * q;
    b = a, a = r, x = u, u = m;
  }
  const gcd = b;
  if (gcd !== _1n9)
    throw new Error("invert: does not exist");
  return mod3(x, modulo);
}
function assertIsSquare2(Fp, root, n) {
  const F2 = Fp;
  if (!F2.eql(F2.sqr(root), n))
    throw new Error("Cannot find square root");
}
function aoddModulus(order, fnName) {
  if ((order & _1n9) === _0n8)
    throw new Error(fnName + ": expected odd modulus, got " + order);
}
function sqrt3mod42(Fp, n) {
  const F2 = Fp;
  const p1div4 = (F2.ORDER + _1n9) / _4n3;
  const root = F2.pow(n, p1div4);
  assertIsSquare2(F2, root, n);
  return root;
}
function sqrt5mod82(Fp, n) {
  const F2 = Fp;
  const p5div8 = (F2.ORDER - _5n3) / _8n3;
  const n2 = F2.mul(n, _2n6);
  const v = F2.pow(n2, p5div8);
  const nv = F2.mul(n, v);
  const i = F2.mul(F2.mul(nv, _2n6), v);
  const root = F2.mul(nv, F2.sub(i, F2.ONE));
  assertIsSquare2(F2, root, n);
  return root;
}
function sqrt9mod162(P) {
  const Fp_ = Field2(P);
  const tn = tonelliShanks2(P);
  const c1 = tn(Fp_, Fp_.neg(Fp_.ONE));
  const c2 = tn(Fp_, c1);
  const c3 = tn(Fp_, Fp_.neg(c1));
  const c4 = (P + _7n3) / _16n2;
  return ((Fp, n) => {
    const F2 = Fp;
    let tv1 = F2.pow(n, c4);
    let tv2 = F2.mul(tv1, c1);
    const tv3 = F2.mul(tv1, c2);
    const tv4 = F2.mul(tv1, c3);
    const e1 = F2.eql(F2.sqr(tv2), n);
    const e2 = F2.eql(F2.sqr(tv3), n);
    tv1 = F2.cmov(tv1, tv2, e1);
    tv2 = F2.cmov(tv4, tv3, e2);
    const e3 = F2.eql(F2.sqr(tv2), n);
    const root = F2.cmov(tv1, tv2, e3);
    assertIsSquare2(F2, root, n);
    return root;
  });
}
function tonelliShanks2(P) {
  if (P < _3n4)
    throw new Error("sqrt is not defined for small field");
  aoddModulus(P, "tonelliShanks");
  let Q2 = P - _1n9;
  let S = 0;
  while (Q2 % _2n6 === _0n8) {
    Q2 /= _2n6;
    S++;
  }
  let Z = _2n6;
  const _Fp = Field2(P);
  while (FpLegendre2(_Fp, Z) === 1) {
    if (Z++ > 1e3)
      throw new Error("Cannot find square root: probably non-prime P");
  }
  if (S === 1)
    return sqrt3mod42;
  let cc = _Fp.pow(Z, Q2);
  const Q1div2 = (Q2 + _1n9) / _2n6;
  return function tonelliSlow(Fp, n) {
    const F2 = Fp;
    if (F2.is0(n))
      return n;
    if (FpLegendre2(F2, n) !== 1)
      throw new Error("Cannot find square root");
    let M = S;
    let c = F2.mul(F2.ONE, cc);
    let t = F2.pow(n, Q2);
    let R = F2.pow(n, Q1div2);
    while (!F2.eql(t, F2.ONE)) {
      if (F2.is0(t))
        throw new Error("Cannot find square root: probably non-prime P");
      let i = 1;
      let t_tmp = F2.sqr(t);
      while (!F2.eql(t_tmp, F2.ONE)) {
        i++;
        t_tmp = F2.sqr(t_tmp);
        if (i === M)
          throw new Error("Cannot find square root");
      }
      const exponent = _1n9 << BigInt(M - i - 1);
      const b = F2.pow(c, exponent);
      M = i;
      c = F2.sqr(b);
      t = F2.mul(t, c);
      R = F2.mul(R, b);
    }
    return R;
  };
}
function FpSqrt2(P) {
  aoddModulus(P, "Fp.sqrt");
  if (P % _4n3 === _3n4)
    return sqrt3mod42;
  if (P % _8n3 === _5n3)
    return sqrt5mod82;
  if (P % _16n2 === _9n2)
    return sqrt9mod162(P);
  return tonelliShanks2(P);
}
var isNegativeLE2 = (num, modulo) => (mod3(num, modulo) & _1n9) === _1n9;
var FIELD_FIELDS2 = [
  "create",
  "isValid",
  "is0",
  "neg",
  "inv",
  "sqrt",
  "sqr",
  "eql",
  "add",
  "sub",
  "mul",
  "pow",
  "div",
  "addN",
  "subN",
  "mulN",
  "sqrN"
];
function validateField2(field) {
  aobject3(field, "field");
  if (typeof field.ORDER !== "bigint")
    throw new TypeError('param "ORDER" is invalid: expected bigint, got ' + typeof field.ORDER);
  asafenumber(field.BYTES, "BYTES");
  asafenumber(field.BITS, "BITS");
  for (const name of FIELD_FIELDS2)
    afunction(field[name], "field." + name);
  if (field.BYTES < 1 || field.BITS < 1)
    throw new Error("invalid field: expected BYTES/BITS > 0");
  if (field.ORDER <= _1n9)
    throw new Error("invalid field: expected ORDER > 1, got " + field.ORDER);
  return field;
}
function FpInvertBatch2(Fp, nums, passZero = false) {
  validateField2(Fp);
  aarray(nums, "nums");
  abool3(passZero, "passZero");
  const F2 = Fp;
  const inverted = new Array(nums.length).fill(passZero ? F2.ZERO : void 0);
  const multipliedAcc = nums.reduce((acc, num, i) => {
    if (F2.is0(num))
      return acc;
    inverted[i] = acc;
    return F2.mul(acc, num);
  }, F2.ONE);
  const invertedAcc = F2.inv(multipliedAcc);
  nums.reduceRight((acc, num, i) => {
    if (F2.is0(num))
      return acc;
    inverted[i] = F2.mul(acc, inverted[i]);
    return F2.mul(acc, num);
  }, invertedAcc);
  return inverted;
}
function FpLegendre2(Fp, n) {
  validateField2(Fp);
  const F2 = Fp;
  aoddModulus(F2.ORDER, "FpLegendre");
  const p1mod2 = (F2.ORDER - _1n9) / _2n6;
  const powered = F2.pow(n, p1mod2);
  const yes = F2.eql(powered, F2.ONE);
  const zero = F2.eql(powered, F2.ZERO);
  const no = F2.eql(powered, F2.neg(F2.ONE));
  if (!yes && !zero && !no)
    throw new Error("invalid Legendre symbol result");
  return yes ? 1 : zero ? 0 : -1;
}
function nLength2(n, nBitLength) {
  if (nBitLength !== void 0)
    anumber5(nBitLength);
  if (n <= _0n8)
    throw new Error("invalid n length: expected positive n, got " + n);
  if (nBitLength !== void 0 && nBitLength < 1)
    throw new Error("invalid n length: expected positive bit length, got " + nBitLength);
  const bits = bitLen2(n);
  if (nBitLength !== void 0 && nBitLength < bits)
    throw new Error(`invalid n length: expected nBitLength (${nBitLength}) >= bitLen(n) (${bits})`);
  const _nBitLength = nBitLength !== void 0 ? nBitLength : bits;
  const nByteLength = Math.ceil(_nBitLength / 8);
  return { nBitLength: _nBitLength, nByteLength };
}
var FIELD_SQRT = /* @__PURE__ */ new WeakMap();
var _Field2 = class {
  ORDER;
  BITS;
  BYTES;
  isLE;
  ZERO = _0n8;
  ONE = _1n9;
  _lengths;
  _mod;
  constructor(ORDER, opts2 = {}) {
    if (ORDER <= _1n9)
      throw new Error("invalid field: expected ORDER > 1, got " + ORDER);
    let _nbitLength = void 0;
    this.isLE = false;
    if (opts2 != null && typeof opts2 === "object") {
      if (typeof opts2.BITS === "number")
        _nbitLength = opts2.BITS;
      if (typeof opts2.sqrt === "function")
        Object.defineProperty(this, "sqrt", { value: opts2.sqrt, enumerable: true });
      if (typeof opts2.isLE === "boolean")
        this.isLE = opts2.isLE;
      if (opts2.allowedLengths)
        this._lengths = Object.freeze(opts2.allowedLengths.slice());
      if (typeof opts2.modFromBytes === "boolean")
        this._mod = opts2.modFromBytes;
    }
    const { nBitLength, nByteLength } = nLength2(ORDER, _nbitLength);
    if (nByteLength > 2048)
      throw new Error("invalid field: expected ORDER of <= 2048 bytes");
    this.ORDER = ORDER;
    this.BITS = nBitLength;
    this.BYTES = nByteLength;
    Object.freeze(this);
  }
  create(num) {
    return mod3(num, this.ORDER);
  }
  isValid(num) {
    if (typeof num !== "bigint")
      throw new TypeError("invalid field element: expected bigint, got " + typeof num);
    return _0n8 <= num && num < this.ORDER;
  }
  is0(num) {
    return num === _0n8;
  }
  // is valid and invertible
  isValidNot0(num) {
    return !this.is0(num) && this.isValid(num);
  }
  isOdd(num) {
    return (num & _1n9) === _1n9;
  }
  neg(num) {
    return mod3(-num, this.ORDER);
  }
  eql(lhs, rhs) {
    return lhs === rhs;
  }
  sqr(num) {
    return mod3(num * num, this.ORDER);
  }
  add(lhs, rhs) {
    return mod3(lhs + rhs, this.ORDER);
  }
  sub(lhs, rhs) {
    return mod3(lhs - rhs, this.ORDER);
  }
  mul(lhs, rhs) {
    return mod3(lhs * rhs, this.ORDER);
  }
  pow(num, power) {
    return pow(num, power, this.ORDER);
  }
  div(lhs, rhs) {
    return mod3(lhs * invert2(rhs, this.ORDER), this.ORDER);
  }
  // Same as above, but doesn't normalize
  sqrN(num) {
    return num * num;
  }
  addN(lhs, rhs) {
    return lhs + rhs;
  }
  subN(lhs, rhs) {
    return lhs - rhs;
  }
  mulN(lhs, rhs) {
    return lhs * rhs;
  }
  inv(num) {
    return invert2(num, this.ORDER);
  }
  sqrt(num) {
    let sqrt = FIELD_SQRT.get(this);
    if (!sqrt)
      FIELD_SQRT.set(this, sqrt = FpSqrt2(this.ORDER));
    return sqrt(this, num);
  }
  toBytes(num) {
    return this.isLE ? numberToBytesLE2(num, this.BYTES) : numberToBytesBE2(num, this.BYTES);
  }
  fromBytes(bytes, skipValidation = false) {
    abytes5(bytes);
    const { _lengths: allowedLengths, BYTES, isLE: isLE4, ORDER, _mod: modFromBytes } = this;
    if (allowedLengths) {
      if (bytes.length < 1 || !allowedLengths.includes(bytes.length) || bytes.length > BYTES) {
        throw new Error("Field.fromBytes: expected " + allowedLengths + " bytes, got " + bytes.length);
      }
      const padded = new Uint8Array(BYTES);
      padded.set(bytes, isLE4 ? 0 : padded.length - bytes.length);
      bytes = padded;
    }
    if (bytes.length !== BYTES)
      throw new Error("Field.fromBytes: expected " + BYTES + " bytes, got " + bytes.length);
    let scalar = isLE4 ? bytesToNumberLE2(bytes) : bytesToNumberBE2(bytes);
    if (modFromBytes)
      scalar = mod3(scalar, ORDER);
    if (!skipValidation) {
      if (!this.isValid(scalar))
        throw new Error("invalid field element: outside of range 0..ORDER");
    }
    return scalar;
  }
  // TODO: we don't need it here, move out to separate fn
  invertBatch(lst) {
    return FpInvertBatch2(this, lst, true);
  }
  // We can't move this out because Fp6, Fp12 implement it
  // and it's unclear what to return in there.
  cmov(a, b, condition) {
    abool3(condition, "condition");
    return condition ? b : a;
  }
};
function Field2(ORDER, opts2 = {}) {
  Object.freeze(_Field2.prototype);
  return new _Field2(ORDER, opts2);
}

// node_modules/@noble/curves/abstract/curve.js
/*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
var _0n9 = /* @__PURE__ */ BigInt(0);
var _1n10 = /* @__PURE__ */ BigInt(1);
var _4n4 = /* @__PURE__ */ BigInt(4);
var BLIND_BYTES = 16;
var BLIND_BITS = 128;
var FW_WINDOW = 5;
var TABLE_BYTES_MAX = /* @__PURE__ */ (() => 2 ** 31)();
function validatePointCons(Point) {
  const pc = Point;
  if (typeof pc !== "function")
    throw new TypeError('"Point" expected constructor, got type=' + typeof Point);
  afunction(pc.fromAffine, "Point.fromAffine");
  afunction(pc.fromBytes, "Point.fromBytes");
  afunction(pc.fromHex, "Point.fromHex");
  aobject3(pc.BASE, "Point.BASE");
  aobject3(pc.ZERO, "Point.ZERO");
  validateField2(pc.Fp);
  validateField2(pc.Fn);
}
function normalizeZ2(c, points) {
  validatePointCons(c);
  validateMSMPoints(points, c);
  const invertedZs = FpInvertBatch2(c.Fp, points.map((p) => p.Z));
  return points.map((p, i) => c.fromAffine(p.toAffine(invertedZs[i])));
}
function validateW2(W, bits, min = 1) {
  if (!Number.isSafeInteger(W) || W < min || W > bits)
    throw new Error("invalid window size, expected [" + min + ".." + bits + "], got W=" + W);
}
function validateTableBytes(numPoints, fpBytes) {
  const bytes = numPoints * (4 * fpBytes + 128);
  if (bytes > TABLE_BYTES_MAX)
    throw new Error("invalid window size: table would need ~" + Math.ceil(bytes / 2 ** 20) + " MiB, max " + TABLE_BYTES_MAX / 2 ** 20 + " MiB");
}
function probeRandomBytes(randomBytes6, length) {
  if (randomBytes6 === void 0)
    return void 0;
  afunction(randomBytes6, "randomBytes");
  try {
    const probe = randomBytes6(length);
    if (!isBytes5(probe) || probe.length !== length)
      return void 0;
  } catch {
    return void 0;
  }
  return randomBytes6;
}
function validateMSMPoints(points, c) {
  aarray(points, "points");
  points.forEach((p, i) => {
    if (!(p instanceof c))
      throw new Error("invalid point at index " + i);
  });
}
function validateMSMScalars(scalars, field, maxScalar) {
  if (!Array.isArray(scalars))
    throw new Error("array of scalars expected");
  scalars.forEach((s, i) => {
    const ok = maxScalar === void 0 ? field.isValid(s) : isPosBig2(s) && s < maxScalar;
    if (!ok)
      throw new Error("invalid scalar at index " + i);
  });
}
var pointWindowSizes2 = /* @__PURE__ */ new WeakMap();
function getWindowSize(P) {
  return pointWindowSizes2.get(P) || 1;
}
function oddMultiples(p, size) {
  const dbl = p.double();
  const t = [p];
  for (let j = 1; j < size; j++)
    t.push(t[j - 1].add(dbl));
  return t;
}
function wnafDigits(n, W) {
  const size = 2 ** W;
  const half = size / 2;
  const mask = BigInt(size - 1);
  const d = [];
  while (n > _0n9) {
    let w = 0;
    if (n & _1n10) {
      w = Number(n & mask);
      if (w >= half)
        w -= size;
      n -= BigInt(w);
    }
    d.push(w);
    n >>= _1n10;
  }
  return d;
}
function signedWindowDigits(n, W, windows) {
  const size = 2 ** W;
  const half = size / 2;
  const mask = BigInt(size - 1);
  const shiftBy = BigInt(W);
  const d = [];
  for (let w = 0; w < windows; w++) {
    let v = Number(n & mask);
    n >>= shiftBy;
    if (v > half) {
      v -= size;
      n += _1n10;
    }
    d.push(v);
  }
  if (n !== _0n9)
    throw new Error("invalid wnaf");
  return d;
}
function wnafWalk(zero, tables, digits) {
  let max = 0;
  for (const d of digits)
    max = Math.max(max, d.length);
  let acc = zero;
  for (let bit = max - 1; bit >= 0; bit--) {
    if (bit !== max - 1)
      acc = acc.double();
    for (let i = 0; i < digits.length; i++) {
      const w = digits[i][bit];
      if (w) {
        const item = tables[i][Math.abs(w) - 1 >> 1];
        acc = acc.add(w < 0 ? item.negate() : item);
      }
    }
  }
  return acc;
}
var ScalarMultiplier = class {
  Point;
  BASE;
  ZERO;
  randomBytes;
  wnafPrecomputes = /* @__PURE__ */ new WeakMap();
  baseCanBeBlinded;
  bits;
  // Parametrized with a given Point class (not individual point)
  constructor(Point, randomBytes6) {
    validatePointCons(Point);
    this.randomBytes = probeRandomBytes(randomBytes6, BLIND_BYTES);
    this.Point = Point;
    this.BASE = Point.BASE;
    this.ZERO = Point.ZERO;
    this.bits = Point.Fn.BITS;
  }
  /**
   * Creates a signed fixed-window wNAF precomputation table: for every window w, the
   * multiples `[1..2^(W−1)]⋅2^(w⋅W)⋅P`, flattened. All doublings are baked into the table,
   * so cached multiplication is additions-only. `windows = ceil(bits/W) + 1`: the extra
   * window absorbs the final carry of signed-digit recoding.
   * For a 256-bit curve and W=6, the table is 44⋅32 = 1408 points.
   * @param point - Point instance
   * @param W - window size
   * @param bits - scalar bitlength the table must cover
   */
  buildWnafTable(point, W, bits) {
    const windows = Math.ceil(bits / W) + 1;
    const half = 2 ** (W - 1);
    const comp = [];
    let base = point;
    for (let w = 0; w < windows; w++) {
      let acc = base;
      for (let i = 0; i < half; i++) {
        comp.push(acc);
        acc = acc.add(base);
      }
      base = comp[comp.length - 1].double();
    }
    return { W, bits, windows, comp };
  }
  /**
   * Implements ec multiplication using precomputed signed fixed-window wNAF tables.
   * Constant-time: fixed window count with one table addition per window — zero digits feed
   * the fake accumulator — and no doublings; the lookup scans the whole window slice.
   * Scalar bounds are validated by the public entry points ({@link ScalarMultiplier.mulCT},
   * {@link ScalarMultiplier.mulCTBlinded}, {@link ScalarMultiplier.mulUnsafe});
   * signedWindowDigits throws if `n` exceeds the table.
   * @returns real and fake (for const-time) points
   */
  wnafCachedCT(precomputes, n) {
    const { W, windows, comp } = precomputes;
    const half = 2 ** (W - 1);
    const digits = signedWindowDigits(n, W, windows);
    let p = this.ZERO;
    let f = this.BASE;
    for (let w = 0; w < windows; w++) {
      const digit = digits[w];
      const start2 = w * half;
      const idx = Math.abs(digit) - 1;
      let sel = comp[start2];
      for (let i = 1; i < half; i++)
        sel = i === idx ? comp[start2 + i] : sel;
      const neg = sel.negate();
      if (digit === 0)
        f = f.add(comp[start2]);
      else
        p = p.add(digit < 0 ? neg : sel);
    }
    return { p, f };
  }
  // Cache key is point identity plus (W, bits); at most two entries exist per point (public-width
  // `Fn.BITS` and blinded `Fn.BITS + BLIND_BITS`). Callers must not reuse the same point with
  // incompatible `transform(...)` layouts and expect a separate cache entry.
  getWnafPrecomputes(W, point, bits, transform) {
    let entries = this.wnafPrecomputes.get(point);
    let comp = entries?.find((entry) => entry.W === W && entry.bits === bits);
    if (!comp) {
      comp = this.buildWnafTable(point, W, bits);
      if (typeof transform === "function")
        comp = { ...comp, comp: transform(comp.comp) };
      if (!entries) {
        entries = [];
        this.wnafPrecomputes.set(point, entries);
      }
      entries.push(comp);
    }
    return comp;
  }
  assertPoint(point) {
    if (!(point instanceof this.Point))
      throw new TypeError('"point" expected Point instance, got type=' + typeof point);
  }
  // Shared prologue of the constant-time entry points. Rejects scalar 0: in key/signature-style
  // callers a zero scalar means broken upstream plumbing, and concrete Points already reject it.
  // Uses inRange instead of Fn.isValidNot0: validateField() only certifies the arithmetic subset.
  validateMulInput(point, scalar) {
    this.assertPoint(point);
    if (!inRange2(scalar, _1n10, this.Point.Fn.ORDER))
      throw new Error("invalid scalar");
  }
  // Constant-time dispatch shared by mulCT / mulCTBlinded. Un-precomputed points (W===1, e.g.
  // ECDH peer keys) skip building a throwaway cached table in favor of a small fixed-window
  // multiply. `n` must be < 2^bits.
  runCT(point, n, bits, transform) {
    const W = getWindowSize(point);
    if (W === 1)
      return this.fixedWindowCT(point, n, bits);
    return this.wnafCachedCT(this.getWnafPrecomputes(W, point, bits, transform), n);
  }
  mulCT(point, scalar, transform) {
    this.validateMulInput(point, scalar);
    return this.runCT(point, scalar, this.bits, transform);
  }
  mulCTBlinded(point, scalar, transform) {
    this.validateMulInput(point, scalar);
    if (this.randomBytes === void 0)
      throw new Error("randomBytes is required for scalar blinding");
    const bits = this.Point.Fn.BITS + BLIND_BITS;
    const blind = this.randomBytes(BLIND_BYTES);
    if (!isBytes5(blind) || blind.length !== BLIND_BYTES)
      throw new Error("randomBytes returned invalid byte array");
    blind[0] = blind[0] & 63 | 128;
    const n = scalar + bytesToNumberBE2(blind) * this.Point.Fn.ORDER;
    return this.runCT(point, n, bits, transform);
  }
  /**
   * Constant-time multiplication `n*point` for an un-precomputed point, via a small fixed window.
   * A cached wNAF table only pays off when reused; a flat 2^FW_WINDOW table (`size-1` adds) is
   * far cheaper to build for a single use. The point-operation sequence is independent of `n`:
   * build the table, then per window exactly FW_WINDOW doublings, a data-oblivious scan over
   * every table entry, and one addition (adds the identity when the window digit is 0 — never
   * skipped).
   *
   * `n` must be `< 2^bits`. Assumes complete addition (adding the identity costs the same as any
   * add), which holds for the Weierstrass/Edwards point types used here. The table is left in
   * projective form (no normalizeZ): normalizing this small a table costs more than the
   * mixed-add savings it would buy for a single multiply.
   * @returns real point `p`; `f` duplicates it only to match {@link wnafCachedCT}'s return shape
   * (this path needs no fake accumulator — its op-count is already scalar-independent).
   */
  fixedWindowCT(point, n, bits) {
    const W = FW_WINDOW;
    const size = 1 << W;
    const mask = bitMask2(W);
    const table = new Array(size);
    table[0] = this.ZERO;
    for (let i = 1; i < size; i++)
      table[i] = table[i - 1].add(point);
    const windows = Math.ceil(bits / W);
    let acc = this.ZERO;
    for (let window2 = windows - 1; window2 >= 0; window2--) {
      if (window2 !== windows - 1)
        for (let d = 0; d < W; d++)
          acc = acc.double();
      const digit = Number(n >> BigInt(window2 * W) & mask);
      let sel = table[0];
      for (let i = 1; i < size; i++)
        sel = i === digit ? table[i] : sel;
      acc = acc.add(sel);
    }
    return { p: acc, f: acc };
  }
  shouldBlind(point, cofactor) {
    if (this.randomBytes === void 0)
      return false;
    if (cofactor === _1n10)
      return true;
    if (point !== this.BASE)
      return false;
    if (this.baseCanBeBlinded === void 0)
      this.baseCanBeBlinded = this.mulUnsafe(this.BASE, this.Point.Fn.ORDER).is0();
    return this.baseCanBeBlinded;
  }
  mulSecret(point, scalar, cofactor, transform) {
    return this.shouldBlind(point, cofactor) ? this.mulCTBlinded(point, scalar, transform) : this.mulCT(point, scalar, transform);
  }
  mulUnsafe(point, scalar, transform) {
    this.assertPoint(point);
    if (!isPosBig2(scalar))
      throw new Error("invalid scalar");
    const W = getWindowSize(point);
    if (W === 1 || scalar >= this.Point.Fn.ORDER)
      return mulAddUnsafe(this.Point, [point], [scalar], true);
    const precomputes = this.getWnafPrecomputes(W, point, this.bits, transform);
    return this.wnafCachedCT(precomputes, scalar).p;
  }
  // Remembers the window size used for precomputed wNAF multiplication of the given point
  // and drops any previously built tables. Usually only the base point is precomputed.
  // W=1 resets the point to the un-precomputed (table-less) paths.
  // W is additionally capped so tables stay under ~2 GiB ({@link TABLE_BYTES_MAX}).
  setWindowSize(point, W) {
    this.assertPoint(point);
    validateW2(W, this.bits);
    const windows = Math.ceil((this.bits + BLIND_BITS) / W) + 1;
    validateTableBytes(windows * 2 ** (W - 1), this.Point.Fp.BYTES);
    pointWindowSizes2.set(point, W);
    this.wnafPrecomputes.delete(point);
  }
  // True when a window size is set: tables themselves are built lazily on first multiply.
  hasWindowSize(point) {
    return getWindowSize(point) !== 1;
  }
};
function mulAddUnsafe(c, points, scalars, allowOversized = false) {
  validatePointCons(c);
  validateMSMPoints(points, c);
  abool3(allowOversized, "allowOversized");
  validateMSMScalars(scalars, c.Fn, allowOversized ? c.Fn.ORDER ** _4n4 : void 0);
  if (points.length !== scalars.length)
    throw new Error("arrays of points and scalars must have equal length");
  const tables = points.map((p) => oddMultiples(p, 4));
  const digits = scalars.map((n) => wnafDigits(n, 4));
  return wnafWalk(c.ZERO, tables, digits);
}
function createField2(order, field, isLE4) {
  if (field) {
    if (field.ORDER !== order)
      throw new Error("Field.ORDER must match order: Fp == p, Fn == n");
    validateField2(field);
    return field;
  } else {
    return Field2(order, { isLE: isLE4 });
  }
}
function createCurveFields2(type, CURVE, curveOpts = {}, FpFnLE) {
  if (type !== "weierstrass" && type !== "edwards")
    throw new Error('expected curve type "weierstrass" or "edwards"');
  if (FpFnLE === void 0)
    FpFnLE = type === "edwards";
  if (!CURVE || typeof CURVE !== "object")
    throw new Error(`expected valid ${type} CURVE object`);
  validateObject2(curveOpts);
  for (const p of ["p", "n", "h"]) {
    const val = CURVE[p];
    if (!(isPosBig2(val) && val !== _0n9))
      throw new Error(`CURVE.${p} must be positive bigint`);
  }
  const Fp = createField2(CURVE.p, curveOpts.Fp, FpFnLE);
  const Fn = createField2(CURVE.n, curveOpts.Fn, FpFnLE);
  const _b = type === "weierstrass" ? "b" : "d";
  const params = ["Gx", "Gy", "a", _b];
  for (const p of params) {
    if (!Fp.isValid(CURVE[p]))
      throw new Error(`CURVE.${p} must be valid field element of CURVE.Fp`);
  }
  CURVE = Object.freeze(Object.assign({}, CURVE));
  return { CURVE, Fp, Fn };
}
function createKeygen2(randomSecretKey, getPublicKey) {
  return function keygen(seed) {
    const secretKey = randomSecretKey(seed);
    return { secretKey, publicKey: getPublicKey(secretKey) };
  };
}

// node_modules/@noble/curves/abstract/edwards.js
/*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
var _0n10 = /* @__PURE__ */ BigInt(0);
var _1n11 = /* @__PURE__ */ BigInt(1);
var _2n7 = /* @__PURE__ */ BigInt(2);
var _4n5 = /* @__PURE__ */ BigInt(4);
var _8n4 = /* @__PURE__ */ BigInt(8);
function isEdValidXY(Fp, CURVE, x, y) {
  const x2 = Fp.sqr(x);
  const y2 = Fp.sqr(y);
  const left = Fp.add(Fp.mul(CURVE.a, x2), y2);
  const right = Fp.add(Fp.ONE, Fp.mul(CURVE.d, Fp.mul(x2, y2)));
  return Fp.eql(left, right);
}
function edwards(params, extraOpts = {}) {
  validateObject2(extraOpts, {}, {}, "extraOpts");
  const opts2 = extraOpts;
  const validated = createCurveFields2("edwards", params, opts2, opts2.FpFnLE);
  const { Fp, Fn } = validated;
  let CURVE = validated.CURVE;
  const { h: cofactor } = CURVE;
  if (FpLegendre2(Fp, CURVE.a) !== 1)
    throw new Error("edwards: CURVE.a must be a square in Fp for complete addition formulas");
  if (FpLegendre2(Fp, CURVE.d) !== -1)
    throw new Error("edwards: CURVE.d must be a non-square in Fp for complete addition formulas");
  validateObject2(opts2, {}, { uvRatio: "function", randomBytes: "function" });
  const randomBytes6 = opts2.randomBytes === void 0 ? randomBytes5 : opts2.randomBytes;
  const MASK = _2n7 << BigInt(Fp.BYTES * 8) - _1n11;
  function isOdd(n) {
    if (!Fp.isOdd)
      throw new Error("Field does not have .isOdd()");
    return Fp.isOdd(n);
  }
  const uvRatio2 = opts2.uvRatio === void 0 ? (u, v) => {
    try {
      return { isValid: true, value: Fp.sqrt(Fp.div(u, v)) };
    } catch (e) {
      return { isValid: false, value: _0n10 };
    }
  } : opts2.uvRatio;
  if (!isEdValidXY(Fp, CURVE, CURVE.Gx, CURVE.Gy))
    throw new Error("bad curve params: generator point");
  const mulA = Fp.eql(CURVE.a, Fp.neg(Fp.ONE)) ? (x) => Fp.neg(x) : Fp.eql(CURVE.a, Fp.ONE) ? (x) => x : (x) => Fp.mul(CURVE.a, x);
  function acoord(title, n, banZero = false) {
    const min = banZero ? _1n11 : _0n10;
    aInRange2("coordinate " + title, n, min, MASK);
    return n;
  }
  function aedpoint(other) {
    if (!(other instanceof Point))
      throw new Error("EdwardsPoint expected");
  }
  class Point {
    static BASE = new Point(CURVE.Gx, CURVE.Gy, Fp.ONE, Fp.mul(CURVE.Gx, CURVE.Gy));
    static ZERO = new Point(Fp.ZERO, Fp.ONE, Fp.ONE, Fp.ZERO);
    static Fp = Fp;
    static Fn = Fn;
    X;
    Y;
    Z;
    T;
    constructor(X, Y, Z, T) {
      this.X = acoord("x", X);
      this.Y = acoord("y", Y);
      this.Z = acoord("z", Z, true);
      this.T = acoord("t", T);
      Object.freeze(this);
    }
    static CURVE() {
      return CURVE;
    }
    /**
     * Create one extended Edwards point from affine coordinates.
     * Does NOT validate that the point is on-curve or torsion-free.
     * Use `.assertValidity()` on adversarial inputs.
     */
    static fromAffine(p) {
      if (p instanceof Point)
        throw new Error("extended point not allowed");
      const { x, y } = p || {};
      acoord("x", x);
      acoord("y", y);
      return new Point(x, y, Fp.ONE, Fp.mul(x, y));
    }
    // Uses algo from RFC8032 5.1.3.
    static fromBytes(bytes, zip215 = false) {
      const len = Fp.BYTES;
      const { a, d } = CURVE;
      bytes = copyBytes4(abytes5(bytes, len, "point"));
      abool3(zip215, "zip215");
      const normed = copyBytes4(bytes);
      const lastByte = bytes[len - 1];
      normed[len - 1] = lastByte & ~128;
      const y = bytesToNumberLE2(normed);
      const max = zip215 ? MASK : Fp.ORDER;
      aInRange2("point.y", y, _0n10, max);
      const y2 = Fp.sqr(y);
      const u = Fp.sub(y2, Fp.ONE);
      const v = Fp.sub(Fp.mulN(d, y2), a);
      let { isValid, value: x } = uvRatio2(u, v);
      if (!isValid)
        throw new Error("bad point: invalid y coordinate");
      const isXOdd = isOdd(x);
      const isLastByteOdd = (lastByte & 128) !== 0;
      if (!zip215 && Fp.is0(x) && isLastByteOdd)
        throw new Error("bad point: x=0 and x_0=1");
      if (isLastByteOdd !== isXOdd)
        x = Fp.neg(x);
      return Point.fromAffine({ x, y });
    }
    static fromHex(hex, zip215 = false) {
      return Point.fromBytes(hexToBytes3(hex), zip215);
    }
    get x() {
      return this.toAffine().x;
    }
    get y() {
      return this.toAffine().y;
    }
    precompute(windowSize = 6, isLazy = true) {
      wnaf.setWindowSize(this, windowSize);
      if (!isLazy)
        this.multiply(_2n7);
      return this;
    }
    // Useful in fromAffine() - not for fromBytes(), which always created valid points.
    assertValidity() {
      const p = this;
      const { a, d } = CURVE;
      if (p.is0())
        throw new Error("bad point: ZERO");
      const { X, Y, Z, T } = p;
      const X2 = Fp.sqr(X);
      const Y2 = Fp.sqr(Y);
      const Z2 = Fp.sqr(Z);
      const Z4 = Fp.sqr(Z2);
      const aX2 = Fp.mul(X2, a);
      const left = Fp.mul(Fp.add(aX2, Y2), Z2);
      const right = Fp.add(Z4, Fp.mul(d, Fp.mul(X2, Y2)));
      if (!Fp.eql(left, right))
        throw new Error("bad point: equation left != right (1)");
      const XY = Fp.mul(X, Y);
      const ZT = Fp.mul(Z, T);
      if (!Fp.eql(XY, ZT))
        throw new Error("bad point: equation left != right (2)");
    }
    // Compare one point to another.
    equals(other) {
      aedpoint(other);
      const { X: X1, Y: Y1, Z: Z1 } = this;
      const { X: X2, Y: Y2, Z: Z2 } = other;
      const X1Z2 = Fp.mul(X1, Z2);
      const X2Z1 = Fp.mul(X2, Z1);
      const Y1Z2 = Fp.mul(Y1, Z2);
      const Y2Z1 = Fp.mul(Y2, Z1);
      return Fp.eql(X1Z2, X2Z1) && Fp.eql(Y1Z2, Y2Z1);
    }
    is0() {
      return this.equals(Point.ZERO);
    }
    negate() {
      return new Point(Fp.neg(this.X), this.Y, this.Z, Fp.neg(this.T));
    }
    // Fast algo for doubling Extended Point.
    // https://hyperelliptic.org/EFD/g1p/auto-twisted-extended.html#doubling-dbl-2008-hwcd
    // Cost: 4M + 4S + 1*a + 6add + 1*2.
    double() {
      const { X: X1, Y: Y1, Z: Z1 } = this;
      const A = Fp.sqr(X1);
      const B = Fp.sqr(Y1);
      const C = Fp.mul(Fp.sqr(Z1), _2n7);
      const D = mulA(A);
      const x1y1 = Fp.addN(X1, Y1);
      const E = Fp.sub(Fp.subN(Fp.sqr(x1y1), A), B);
      const G = Fp.addN(D, B);
      const F2 = Fp.subN(G, C);
      const H = Fp.subN(D, B);
      const X3 = Fp.mul(E, F2);
      const Y3 = Fp.mul(G, H);
      const T3 = Fp.mul(E, H);
      const Z3 = Fp.mul(F2, G);
      return new Point(X3, Y3, Z3, T3);
    }
    // Fast algo for adding 2 Extended Points.
    // https://hyperelliptic.org/EFD/g1p/auto-twisted-extended.html#addition-add-2008-hwcd
    // Cost: 9M + 1*a + 1*d + 7add.
    add(other) {
      aedpoint(other);
      const { d } = CURVE;
      const { X: X1, Y: Y1, Z: Z1, T: T1 } = this;
      const { X: X2, Y: Y2, Z: Z2, T: T2 } = other;
      const A = Fp.mul(X1, X2);
      const B = Fp.mul(Y1, Y2);
      const C = Fp.mul(Fp.mulN(T1, d), T2);
      const D = Fp.mul(Z1, Z2);
      const E = Fp.sub(Fp.subN(Fp.mulN(Fp.addN(X1, Y1), Fp.addN(X2, Y2)), A), B);
      const F2 = Fp.subN(D, C);
      const G = Fp.addN(D, C);
      const H = Fp.sub(B, mulA(A));
      const X3 = Fp.mul(E, F2);
      const Y3 = Fp.mul(G, H);
      const T3 = Fp.mul(E, H);
      const Z3 = Fp.mul(F2, G);
      return new Point(X3, Y3, Z3, T3);
    }
    subtract(other) {
      aedpoint(other);
      return this.add(other.negate());
    }
    // Constant-time multiplication.
    multiply(scalar) {
      if (!Fn.isValidNot0(scalar))
        throw new RangeError("invalid scalar: expected 1 <= sc < curve.n");
      const { p, f } = wnaf.mulSecret(this, scalar, cofactor, normalize);
      return normalize([p, f])[0];
    }
    // Non-constant-time multiplication. Uses double-and-add algorithm.
    // It's faster, but should only be used when you don't care about
    // an exposed private key e.g. sig verification.
    // Keeps the same subgroup-scalar contract: 0 is allowed for public-scalar callers, but
    // n and larger values are rejected instead of being reduced mod n to the identity point.
    multiplyUnsafe(scalar) {
      if (!Fn.isValid(scalar))
        throw new RangeError("invalid scalar: expected 0 <= sc < curve.n");
      if (scalar === _0n10)
        return Point.ZERO;
      if (this.is0() || scalar === _1n11)
        return this;
      return wnaf.mulUnsafe(this, scalar, normalize);
    }
    // Checks if point is of small order.
    // If you add something to small order point, you will have "dirty"
    // point with torsion component.
    // Clears cofactor and checks if the result is 0.
    isSmallOrder() {
      return this.clearCofactor().is0();
    }
    // Multiplies point by curve order and checks if the result is 0.
    // Returns `false` is the point is dirty.
    isTorsionFree() {
      return wnaf.mulUnsafe(this, CURVE.n).is0();
    }
    // Converts Extended point to default (x, y) coordinates.
    // Can accept precomputed Z^-1 - for example, from invertBatch.
    toAffine(invertedZ) {
      const p = this;
      let iz = invertedZ;
      if (iz != null && typeof iz !== "bigint")
        throw new TypeError('"invertedZ" expected bigint, got type=' + typeof iz);
      const { X, Y, Z } = p;
      const is0 = p.is0();
      if (iz == null)
        iz = is0 ? Fp.create(_8n4) : Fp.inv(Z);
      const x = Fp.mul(X, iz);
      const y = Fp.mul(Y, iz);
      const zz = Fp.mul(Z, iz);
      if (is0)
        return { x: Fp.ZERO, y: Fp.ONE };
      if (!Fp.eql(zz, Fp.ONE))
        throw new Error("invZ was invalid");
      return { x, y };
    }
    clearCofactor() {
      if (cofactor === _1n11)
        return this;
      if (cofactor === _2n7)
        return this.double();
      if (cofactor === _4n5)
        return this.double().double();
      if (cofactor === _8n4)
        return this.double().double().double();
      return this.multiplyUnsafe(cofactor);
    }
    toBytes() {
      const { x, y } = this.toAffine();
      const bytes = Fp.toBytes(y);
      bytes[bytes.length - 1] |= isOdd(x) ? 128 : 0;
      return bytes;
    }
    toHex() {
      return bytesToHex3(this.toBytes());
    }
    toString() {
      return `<Point ${this.is0() ? "ZERO" : this.toHex()}>`;
    }
  }
  const normalize = (points) => normalizeZ2(Point, points);
  const wnaf = new ScalarMultiplier(Point, randomBytes6);
  if (wnaf.bits >= 6)
    Point.BASE.precompute(6);
  Object.freeze(Point.prototype);
  Object.freeze(Point);
  return Point;
}

// node_modules/@noble/curves/abstract/montgomery.js
/*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
var _0n11 = /* @__PURE__ */ BigInt(0);
var _1n12 = /* @__PURE__ */ BigInt(1);
var _2n8 = /* @__PURE__ */ BigInt(2);
function cmask(P, swap) {
  return P + swap - (swap >> _1n12 << _1n12);
}
function cswap(P) {
  const offset = BigInt(6) * P;
  return (mask, x_2, x_3) => {
    const sum = x_2 + x_3;
    const d = offset + x_3 - x_2;
    const a = (d * mask + x_2) % P;
    return { x_2: a, x_3: sum - a };
  };
}
function validateOpts2(curve) {
  validateObject2(curve, {
    P: "bigint",
    type: "string",
    adjustScalarBytes: "function",
    powPminus2: "function"
  }, {
    randomBytes: "function",
    scalarMultBase: "function"
  });
  return Object.freeze({ ...curve });
}
function montgomery2(curveDef) {
  const CURVE = validateOpts2(curveDef);
  const { P, type, adjustScalarBytes: adjustScalarBytes3, powPminus2, randomBytes: rand } = CURVE;
  const mulBaseHook = CURVE.scalarMultBase;
  const is25519 = type === "x25519";
  if (!is25519 && type !== "x448")
    throw new Error("invalid type");
  const randomBytes_ = rand === void 0 ? randomBytes5 : rand;
  const montgomeryBits = is25519 ? 255 : 448;
  const swap = cswap(P);
  const fieldLen = is25519 ? 32 : 56;
  const Gu = is25519 ? BigInt(9) : BigInt(5);
  const a24 = is25519 ? BigInt(121665) : BigInt(39081);
  const minScalar = is25519 ? _2n8 ** BigInt(254) : _2n8 ** BigInt(447);
  const maxAdded = is25519 ? BigInt(8) * (_2n8 ** BigInt(251) - _1n12) : BigInt(4) * (_2n8 ** BigInt(445) - _1n12);
  const maxScalar = minScalar + maxAdded + _1n12;
  const modP = (n) => mod3(n, P);
  const GuBytes = encodeU(Gu);
  function encodeU(u) {
    return numberToBytesLE2(modP(u), fieldLen);
  }
  function decodeU(u) {
    const _u = copyBytes4(abytes5(u, fieldLen, "uCoordinate"));
    if (is25519)
      _u[31] &= 127;
    return modP(bytesToNumberLE2(_u));
  }
  function decodeScalar(scalar) {
    return bytesToNumberLE2(adjustScalarBytes3(copyBytes4(abytes5(scalar, fieldLen, "scalar"))));
  }
  const lowOrderU = new Set(is25519 ? [
    _0n11,
    _1n12,
    P - _1n12,
    BigInt("325606250916557431795983626356110631294008115727848805560023387167927233504"),
    BigInt("39382357235489614581723060781553021112529911719440698176882885853963445705823")
  ] : [_0n11, _1n12, P - _1n12]);
  function scalarMult2(scalar, u) {
    const pointU = decodeU(u);
    if (lowOrderU.has(pointU))
      throw new Error("invalid private or public key received");
    const pu = montgomeryLadder(pointU, decodeScalar(scalar));
    if (pu === _0n11)
      throw new Error("invalid private or public key received");
    return encodeU(pu);
  }
  function scalarMultBase2(scalar) {
    if (mulBaseHook === void 0)
      return scalarMult2(scalar, GuBytes);
    const k = decodeScalar(scalar);
    aInRange2("scalar", k, minScalar, maxScalar);
    const pu = modP(mulBaseHook(k));
    if (pu === _0n11)
      throw new Error("invalid private or public key received");
    return encodeU(pu);
  }
  const getPublicKey = scalarMultBase2;
  const getSharedSecret = scalarMult2;
  function montgomeryLadder(u, scalar) {
    aInRange2("u", u, _0n11, P);
    aInRange2("scalar", scalar, minScalar, maxScalar);
    const k = scalar;
    const x_1 = u;
    let x_2 = _1n12;
    let z_2 = _0n11;
    let x_3 = u;
    let z_3 = _1n12;
    const kx = k ^ k >> _1n12;
    for (let t = BigInt(montgomeryBits - 1); t >= _0n11; t--) {
      const mask2 = cmask(P, kx >> t);
      ({ x_2, x_3 } = swap(mask2, x_2, x_3));
      ({ x_2: z_2, x_3: z_3 } = swap(mask2, z_2, z_3));
      const A = x_2 + z_2;
      const AA = modP(A * A);
      const B = x_2 - z_2;
      const BB = modP(B * B);
      const E = AA - BB;
      const C = x_3 + z_3;
      const D = x_3 - z_3;
      const DA = modP(D * A);
      const CB = modP(C * B);
      const dacb = DA + CB;
      const da_cb = DA - CB;
      x_3 = modP(dacb * dacb);
      z_3 = modP(x_1 * modP(da_cb * da_cb));
      x_2 = modP(AA * BB);
      z_2 = modP(E * (AA + modP(a24 * E)));
    }
    const mask = cmask(P, k);
    ({ x_2, x_3 } = swap(mask, x_2, x_3));
    ({ x_2: z_2, x_3: z_3 } = swap(mask, z_2, z_3));
    const z2 = powPminus2(z_2);
    return modP(x_2 * z2);
  }
  const lengths = {
    secretKey: fieldLen,
    publicKey: fieldLen,
    seed: fieldLen
  };
  const randomSecretKey = (seed) => {
    seed = seed === void 0 ? randomBytes_(fieldLen) : seed;
    abytes5(seed, lengths.seed, "seed");
    return seed;
  };
  const utils = { randomSecretKey };
  Object.freeze(lengths);
  Object.freeze(utils);
  return Object.freeze({
    keygen: createKeygen2(randomSecretKey, getPublicKey),
    getSharedSecret,
    getPublicKey,
    scalarMult: scalarMult2,
    scalarMultBase: scalarMultBase2,
    utils,
    GuBytes: GuBytes.slice(),
    lengths
  });
}

// node_modules/@noble/curves/ed25519.js
/*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
var _0n12 = /* @__PURE__ */ BigInt(0);
var _1n13 = /* @__PURE__ */ BigInt(1);
var _2n9 = /* @__PURE__ */ BigInt(2);
var _3n5 = /* @__PURE__ */ BigInt(3);
var _5n4 = /* @__PURE__ */ BigInt(5);
var _8n5 = /* @__PURE__ */ BigInt(8);
var ed25519_CURVE_p2 = /* @__PURE__ */ BigInt("0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed");
var ed25519_CURVE = /* @__PURE__ */ (() => ({
  p: ed25519_CURVE_p2,
  n: BigInt("0x1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed"),
  h: _8n5,
  a: BigInt("0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffec"),
  d: BigInt("0x52036cee2b6ffe738cc740797779e89800700a4d4141d8ab75eb4dca135978a3"),
  Gx: BigInt("0x216936d3cd6e53fec0a4e231fdd6dc5c692cc7609525a7b2c9562d608f25d51a"),
  Gy: BigInt("0x6666666666666666666666666666666666666666666666666666666666666658")
}))();
function ed25519_pow_2_252_32(x) {
  const _10n = BigInt(10), _20n = BigInt(20), _40n = BigInt(40), _80n = BigInt(80);
  const P = ed25519_CURVE_p2;
  const x2 = x * x % P;
  const b2 = x2 * x % P;
  const b4 = pow22(b2, _2n9, P) * b2 % P;
  const b5 = pow22(b4, _1n13, P) * x % P;
  const b10 = pow22(b5, _5n4, P) * b5 % P;
  const b20 = pow22(b10, _10n, P) * b10 % P;
  const b40 = pow22(b20, _20n, P) * b20 % P;
  const b80 = pow22(b40, _40n, P) * b40 % P;
  const b160 = pow22(b80, _80n, P) * b80 % P;
  const b240 = pow22(b160, _80n, P) * b80 % P;
  const b250 = pow22(b240, _10n, P) * b10 % P;
  const pow_p_5_8 = pow22(b250, _2n9, P) * x % P;
  return { pow_p_5_8, b2 };
}
function adjustScalarBytes2(bytes) {
  bytes[0] &= 248;
  bytes[31] &= 127;
  bytes[31] |= 64;
  return bytes;
}
var ED25519_SQRT_M1 = /* @__PURE__ */ BigInt("19681161376707505956807079304988542015446066515923890162744021073123829784752");
function uvRatio(u, v) {
  const P = ed25519_CURVE_p2;
  const v3 = mod3(v * v * v, P);
  const v7 = mod3(v3 * v3 * v, P);
  const pow3 = ed25519_pow_2_252_32(u * v7).pow_p_5_8;
  let x = mod3(u * v3 * pow3, P);
  const vx2 = mod3(v * x * x, P);
  const root1 = x;
  const root2 = mod3(x * ED25519_SQRT_M1, P);
  const useRoot1 = vx2 === u;
  const useRoot2 = vx2 === mod3(-u, P);
  const noRoot = vx2 === mod3(-u * ED25519_SQRT_M1, P);
  if (useRoot1)
    x = root1;
  if (useRoot2 || noRoot)
    x = root2;
  if (isNegativeLE2(x, P))
    x = mod3(-x, P);
  return { isValid: useRoot1 || useRoot2, value: x };
}
var ed25519_Point = /* @__PURE__ */ edwards(ed25519_CURVE, { uvRatio });
var x255192 = /* @__PURE__ */ (() => {
  const P = ed25519_CURVE_p2;
  const powPminus2 = (x) => {
    const { pow_p_5_8, b2 } = ed25519_pow_2_252_32(x);
    return mod3(pow22(pow_p_5_8, _3n5, P) * b2, P);
  };
  return montgomery2({
    P,
    type: "x25519",
    powPminus2,
    adjustScalarBytes: adjustScalarBytes2,
    // ~3x faster fixed-base: [k]B on the birationally-equivalent Edwards curve using cached
    // base tables, mapped back via u = (1+y)/(1-y) = (Z+Y)/(Z-Y) with one Fermat inversion.
    // Same construction as libsodium's crypto_scalarmult_curve25519_base.
    scalarMultBase: (k) => {
      const kn = mod3(k, ed25519_Point.Fn.ORDER);
      if (kn === _0n12)
        return _0n12;
      const p = ed25519_Point.BASE.multiply(kn);
      return mod3((p.Z + p.Y) * powPminus2(mod3(p.Z - p.Y, P)), P);
    }
  });
})();

// node_modules/age-encryption/dist/x25519.js
var exportable = false;
var webCryptoOff = false;
async function webCryptoFallback(func, fallback) {
  if (webCryptoOff) {
    return await fallback();
  }
  try {
    return await func();
  } catch (error) {
    if (error instanceof ReferenceError || error instanceof DOMException && error.name === "NotSupportedError") {
      return await fallback();
    } else {
      throw error;
    }
  }
}
async function scalarMult(scalar, u) {
  return await webCryptoFallback(async () => {
    const key = isCryptoKey(scalar) ? scalar : await importX25519Key(scalar);
    const peer = await crypto.subtle.importKey("raw", domBuffer(u), { name: "X25519" }, exportable, []);
    return new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: peer }, key, 256));
  }, () => {
    if (isCryptoKey(scalar)) {
      throw new Error("CryptoKey provided but X25519 WebCrypto is not supported");
    }
    return x255192.scalarMult(scalar, u);
  });
}
async function scalarMultBase(scalar) {
  return await webCryptoFallback(async () => {
    return scalarMult(scalar, x255192.GuBytes);
  }, () => {
    if (isCryptoKey(scalar)) {
      throw new Error("CryptoKey provided but X25519 WebCrypto is not supported");
    }
    return x255192.scalarMultBase(scalar);
  });
}
var pkcs8Prefix = /* @__PURE__ */ new Uint8Array([
  48,
  46,
  2,
  1,
  0,
  48,
  5,
  6,
  3,
  43,
  101,
  110,
  4,
  34,
  4,
  32
]);
async function importX25519Key(key) {
  if (key.length !== 32) {
    throw new Error("X25519 private key must be 32 bytes");
  }
  const pkcs8 = new Uint8Array([...pkcs8Prefix, ...key]);
  return crypto.subtle.importKey("pkcs8", pkcs8, { name: "X25519" }, exportable, ["deriveBits"]);
}
function isCryptoKey(key) {
  return typeof CryptoKey !== "undefined" && key instanceof CryptoKey;
}
function domBuffer(arr) {
  return arr;
}

// node_modules/age-encryption/dist/io.js
var LineReader = class {
  s;
  transcript = [];
  buf = new Uint8Array(0);
  constructor(stream2) {
    this.s = stream2.getReader();
  }
  async readLine() {
    const line = [];
    while (true) {
      const i = this.buf.indexOf("\n".charCodeAt(0));
      if (i >= 0) {
        line.push(this.buf.subarray(0, i));
        this.transcript.push(this.buf.subarray(0, i + 1));
        this.buf = this.buf.subarray(i + 1);
        return asciiString(flatten(line));
      }
      if (this.buf.length > 0) {
        line.push(this.buf);
        this.transcript.push(this.buf);
      }
      const next = await this.s.read();
      if (next.done) {
        this.buf = flatten(line);
        return null;
      }
      this.buf = next.value;
    }
  }
  close() {
    this.s.releaseLock();
    return { rest: this.buf, transcript: flatten(this.transcript) };
  }
};
function asciiString(bytes) {
  bytes.forEach((b) => {
    if (b < 32 || b > 126) {
      throw Error("invalid non-ASCII byte in header");
    }
  });
  return new TextDecoder().decode(bytes);
}
function flatten(arr) {
  const len = arr.reduce(((sum, line) => sum + line.length), 0);
  const out = new Uint8Array(len);
  let n = 0;
  for (const a of arr) {
    out.set(a, n);
    n += a.length;
  }
  return out;
}
function prepend(s, ...prefixes) {
  return s.pipeThrough(new TransformStream({
    start(controller) {
      for (const p of prefixes) {
        controller.enqueue(p);
      }
    }
  }));
}
function stream(a) {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(a);
      controller.close();
    }
  });
}
async function readAll(stream2) {
  if (!(stream2 instanceof ReadableStream)) {
    throw new Error("readAll expects a ReadableStream<Uint8Array>");
  }
  return new Uint8Array(await new Response(stream2).arrayBuffer());
}
async function readAllString(stream2) {
  if (!(stream2 instanceof ReadableStream)) {
    throw new Error("readAllString expects a ReadableStream<Uint8Array>");
  }
  return await new Response(stream2).text();
}
async function read(stream2, n) {
  const reader = stream2.getReader();
  const chunks = [];
  let readBytes = 0;
  while (readBytes < n) {
    const { done, value } = await reader.read();
    if (done) {
      throw Error("stream ended before reading " + n.toString() + " bytes");
    }
    chunks.push(value);
    readBytes += value.length;
  }
  reader.releaseLock();
  const buf = flatten(chunks);
  const data = buf.subarray(0, n);
  const rest = prepend(stream2, buf.subarray(n));
  return { data, rest };
}

// node_modules/age-encryption/dist/format.js
var Stanza = class {
  /**
   * All space-separated arguments on the first line of the stanza.
   * Each argument is a string that does not contain spaces.
   * The first argument is often a recipient type, which should look like
   * `example.com/...` to avoid collisions.
   */
  args;
  /**
   * The raw body of the stanza. This is automatically base64-encoded and
   * split into lines of 48 characters each.
   */
  body;
  constructor(args, body) {
    this.args = args;
    this.body = body;
  }
};
async function parseNextStanza(hdr) {
  const argsLine = await hdr.readLine();
  if (argsLine === null) {
    throw Error("invalid stanza");
  }
  const args = argsLine.split(" ");
  if (args.length < 2 || args.shift() !== "->") {
    return { next: argsLine };
  }
  for (const arg of args) {
    if (arg.length === 0) {
      throw Error("invalid stanza");
    }
  }
  const bodyLines = [];
  for (; ; ) {
    const nextLine = await hdr.readLine();
    if (nextLine === null) {
      throw Error("invalid stanza");
    }
    const line = base64nopad.decode(nextLine);
    if (line.length > 48) {
      throw Error("invalid stanza");
    }
    bodyLines.push(line);
    if (line.length < 48) {
      break;
    }
  }
  const body = flatten(bodyLines);
  return { s: new Stanza(args, body) };
}
async function parseHeader(header) {
  const hdr = new LineReader(header);
  const versionLine = await hdr.readLine();
  if (versionLine !== "age-encryption.org/v1") {
    throw Error("invalid version " + (versionLine ?? "line"));
  }
  const stanzas = [];
  for (; ; ) {
    const { s, next: macLine } = await parseNextStanza(hdr);
    if (s !== void 0) {
      stanzas.push(s);
      continue;
    }
    if (!macLine.startsWith("--- ")) {
      throw Error("invalid header");
    }
    const MAC = base64nopad.decode(macLine.slice(4));
    const { rest, transcript } = hdr.close();
    const headerNoMAC = transcript.slice(0, transcript.length - 1 - macLine.length + 3);
    return { stanzas, headerNoMAC, MAC, headerSize: transcript.length, rest: prepend(header, rest) };
  }
}

// node_modules/age-encryption/dist/recipients.js
async function identityToRecipient(identity) {
  let scalar;
  if (isCryptoKey2(identity)) {
    scalar = identity;
  } else if (identity.startsWith("AGE-SECRET-KEY-PQ-1")) {
    const res = bech32.decodeToBytes(identity);
    if (res.prefix.toUpperCase() !== "AGE-SECRET-KEY-PQ-" || res.bytes.length !== 32) {
      throw Error("invalid identity");
    }
    const recipient2 = MLKEM768X25519.getPublicKey(res.bytes);
    return bech32.encode("age1pq", bech32.toWords(recipient2), false);
  } else {
    const res = bech32.decodeToBytes(identity);
    if (!identity.startsWith("AGE-SECRET-KEY-1") || res.prefix.toUpperCase() !== "AGE-SECRET-KEY-" || res.bytes.length !== 32) {
      throw Error("invalid identity");
    }
    scalar = res.bytes;
  }
  const recipient = await scalarMultBase(scalar);
  return bech32.encodeFromBytes("age", recipient);
}
var HybridIdentity = class {
  identity;
  constructor(s) {
    const res = bech32.decodeToBytes(s);
    if (!s.startsWith("AGE-SECRET-KEY-PQ-1") || res.prefix.toUpperCase() !== "AGE-SECRET-KEY-PQ-" || res.bytes.length !== 32) {
      throw Error("invalid identity");
    }
    this.identity = res.bytes;
  }
  unwrapFileKey(stanzas) {
    for (const s of stanzas) {
      if (s.args.length < 1 || s.args[0] !== "mlkem768x25519") {
        continue;
      }
      if (s.args.length !== 2) {
        throw Error("invalid mlkem768x25519 stanza");
      }
      const share = base64nopad.decode(s.args[1]);
      if (share.length !== 1120) {
        throw Error("invalid mlkem768x25519 stanza");
      }
      if (s.body.length !== 32) {
        throw Error("invalid mlkem768x25519 stanza");
      }
      const sharedSecret = MLKEM768X25519.decapsulate(share, this.identity);
      const label = new TextEncoder().encode("age-encryption.org/mlkem768x25519");
      const { key, nonce } = hpkeContext(hpkeMLKEM768X25519, sharedSecret, label);
      try {
        return chacha20poly1305(key, nonce).decrypt(s.body);
      } catch {
        continue;
      }
    }
    return null;
  }
};
var hpkeMLKEM768X25519 = 25722;
function hpkeContext(kemID, sharedSecret, info) {
  const suiteID = hpkeSuiteID(kemID);
  const pskIDHash = hpkeLabeledExtract(suiteID, void 0, "psk_id_hash", new Uint8Array(0));
  const infoHash = hpkeLabeledExtract(suiteID, void 0, "info_hash", info);
  const ksContext = new Uint8Array(1 + pskIDHash.length + infoHash.length);
  ksContext[0] = 0;
  ksContext.set(pskIDHash, 1);
  ksContext.set(infoHash, 1 + pskIDHash.length);
  const secret = hpkeLabeledExtract(suiteID, sharedSecret, "secret", new Uint8Array(0));
  const key = hpkeLabeledExpand(suiteID, secret, "key", ksContext, 32);
  const nonce = hpkeLabeledExpand(suiteID, secret, "base_nonce", ksContext, 12);
  return { key, nonce };
}
function hpkeSuiteID(kemID) {
  const suiteID = new Uint8Array(10);
  suiteID.set(new TextEncoder().encode("HPKE"), 0);
  suiteID[4] = kemID >> 8 & 255;
  suiteID[5] = kemID & 255;
  suiteID[6] = 0;
  suiteID[7] = 1;
  suiteID[8] = 0;
  suiteID[9] = 3;
  return suiteID;
}
function hpkeLabeledExtract(suiteID, salt, label, ikm) {
  const labeledIKM = new Uint8Array(7 + suiteID.length + label.length + ikm.length);
  let offset = 0;
  labeledIKM.set(new TextEncoder().encode("HPKE-v1"), offset);
  offset += "HPKE-v1".length;
  labeledIKM.set(suiteID, offset);
  offset += suiteID.length;
  labeledIKM.set(new TextEncoder().encode(label), offset);
  offset += label.length;
  labeledIKM.set(ikm, offset);
  return extract(sha256, labeledIKM, salt);
}
function hpkeLabeledExpand(suiteID, prk, label, info, length) {
  const labeledInfo = new Uint8Array(2 + 7 + suiteID.length + label.length + info.length);
  let offset = 0;
  labeledInfo[offset] = length >> 8 & 255;
  labeledInfo[offset + 1] = length & 255;
  offset += 2;
  labeledInfo.set(new TextEncoder().encode("HPKE-v1"), offset);
  offset += "HPKE-v1".length;
  labeledInfo.set(suiteID, offset);
  offset += suiteID.length;
  labeledInfo.set(new TextEncoder().encode(label), offset);
  offset += label.length;
  labeledInfo.set(info, offset);
  return expand(sha256, prk, labeledInfo, length);
}
var X25519Identity = class {
  identity;
  recipient;
  constructor(s) {
    if (isCryptoKey2(s)) {
      this.identity = s;
      this.recipient = scalarMultBase(s);
      return;
    }
    const res = bech32.decodeToBytes(s);
    if (!s.startsWith("AGE-SECRET-KEY-1") || res.prefix.toUpperCase() !== "AGE-SECRET-KEY-" || res.bytes.length !== 32) {
      throw Error("invalid identity");
    }
    this.identity = res.bytes;
    this.recipient = scalarMultBase(res.bytes);
  }
  async unwrapFileKey(stanzas) {
    for (const s of stanzas) {
      if (s.args.length < 1 || s.args[0] !== "X25519") {
        continue;
      }
      if (s.args.length !== 2) {
        throw Error("invalid X25519 stanza");
      }
      const share = base64nopad.decode(s.args[1]);
      if (share.length !== 32) {
        throw Error("invalid X25519 stanza");
      }
      const secret = await scalarMult(this.identity, share);
      const recipient = await this.recipient;
      const salt = new Uint8Array(share.length + recipient.length);
      salt.set(share);
      salt.set(recipient, share.length);
      const label = new TextEncoder().encode("age-encryption.org/v1/X25519");
      const key = hkdf(sha256, secret, salt, label, 32);
      const fileKey = decryptFileKey(s.body, key);
      if (fileKey !== null)
        return fileKey;
    }
    return null;
  }
};
var ScryptIdentity = class {
  passphrase;
  constructor(passphrase) {
    this.passphrase = passphrase;
  }
  unwrapFileKey(stanzas) {
    for (const s of stanzas) {
      if (s.args.length < 1 || s.args[0] !== "scrypt") {
        continue;
      }
      if (stanzas.length !== 1) {
        throw Error("scrypt recipient is not the only one in the header");
      }
      if (s.args.length !== 3) {
        throw Error("invalid scrypt stanza");
      }
      if (!/^[1-9][0-9]*$/.test(s.args[2])) {
        throw Error("invalid scrypt stanza");
      }
      const salt = base64nopad.decode(s.args[1]);
      if (salt.length !== 16) {
        throw Error("invalid scrypt stanza");
      }
      const logN = Number(s.args[2]);
      if (logN > 20) {
        throw Error("scrypt work factor is too high");
      }
      const label = "age-encryption.org/v1/scrypt";
      const labelAndSalt = new Uint8Array(label.length + 16);
      labelAndSalt.set(new TextEncoder().encode(label));
      labelAndSalt.set(salt, label.length);
      const key = scrypt(this.passphrase, labelAndSalt, { N: 2 ** logN, r: 8, p: 1, dkLen: 32 });
      const fileKey = decryptFileKey(s.body, key);
      if (fileKey !== null)
        return fileKey;
    }
    return null;
  }
};
function decryptFileKey(body, key) {
  if (body.length !== 32) {
    throw Error("invalid stanza");
  }
  const nonce = new Uint8Array(12);
  try {
    return chacha20poly1305(key, nonce).decrypt(body);
  } catch {
    return null;
  }
}
function isCryptoKey2(key) {
  return typeof CryptoKey !== "undefined" && key instanceof CryptoKey;
}

// node_modules/age-encryption/dist/stream.js
var chacha20poly1305Overhead = 16;
var chunkSize = /* @__PURE__ */ (() => 64 * 1024)();
var chunkSizeWithOverhead = /* @__PURE__ */ (() => chunkSize + chacha20poly1305Overhead)();
function decryptSTREAM(key) {
  const streamNonce = new Uint8Array(12);
  const incNonce = () => {
    for (let i = streamNonce.length - 2; i >= 0; i--) {
      streamNonce[i]++;
      if (streamNonce[i] !== 0)
        break;
    }
  };
  let firstChunk = true;
  const ciphertextBuffer = new Uint8Array(chunkSizeWithOverhead);
  let ciphertextBufferUsed = 0;
  return new TransformStream({
    transform(chunk, controller) {
      while (chunk.length > 0) {
        if (ciphertextBufferUsed === ciphertextBuffer.length) {
          const decryptedChunk = chacha20poly1305(key, streamNonce).decrypt(ciphertextBuffer);
          controller.enqueue(decryptedChunk);
          incNonce();
          ciphertextBufferUsed = 0;
          firstChunk = false;
        }
        const n = Math.min(ciphertextBuffer.length - ciphertextBufferUsed, chunk.length);
        ciphertextBuffer.set(chunk.subarray(0, n), ciphertextBufferUsed);
        ciphertextBufferUsed += n;
        chunk = chunk.subarray(n);
      }
    },
    flush(controller) {
      streamNonce[11] = 1;
      const decryptedChunk = chacha20poly1305(key, streamNonce).decrypt(ciphertextBuffer.subarray(0, ciphertextBufferUsed));
      if (!firstChunk && decryptedChunk.length === 0) {
        throw new Error("final chunk is empty");
      }
      controller.enqueue(decryptedChunk);
    }
  });
}
function plaintextSize(ciphertextSize3) {
  if (ciphertextSize3 < chacha20poly1305Overhead) {
    throw Error("ciphertext is too small");
  }
  if (ciphertextSize3 === chacha20poly1305Overhead) {
    return 0;
  }
  const fullChunks = Math.floor(ciphertextSize3 / chunkSizeWithOverhead);
  const lastChunk = ciphertextSize3 % chunkSizeWithOverhead;
  if (0 < lastChunk && lastChunk <= chacha20poly1305Overhead) {
    throw Error("ciphertext size is invalid");
  }
  let size = ciphertextSize3;
  size -= fullChunks * chacha20poly1305Overhead;
  size -= lastChunk > 0 ? chacha20poly1305Overhead : 0;
  return size;
}

// node_modules/age-encryption/dist/armor.js
var armor_exports = {};
__export(armor_exports, {
  decode: () => decode,
  encode: () => encode
});
function encode(file) {
  const lines = [];
  lines.push("-----BEGIN AGE ENCRYPTED FILE-----\n");
  for (let i = 0; i < file.length; i += 48) {
    let end = i + 48;
    if (end > file.length)
      end = file.length;
    lines.push(base64.encode(file.subarray(i, end)) + "\n");
  }
  lines.push("-----END AGE ENCRYPTED FILE-----\n");
  return lines.join("");
}
function decode(file) {
  const lines = file.trim().replaceAll("\r\n", "\n").split("\n");
  if (lines.shift() !== "-----BEGIN AGE ENCRYPTED FILE-----") {
    throw Error("invalid header");
  }
  if (lines.pop() !== "-----END AGE ENCRYPTED FILE-----") {
    throw Error("invalid footer");
  }
  function isLineLengthValid(i, l) {
    if (i === lines.length - 1) {
      return l.length > 0 && l.length <= 64 && l.length % 4 === 0;
    }
    return l.length === 64;
  }
  if (!lines.every((l, i) => isLineLengthValid(i, l))) {
    throw Error("invalid line length");
  }
  if (!lines.every((l) => /^[A-Za-z0-9+/=]+$/.test(l))) {
    throw Error("invalid base64");
  }
  return base64.decode(lines.join(""));
}

// node_modules/age-encryption/dist/index.js
var Decrypter = class {
  identities = [];
  /**
   * Add a passphrase to decrypt password-encrypted file(s) with. This method
   * can be called multiple times to try multiple passphrases.
   *
   * @param s - The passphrase to decrypt the file with.
   */
  addPassphrase(s) {
    this.identities.push(new ScryptIdentity(s));
  }
  /**
   * Add an identity to decrypt file(s) with. This method can be called
   * multiple times to try multiple identities.
   *
   * @param s - The identity to decrypt the file with. Either a string
   * beginning with `AGE-SECRET-KEY-PQ-1...` or `AGE-SECRET-KEY-1...`, an
   * X25519 private
   * {@link https://developer.mozilla.org/en-US/docs/Web/API/CryptoKey | CryptoKey}
   * object, or an object implementing the {@link Identity} interface.
   *
   * A CryptoKey object must have
   * {@link https://developer.mozilla.org/en-US/docs/Web/API/CryptoKey/type | type}
   * `private`,
   * {@link https://developer.mozilla.org/en-US/docs/Web/API/CryptoKey/algorithm | algorithm}
   * `{name: 'X25519'}`, and
   * {@link https://developer.mozilla.org/en-US/docs/Web/API/CryptoKey/usages | usages}
   * `["deriveBits"]`. For example:
   * ```js
   * const keyPair = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"])
   * decrypter.addIdentity(key.privateKey)
   * ```
   */
  addIdentity(s) {
    if (isCryptoKey3(s)) {
      this.identities.push(new X25519Identity(s));
    } else if (typeof s === "string") {
      if (s.startsWith("AGE-SECRET-KEY-1")) {
        this.identities.push(new X25519Identity(s));
      } else if (s.startsWith("AGE-SECRET-KEY-PQ-1")) {
        this.identities.push(new HybridIdentity(s));
      } else {
        throw new Error("unrecognized identity type");
      }
    } else {
      this.identities.push(s);
    }
  }
  async decrypt(file, outputFormat) {
    const s = file instanceof ReadableStream ? file : stream(file);
    const { fileKey, headerSize, rest } = await this.decryptHeaderInternal(s);
    const { data: nonce, rest: payload } = await read(rest, 16);
    const label = new TextEncoder().encode("payload");
    const streamKey = hkdf(sha256, fileKey, nonce, label, 32);
    const decrypter = decryptSTREAM(streamKey);
    const out = payload.pipeThrough(decrypter);
    const outWithSize = Object.assign(out, {
      size: (size) => plaintextSize(size - headerSize - nonce.length)
    });
    if (file instanceof ReadableStream)
      return outWithSize;
    if (outputFormat === "text")
      return await readAllString(out);
    return await readAll(out);
  }
  /**
   * Decrypt the file key from a detached header. This is a low-level
   * function that can be used to implement delegated decryption logic.
   * Most users won't need this.
   *
   * It is the caller's responsibility to keep track of what file the
   * returned file key decrypts, and to ensure the file key is not used
   * for any other purpose.
   *
   * @param header - The file's textual header, including the MAC.
   *
   * @returns The file key used to encrypt the file.
   */
  async decryptHeader(header) {
    return (await this.decryptHeaderInternal(stream(header))).fileKey;
  }
  async decryptHeaderInternal(file) {
    const h = await parseHeader(file);
    const fileKey = await this.unwrapFileKey(h.stanzas);
    if (fileKey === null)
      throw Error("no identity matched any of the file's recipients");
    const label = new TextEncoder().encode("header");
    const hmacKey = hkdf(sha256, fileKey, void 0, label, 32);
    const mac = hmac(sha256, hmacKey, h.headerNoMAC);
    if (!compareBytes(h.MAC, mac))
      throw Error("invalid header HMAC");
    return { fileKey, headerSize: h.headerSize, rest: h.rest };
  }
  async unwrapFileKey(stanzas) {
    for (const identity of this.identities) {
      const fileKey = await identity.unwrapFileKey(stanzas);
      if (fileKey !== null)
        return fileKey;
    }
    return null;
  }
};
function compareBytes(a, b) {
  if (a.length !== b.length) {
    return false;
  }
  let acc = 0;
  for (let i = 0; i < a.length; i++) {
    acc |= a[i] ^ b[i];
  }
  return acc === 0;
}
function isCryptoKey3(key) {
  return typeof CryptoKey !== "undefined" && key instanceof CryptoKey;
}

// app/web/js/delete-replies.js
function deleteRepliesBox(tokenHex, msg2, onDeleted) {
  const box = document.createElement("form");
  box.id = "delete-replies-form";
  const title = document.createElement("h2");
  title.id = "delete-replies";
  title.textContent = msg2("msgDeleteTitle");
  const note = document.createElement("p");
  note.textContent = msg2("msgDeleteNote");
  const label = document.createElement("label");
  label.className = "choice confirm";
  const tick = document.createElement("input");
  tick.type = "checkbox";
  tick.id = "confirm-delete";
  tick.required = true;
  label.append(tick, " ", msg2("msgDeleteConfirm"));
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = msg2("msgDeleteButton");
  const status = document.createElement("p");
  status.setAttribute("role", "status");
  box.append(title, note, label, button, status);
  box.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!tick.checked) {
      status.textContent = msg2("msgDeleteRefused");
      return;
    }
    button.disabled = true;
    try {
      const response = await fetch("/api/mailbox/delete-replies", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ token: tokenHex, confirm: true }),
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer"
      });
      if (!response.ok) throw new Error("delete refused");
      const done = document.createElement("p");
      done.id = "replies-deleted";
      done.textContent = msg2("msgDeleteDone");
      box.replaceChildren(title, done);
      onDeleted();
    } catch {
      status.textContent = msg2("msgFailed");
      button.disabled = false;
    }
  });
  return box;
}

// app/crypto/wordlist.txt
var wordlist_default = "abacus\nabdomen\nabdominal\nabide\nabiding\nability\nablaze\nable\nabnormal\nabrasion\nabrasive\nabreast\nabridge\nabroad\nabruptly\nabsence\nabsentee\nabsently\nabsinthe\nabsolute\nabsolve\nabstain\nabstract\nabsurd\naccent\nacclaim\nacclimate\naccompany\naccount\naccuracy\naccurate\naccustom\nacetone\nachiness\naching\nacid\nacorn\nacquaint\nacquire\nacre\nacrobat\nacronym\nacting\naction\nactivate\nactivator\nactive\nactivism\nactivist\nactivity\nactress\nacts\nacutely\nacuteness\naeration\naerobics\naerosol\naerospace\nafar\naffair\naffected\naffecting\naffection\naffidavit\naffiliate\naffirm\naffix\nafflicted\naffluent\nafford\naffront\naflame\nafloat\naflutter\nafoot\nafraid\nafterglow\nafterlife\naftermath\naftermost\nafternoon\naged\nageless\nagency\nagenda\nagent\naggregate\naghast\nagile\nagility\naging\nagnostic\nagonize\nagonizing\nagony\nagreeable\nagreeably\nagreed\nagreeing\nagreement\naground\nahead\nahoy\naide\naids\naim\najar\nalabaster\nalarm\nalbatross\nalbum\nalfalfa\nalgebra\nalgorithm\nalias\nalibi\nalienable\nalienate\naliens\nalike\nalive\nalkaline\nalkalize\nalmanac\nalmighty\nalmost\naloe\naloft\naloha\nalone\nalongside\naloof\nalphabet\nalright\nalthough\naltitude\nalto\naluminum\nalumni\nalways\namaretto\namaze\namazingly\namber\nambiance\nambiguity\nambiguous\nambition\nambitious\nambulance\nambush\namendable\namendment\namends\namenity\namiable\namicably\namid\namigo\namino\namiss\nammonia\nammonium\namnesty\namniotic\namong\namount\namperage\nample\namplifier\namplify\namply\namuck\namulet\namusable\namused\namusement\namuser\namusing\nanaconda\nanaerobic\nanagram\nanatomist\nanatomy\nanchor\nanchovy\nancient\nandroid\nanemia\nanemic\naneurism\nanew\nangelfish\nangelic\nanger\nangled\nangler\nangles\nangling\nangrily\nangriness\nanguished\nangular\nanimal\nanimate\nanimating\nanimation\nanimator\nanime\nanimosity\nankle\nannex\nannotate\nannouncer\nannoying\nannually\nannuity\nanointer\nanother\nanswering\nantacid\nantarctic\nanteater\nantelope\nantennae\nanthem\nanthill\nanthology\nantibody\nantics\nantidote\nantihero\nantiquely\nantiques\nantiquity\nantirust\nantitoxic\nantitrust\nantiviral\nantivirus\nantler\nantonym\nantsy\nanvil\nanybody\nanyhow\nanymore\nanyone\nanyplace\nanything\nanytime\nanyway\nanywhere\naorta\napache\napostle\nappealing\nappear\nappease\nappeasing\nappendage\nappendix\nappetite\nappetizer\napplaud\napplause\napple\nappliance\napplicant\napplied\napply\nappointee\nappraisal\nappraiser\napprehend\napproach\napproval\napprove\napricot\napril\napron\naptitude\naptly\naqua\naqueduct\narbitrary\narbitrate\nardently\narea\narena\narguable\narguably\nargue\narise\narmadillo\narmband\narmchair\narmed\narmful\narmhole\narming\narmless\narmoire\narmored\narmory\narmrest\narmy\naroma\narose\naround\narousal\narrange\narray\narrest\narrival\narrive\narrogance\narrogant\narson\nart\nascend\nascension\nascent\nascertain\nashamed\nashen\nashes\nashy\naside\naskew\nasleep\nasparagus\naspect\naspirate\naspire\naspirin\nastonish\nastound\nastride\nastrology\nastronaut\nastronomy\nastute\natlantic\natlas\natom\natonable\natop\natrium\natrocious\natrophy\nattach\nattain\nattempt\nattendant\nattendee\nattention\nattentive\nattest\nattic\nattire\nattitude\nattractor\nattribute\natypical\nauction\naudacious\naudacity\naudible\naudibly\naudience\naudio\naudition\naugmented\naugust\nauthentic\nauthor\nautism\nautistic\nautograph\nautomaker\nautomated\nautomatic\nautopilot\navailable\navalanche\navatar\navenge\navenging\navenue\naverage\naversion\navert\naviation\naviator\navid\navoid\nawait\nawaken\naward\naware\nawhile\nawkward\nawning\nawoke\nawry\naxis\nbabble\nbabbling\nbabied\nbaboon\nbackache\nbackboard\nbackboned\nbackdrop\nbacked\nbacker\nbackfield\nbackfire\nbackhand\nbacking\nbacklands\nbacklash\nbackless\nbacklight\nbacklit\nbacklog\nbackpack\nbackpedal\nbackrest\nbackroom\nbackshift\nbackside\nbackslid\nbackspace\nbackspin\nbackstab\nbackstage\nbacktalk\nbacktrack\nbackup\nbackward\nbackwash\nbackwater\nbackyard\nbacon\nbacteria\nbacterium\nbadass\nbadge\nbadland\nbadly\nbadness\nbaffle\nbaffling\nbagel\nbagful\nbaggage\nbagged\nbaggie\nbagginess\nbagging\nbaggy\nbagpipe\nbaguette\nbaked\nbakery\nbakeshop\nbaking\nbalance\nbalancing\nbalcony\nbalmy\nbalsamic\nbamboo\nbanana\nbanish\nbanister\nbanjo\nbankable\nbankbook\nbanked\nbanker\nbanking\nbanknote\nbankroll\nbanner\nbannister\nbanshee\nbanter\nbarbecue\nbarbed\nbarbell\nbarber\nbarcode\nbarge\nbargraph\nbarista\nbaritone\nbarley\nbarmaid\nbarman\nbarn\nbarometer\nbarrack\nbarracuda\nbarrel\nbarrette\nbarricade\nbarrier\nbarstool\nbartender\nbarterer\nbash\nbasically\nbasics\nbasil\nbasin\nbasis\nbasket\nbatboy\nbatch\nbath\nbaton\nbats\nbattalion\nbattered\nbattering\nbattery\nbatting\nbattle\nbauble\nbazooka\nblabber\nbladder\nblade\nblah\nblame\nblaming\nblanching\nblandness\nblank\nblaspheme\nblasphemy\nblast\nblatancy\nblatantly\nblazer\nblazing\nbleach\nbleak\nbleep\nblemish\nblend\nbless\nblighted\nblimp\nbling\nblinked\nblinker\nblinking\nblinks\nblip\nblissful\nblitz\nblizzard\nbloated\nbloating\nblob\nblog\nbloomers\nblooming\nblooper\nblot\nblouse\nblubber\nbluff\nbluish\nblunderer\nblunt\nblurb\nblurred\nblurry\nblurt\nblush\nblustery\nboaster\nboastful\nboasting\nboat\nbobbed\nbobbing\nbobble\nbobcat\nbobsled\nbobtail\nbodacious\nbody\nbogged\nboggle\nbogus\nboil\nbok\nbolster\nbolt\nbonanza\nbonded\nbonding\nbondless\nboned\nbonehead\nboneless\nbonelike\nboney\nbonfire\nbonnet\nbonsai\nbonus\nbony\nboogeyman\nboogieman\nbook\nboondocks\nbooted\nbooth\nbootie\nbooting\nbootlace\nbootleg\nboots\nboozy\nborax\nboring\nborough\nborrower\nborrowing\nboss\nbotanical\nbotanist\nbotany\nbotch\nboth\nbottle\nbottling\nbottom\nbounce\nbouncing\nbouncy\nbounding\nboundless\nbountiful\nbovine\nboxcar\nboxer\nboxing\nboxlike\nboxy\nbreach\nbreath\nbreeches\nbreeching\nbreeder\nbreeding\nbreeze\nbreezy\nbrethren\nbrewery\nbrewing\nbriar\nbribe\nbrick\nbride\nbridged\nbrigade\nbright\nbrilliant\nbrim\nbring\nbrink\nbrisket\nbriskly\nbriskness\nbristle\nbrittle\nbroadband\nbroadcast\nbroaden\nbroadly\nbroadness\nbroadside\nbroadways\nbroiler\nbroiling\nbroken\nbroker\nbronchial\nbronco\nbronze\nbronzing\nbrook\nbroom\nbrought\nbrowbeat\nbrownnose\nbrowse\nbrowsing\nbruising\nbrunch\nbrunette\nbrunt\nbrush\nbrussels\nbrute\nbrutishly\nbubble\nbubbling\nbubbly\nbuccaneer\nbucked\nbucket\nbuckle\nbuckshot\nbuckskin\nbucktooth\nbuckwheat\nbuddhism\nbuddhist\nbudding\nbuddy\nbudget\nbuffalo\nbuffed\nbuffer\nbuffing\nbuffoon\nbuggy\nbulb\nbulge\nbulginess\nbulgur\nbulk\nbulldog\nbulldozer\nbullfight\nbullfrog\nbullhorn\nbullion\nbullish\nbullpen\nbullring\nbullseye\nbullwhip\nbully\nbunch\nbundle\nbungee\nbunion\nbunkbed\nbunkhouse\nbunkmate\nbunny\nbunt\nbusboy\nbush\nbusily\nbusload\nbust\nbusybody\nbuzz\ncabana\ncabbage\ncabbie\ncabdriver\ncable\ncaboose\ncache\ncackle\ncacti\ncactus\ncaddie\ncaddy\ncadet\ncadillac\ncadmium\ncage\ncahoots\ncake\ncalamari\ncalamity\ncalcium\ncalculate\ncalculus\ncaliber\ncalibrate\ncalm\ncaloric\ncalorie\ncalzone\ncamcorder\ncameo\ncamera\ncamisole\ncamper\ncampfire\ncamping\ncampsite\ncampus\ncanal\ncanary\ncancel\ncandied\ncandle\ncandy\ncane\ncanine\ncanister\ncannabis\ncanned\ncanning\ncannon\ncannot\ncanola\ncanon\ncanopener\ncanopy\ncanteen\ncanyon\ncapable\ncapably\ncapacity\ncape\ncapillary\ncapital\ncapitol\ncapped\ncapricorn\ncapsize\ncapsule\ncaption\ncaptivate\ncaptive\ncaptivity\ncapture\ncaramel\ncarat\ncaravan\ncarbon\ncardboard\ncarded\ncardiac\ncardigan\ncardinal\ncardstock\ncarefully\ncaregiver\ncareless\ncaress\ncaretaker\ncargo\ncaring\ncarless\ncarload\ncarmaker\ncarnage\ncarnation\ncarnival\ncarnivore\ncarol\ncarpenter\ncarpentry\ncarpool\ncarport\ncarried\ncarrot\ncarrousel\ncarry\ncartel\ncartload\ncarton\ncartoon\ncartridge\ncartwheel\ncarve\ncarving\ncarwash\ncascade\ncase\ncash\ncasing\ncasino\ncasket\ncassette\ncasually\ncasualty\ncatacomb\ncatalog\ncatalyst\ncatalyze\ncatapult\ncataract\ncatatonic\ncatcall\ncatchable\ncatcher\ncatching\ncatchy\ncaterer\ncatering\ncatfight\ncatfish\ncathedral\ncathouse\ncatlike\ncatnap\ncatnip\ncatsup\ncattail\ncattishly\ncattle\ncatty\ncatwalk\ncaucasian\ncaucus\ncausal\ncausation\ncause\ncausing\ncauterize\ncaution\ncautious\ncavalier\ncavalry\ncaviar\ncavity\ncedar\ncelery\ncelestial\ncelibacy\ncelibate\nceltic\ncement\ncensus\nceramics\nceremony\ncertainly\ncertainty\ncertified\ncertify\ncesarean\ncesspool\nchafe\nchaffing\nchain\nchair\nchalice\nchallenge\nchamber\nchamomile\nchampion\nchance\nchange\nchannel\nchant\nchaos\nchaperone\nchaplain\nchapped\nchaps\nchapter\ncharacter\ncharbroil\ncharcoal\ncharger\ncharging\nchariot\ncharity\ncharm\ncharred\ncharter\ncharting\nchase\nchasing\nchaste\nchastise\nchastity\nchatroom\nchatter\nchatting\nchatty\ncheating\ncheddar\ncheek\ncheer\ncheese\ncheesy\nchef\nchemicals\nchemist\nchemo\ncherisher\ncherub\nchess\nchest\nchevron\nchevy\nchewable\nchewer\nchewing\nchewy\nchief\nchihuahua\nchildcare\nchildhood\nchildish\nchildless\nchildlike\nchili\nchill\nchimp\nchip\nchirping\nchirpy\nchitchat\nchivalry\nchive\nchloride\nchlorine\nchoice\nchokehold\nchoking\nchomp\nchooser\nchoosing\nchoosy\nchop\nchosen\nchowder\nchowtime\nchrome\nchubby\nchuck\nchug\nchummy\nchump\nchunk\nchurn\nchute\ncider\ncilantro\ncinch\ncinema\ncinnamon\ncircle\ncircling\ncircular\ncirculate\ncircus\ncitable\ncitadel\ncitation\ncitizen\ncitric\ncitrus\ncity\ncivic\ncivil\nclad\nclaim\nclambake\nclammy\nclamor\nclamp\nclamshell\nclang\nclanking\nclapped\nclapper\nclapping\nclarify\nclarinet\nclarity\nclash\nclasp\nclass\nclatter\nclause\nclavicle\nclaw\nclay\nclean\nclear\ncleat\ncleaver\ncleft\nclench\nclergyman\nclerical\nclerk\nclever\nclicker\nclient\nclimate\nclimatic\ncling\nclinic\nclinking\nclip\nclique\ncloak\nclobber\nclock\nclone\ncloning\nclosable\nclosure\nclothes\nclothing\ncloud\nclover\nclubbed\nclubbing\nclubhouse\nclump\nclumsily\nclumsy\nclunky\nclustered\nclutch\nclutter\ncoach\ncoagulant\ncoastal\ncoaster\ncoasting\ncoastland\ncoastline\ncoat\ncoauthor\ncobalt\ncobbler\ncobweb\ncocoa\ncoconut\ncod\ncoeditor\ncoerce\ncoexist\ncoffee\ncofounder\ncognition\ncognitive\ncogwheel\ncoherence\ncoherent\ncohesive\ncoil\ncoke\ncola\ncold\ncoleslaw\ncoliseum\ncollage\ncollapse\ncollar\ncollected\ncollector\ncollide\ncollie\ncollision\ncolonial\ncolonist\ncolonize\ncolony\ncolossal\ncolt\ncoma\ncome\ncomfort\ncomfy\ncomic\ncoming\ncomma\ncommence\ncommend\ncomment\ncommerce\ncommode\ncommodity\ncommodore\ncommon\ncommotion\ncommute\ncommuting\ncompacted\ncompacter\ncompactly\ncompactor\ncompanion\ncompany\ncompare\ncompel\ncompile\ncomply\ncomponent\ncomposed\ncomposer\ncomposite\ncompost\ncomposure\ncompound\ncompress\ncomprised\ncomputer\ncomputing\ncomrade\nconcave\nconceal\nconceded\nconcept\nconcerned\nconcert\nconch\nconcierge\nconcise\nconclude\nconcrete\nconcur\ncondense\ncondiment\ncondition\ncondone\nconducive\nconductor\nconduit\ncone\nconfess\nconfetti\nconfidant\nconfident\nconfider\nconfiding\nconfigure\nconfined\nconfining\nconfirm\nconflict\nconform\nconfound\nconfront\nconfused\nconfusing\nconfusion\ncongenial\ncongested\ncongrats\ncongress\nconical\nconjoined\nconjure\nconjuror\nconnected\nconnector\nconsensus\nconsent\nconsole\nconsoling\nconsonant\nconstable\nconstant\nconstrain\nconstrict\nconstruct\nconsult\nconsumer\nconsuming\ncontact\ncontainer\ncontempt\ncontend\ncontented\ncontently\ncontents\ncontest\ncontext\ncontort\ncontour\ncontrite\ncontrol\ncontusion\nconvene\nconvent\ncopartner\ncope\ncopied\ncopier\ncopilot\ncoping\ncopious\ncopper\ncopy\ncoral\ncork\ncornball\ncornbread\ncorncob\ncornea\ncorned\ncorner\ncornfield\ncornflake\ncornhusk\ncornmeal\ncornstalk\ncorny\ncoronary\ncoroner\ncorporal\ncorporate\ncorral\ncorrect\ncorridor\ncorrode\ncorroding\ncorrosive\ncorsage\ncorset\ncortex\ncosigner\ncosmetics\ncosmic\ncosmos\ncosponsor\ncost\ncottage\ncotton\ncouch\ncough\ncould\ncountable\ncountdown\ncounting\ncountless\ncountry\ncounty\ncourier\ncovenant\ncover\ncoveted\ncoveting\ncoyness\ncozily\ncoziness\ncozy\ncrabbing\ncrabgrass\ncrablike\ncrabmeat\ncradle\ncradling\ncrafter\ncraftily\ncraftsman\ncraftwork\ncrafty\ncramp\ncranberry\ncrane\ncranial\ncranium\ncrank\ncrate\ncrave\ncraving\ncrawfish\ncrawlers\ncrawling\ncrayfish\ncrayon\ncrazed\ncrazily\ncraziness\ncrazy\ncreamed\ncreamer\ncreamlike\ncrease\ncreasing\ncreatable\ncreate\ncreation\ncreative\ncreature\ncredible\ncredibly\ncredit\ncreed\ncreme\ncreole\ncrepe\ncrept\ncrescent\ncrested\ncresting\ncrestless\ncrevice\ncrewless\ncrewman\ncrewmate\ncrib\ncricket\ncried\ncrier\ncrimp\ncrimson\ncringe\ncringing\ncrinkle\ncrinkly\ncrisped\ncrisping\ncrisply\ncrispness\ncrispy\ncriteria\ncritter\ncroak\ncrock\ncrook\ncroon\ncrop\ncross\ncrouch\ncrouton\ncrowbar\ncrowd\ncrown\ncrucial\ncrudely\ncrudeness\ncruelly\ncruelness\ncruelty\ncrumb\ncrummiest\ncrummy\ncrumpet\ncrumpled\ncruncher\ncrunching\ncrunchy\ncrusader\ncrushable\ncrushed\ncrusher\ncrushing\ncrust\ncrux\ncrying\ncryptic\ncrystal\ncubbyhole\ncube\ncubical\ncubicle\ncucumber\ncuddle\ncuddly\ncufflink\nculinary\nculminate\nculpable\nculprit\ncultivate\ncultural\nculture\ncupbearer\ncupcake\ncupid\ncupped\ncupping\ncurable\ncurator\ncurdle\ncure\ncurfew\ncuring\ncurled\ncurler\ncurliness\ncurling\ncurly\ncurry\ncurse\ncursive\ncursor\ncurtain\ncurtly\ncurtsy\ncurvature\ncurve\ncurvy\ncushy\ncusp\ncussed\ncustard\ncustodian\ncustody\ncustomary\ncustomer\ncustomize\ncustoms\ncut\ncycle\ncyclic\ncycling\ncyclist\ncylinder\ncymbal\ncytoplasm\ncytoplast\ndab\ndad\ndaffodil\ndagger\ndaily\ndaintily\ndainty\ndairy\ndaisy\ndallying\ndance\ndancing\ndandelion\ndander\ndandruff\ndandy\ndanger\ndangle\ndangling\ndaredevil\ndares\ndaringly\ndarkened\ndarkening\ndarkish\ndarkness\ndarkroom\ndarling\ndarn\ndart\ndarwinism\ndash\ndastardly\ndata\ndatebook\ndating\ndaughter\ndaunting\ndawdler\ndawn\ndaybed\ndaybreak\ndaycare\ndaydream\ndaylight\ndaylong\ndayroom\ndaytime\ndazzler\ndazzling\ndeacon\ndeafening\ndeafness\ndealer\ndealing\ndealmaker\ndealt\ndean\ndebatable\ndebate\ndebating\ndebit\ndebrief\ndebtless\ndebtor\ndebug\ndebunk\ndecade\ndecaf\ndecal\ndecathlon\ndecay\ndeceased\ndeceit\ndeceiver\ndeceiving\ndecember\ndecency\ndecent\ndeception\ndeceptive\ndecibel\ndecidable\ndecimal\ndecimeter\ndecipher\ndeck\ndeclared\ndecline\ndecode\ndecompose\ndecorated\ndecorator\ndecoy\ndecrease\ndecree\ndedicate\ndedicator\ndeduce\ndeduct\ndeed\ndeem\ndeepen\ndeeply\ndeepness\ndeface\ndefacing\ndefame\ndefault\ndefeat\ndefection\ndefective\ndefendant\ndefender\ndefense\ndefensive\ndeferral\ndeferred\ndefiance\ndefiant\ndefile\ndefiling\ndefine\ndefinite\ndeflate\ndeflation\ndeflator\ndeflected\ndeflector\ndefog\ndeforest\ndefraud\ndefrost\ndeftly\ndefuse\ndefy\ndegraded\ndegrading\ndegrease\ndegree\ndehydrate\ndeity\ndejected\ndelay\ndelegate\ndelegator\ndelete\ndeletion\ndelicacy\ndelicate\ndelicious\ndelighted\ndelirious\ndelirium\ndeliverer\ndelivery\ndelouse\ndelta\ndeluge\ndelusion\ndeluxe\ndemanding\ndemeaning\ndemeanor\ndemise\ndemocracy\ndemocrat\ndemote\ndemotion\ndemystify\ndenatured\ndeniable\ndenial\ndenim\ndenote\ndense\ndensity\ndental\ndentist\ndenture\ndeny\ndeodorant\ndeodorize\ndeparted\ndeparture\ndepict\ndeplete\ndepletion\ndeplored\ndeploy\ndeport\ndepose\ndepraved\ndepravity\ndeprecate\ndepress\ndeprive\ndepth\ndeputize\ndeputy\nderail\nderanged\nderby\nderived\ndesecrate\ndeserve\ndeserving\ndesignate\ndesigned\ndesigner\ndesigning\ndeskbound\ndesktop\ndeskwork\ndesolate\ndespair\ndespise\ndespite\ndestiny\ndestitute\ndestruct\ndetached\ndetail\ndetection\ndetective\ndetector\ndetention\ndetergent\ndetest\ndetonate\ndetonator\ndetoxify\ndetract\ndeuce\ndevalue\ndeviancy\ndeviant\ndeviate\ndeviation\ndeviator\ndevice\ndevious\ndevotedly\ndevotee\ndevotion\ndevourer\ndevouring\ndevoutly\ndexterity\ndexterous\ndiabetes\ndiabetic\ndiabolic\ndiagnoses\ndiagnosis\ndiagram\ndial\ndiameter\ndiaper\ndiaphragm\ndiary\ndice\ndicing\ndictate\ndictation\ndictator\ndifficult\ndiffused\ndiffuser\ndiffusion\ndiffusive\ndig\ndilation\ndiligence\ndiligent\ndill\ndilute\ndime\ndiminish\ndimly\ndimmed\ndimmer\ndimness\ndimple\ndiner\ndingbat\ndinghy\ndinginess\ndingo\ndingy\ndining\ndinner\ndiocese\ndioxide\ndiploma\ndipped\ndipper\ndipping\ndirected\ndirection\ndirective\ndirectly\ndirectory\ndireness\ndirtiness\ndisabled\ndisagree\ndisallow\ndisarm\ndisarray\ndisaster\ndisband\ndisbelief\ndisburse\ndiscard\ndiscern\ndischarge\ndisclose\ndiscolor\ndiscount\ndiscourse\ndiscover\ndiscuss\ndisdain\ndisengage\ndisfigure\ndisgrace\ndish\ndisinfect\ndisjoin\ndisk\ndislike\ndisliking\ndislocate\ndislodge\ndisloyal\ndismantle\ndismay\ndismiss\ndismount\ndisobey\ndisorder\ndisown\ndisparate\ndisparity\ndispatch\ndispense\ndispersal\ndispersed\ndisperser\ndisplace\ndisplay\ndisplease\ndisposal\ndispose\ndisprove\ndispute\ndisregard\ndisrupt\ndissuade\ndistance\ndistant\ndistaste\ndistill\ndistinct\ndistort\ndistract\ndistress\ndistrict\ndistrust\nditch\nditto\nditzy\ndividable\ndivided\ndividend\ndividers\ndividing\ndivinely\ndiving\ndivinity\ndivisible\ndivisibly\ndivision\ndivisive\ndivorcee\ndizziness\ndizzy\ndoable\ndocile\ndock\ndoctrine\ndocument\ndodge\ndodgy\ndoily\ndoing\ndole\ndollar\ndollhouse\ndollop\ndolly\ndolphin\ndomain\ndomelike\ndomestic\ndominion\ndominoes\ndonated\ndonation\ndonator\ndonor\ndonut\ndoodle\ndoorbell\ndoorframe\ndoorknob\ndoorman\ndoormat\ndoornail\ndoorpost\ndoorstep\ndoorstop\ndoorway\ndoozy\ndork\ndormitory\ndorsal\ndosage\ndose\ndotted\ndoubling\ndouche\ndove\ndown\ndowry\ndoze\ndrab\ndragging\ndragonfly\ndragonish\ndragster\ndrainable\ndrainage\ndrained\ndrainer\ndrainpipe\ndramatic\ndramatize\ndrank\ndrapery\ndrastic\ndraw\ndreaded\ndreadful\ndreadlock\ndreamboat\ndreamily\ndreamland\ndreamless\ndreamlike\ndreamt\ndreamy\ndrearily\ndreary\ndrench\ndress\ndrew\ndribble\ndried\ndrier\ndrift\ndriller\ndrilling\ndrinkable\ndrinking\ndripping\ndrippy\ndrivable\ndriven\ndriver\ndriveway\ndriving\ndrizzle\ndrizzly\ndrone\ndrool\ndroop\ndropdown\ndropbox\ndropkick\ndroplet\ndropout\ndropper\ndrove\ndrown\ndrowsily\ndrudge\ndrum\ndry\ndubbed\ndubiously\nduchess\nduckbill\nducking\nduckling\nducktail\nducky\nduct\ndude\nduffel\ndugout\nduh\nduke\nduller\ndullness\nduly\ndumping\ndumpling\ndumpster\nduo\ndupe\nduplex\nduplicate\nduplicity\ndurable\ndurably\nduration\nduress\nduring\ndusk\ndust\ndutiful\nduty\nduvet\ndwarf\ndweeb\ndwelled\ndweller\ndwelling\ndwindle\ndwindling\ndynamic\ndynamite\ndynasty\ndyslexia\ndyslexic\neach\neagle\nearache\neardrum\nearflap\nearful\nearlobe\nearly\nearmark\nearmuff\nearphone\nearpiece\nearplugs\nearring\nearshot\nearthen\nearthlike\nearthling\nearthly\nearthworm\nearthy\nearwig\neaseful\neasel\neasiest\neasily\neasiness\neasing\neastbound\neastcoast\neaster\neastward\neatable\neaten\neatery\neating\neats\nebay\nebony\nebook\necard\neccentric\necho\neclair\neclipse\necologist\necology\neconomic\neconomist\neconomy\necosphere\necosystem\nedge\nedginess\nedging\nedgy\nedition\neditor\neducated\neducation\neducator\neel\neffective\neffects\nefficient\neffort\neggbeater\negging\neggnog\neggplant\neggshell\negomaniac\negotism\negotistic\neither\neject\nelaborate\nelastic\nelated\nelbow\neldercare\nelderly\neldest\nelectable\nelection\nelective\nelephant\nelevate\nelevating\nelevation\nelevator\neleven\nelf\neligible\neligibly\neliminate\nelite\nelitism\nelixir\nelk\nellipse\nelliptic\nelm\nelongated\nelope\neloquence\neloquent\nelsewhere\nelude\nelusive\nelves\nemail\nembargo\nembark\nembassy\nembattled\nembellish\nember\nembezzle\nemblaze\nemblem\nembody\nembolism\nemboss\nembroider\nemcee\nemerald\nemergency\nemission\nemit\nemote\nemoticon\nemotion\nempathic\nempathy\nemperor\nemphases\nemphasis\nemphasize\nemphatic\nempirical\nemployed\nemployee\nemployer\nemporium\nempower\nemptier\nemptiness\nempty\nemu\nenable\nenactment\nenamel\nenchanted\nenchilada\nencircle\nenclose\nenclosure\nencode\nencore\nencounter\nencourage\nencroach\nencrust\nencrypt\nendanger\nendeared\nendearing\nended\nending\nendless\nendnote\nendocrine\nendorphin\nendorse\nendowment\nendpoint\nendurable\nendurance\nenduring\nenergetic\nenergize\nenergy\nenforced\nenforcer\nengaged\nengaging\nengine\nengorge\nengraved\nengraver\nengraving\nengross\nengulf\nenhance\nenigmatic\nenjoyable\nenjoyably\nenjoyer\nenjoying\nenjoyment\nenlarged\nenlarging\nenlighten\nenlisted\nenquirer\nenrage\nenrich\nenroll\nenslave\nensnare\nensure\nentail\nentangled\nentering\nentertain\nenticing\nentire\nentitle\nentity\nentomb\nentourage\nentrap\nentree\nentrench\nentrust\nentryway\nentwine\nenunciate\nenvelope\nenviable\nenviably\nenvious\nenvision\nenvoy\nenvy\nenzyme\nepic\nepidemic\nepidermal\nepidermis\nepidural\nepilepsy\nepileptic\nepilogue\nepiphany\nepisode\nequal\nequate\nequation\nequator\nequinox\nequipment\nequity\nequivocal\neradicate\nerasable\nerased\neraser\nerasure\nergonomic\nerrand\nerrant\nerratic\nerror\nerupt\nescalate\nescalator\nescapable\nescapade\nescapist\nescargot\neskimo\nesophagus\nespionage\nespresso\nesquire\nessay\nessence\nessential\nestablish\nestate\nesteemed\nestimate\nestimator\nestranged\nestrogen\netching\neternal\neternity\nethanol\nether\nethically\nethics\neuphemism\nevacuate\nevacuee\nevade\nevaluate\nevaluator\nevaporate\nevasion\nevasive\neven\neverglade\nevergreen\neverybody\neveryday\neveryone\nevict\nevidence\nevident\nevil\nevoke\nevolution\nevolve\nexact\nexalted\nexample\nexcavate\nexcavator\nexceeding\nexception\nexcess\nexchange\nexcitable\nexciting\nexclaim\nexclude\nexcluding\nexclusion\nexclusive\nexcretion\nexcretory\nexcursion\nexcusable\nexcusably\nexcuse\nexemplary\nexemplify\nexemption\nexerciser\nexert\nexes\nexfoliate\nexhale\nexhaust\nexhume\nexile\nexisting\nexit\nexodus\nexonerate\nexorcism\nexorcist\nexpand\nexpanse\nexpansion\nexpansive\nexpectant\nexpedited\nexpediter\nexpel\nexpend\nexpenses\nexpensive\nexpert\nexpire\nexpiring\nexplain\nexpletive\nexplicit\nexplode\nexploit\nexplore\nexploring\nexponent\nexporter\nexposable\nexpose\nexposure\nexpress\nexpulsion\nexquisite\nextended\nextending\nextent\nextenuate\nexterior\nexternal\nextinct\nextortion\nextradite\nextras\nextrovert\nextrude\nextruding\nexuberant\nfable\nfabric\nfabulous\nfacebook\nfacecloth\nfacedown\nfaceless\nfacelift\nfaceplate\nfaceted\nfacial\nfacility\nfacing\nfacsimile\nfaction\nfactoid\nfactor\nfactsheet\nfactual\nfaculty\nfade\nfading\nfailing\nfalcon\nfall\nfalse\nfalsify\nfame\nfamiliar\nfamily\nfamine\nfamished\nfanatic\nfancied\nfanciness\nfancy\nfanfare\nfang\nfanning\nfantasize\nfantastic\nfantasy\nfascism\nfastball\nfaster\nfasting\nfastness\nfaucet\nfavorable\nfavorably\nfavored\nfavoring\nfavorite\nfax\nfeast\nfederal\nfedora\nfeeble\nfeed\nfeel\nfeisty\nfeline\nfelttip\nfeminine\nfeminism\nfeminist\nfeminize\nfemur\nfence\nfencing\nfender\nferment\nfernlike\nferocious\nferocity\nferret\nferris\nferry\nfervor\nfester\nfestival\nfestive\nfestivity\nfetal\nfetch\nfever\nfiber\nfiction\nfiddle\nfiddling\nfidelity\nfidgeting\nfidgety\nfifteen\nfifth\nfiftieth\nfifty\nfigment\nfigure\nfigurine\nfiling\nfilled\nfiller\nfilling\nfilm\nfilter\nfilth\nfiltrate\nfinale\nfinalist\nfinalize\nfinally\nfinance\nfinancial\nfinch\nfineness\nfiner\nfinicky\nfinished\nfinisher\nfinishing\nfinite\nfinless\nfinlike\nfiscally\nfit\nfive\nflaccid\nflagman\nflagpole\nflagship\nflagstick\nflagstone\nflail\nflakily\nflaky\nflame\nflammable\nflanked\nflanking\nflannels\nflap\nflaring\nflashback\nflashbulb\nflashcard\nflashily\nflashing\nflashy\nflask\nflatbed\nflatfoot\nflatly\nflatness\nflatten\nflattered\nflatterer\nflattery\nflattop\nflatware\nflatworm\nflavored\nflavorful\nflavoring\nflaxseed\nfled\nfleshed\nfleshy\nflick\nflier\nflight\nflinch\nfling\nflint\nflip\nflirt\nfloat\nflock\nflogging\nflop\nfloral\nflorist\nfloss\nflounder\nflyable\nflyaway\nflyer\nflying\nflyover\nflypaper\nfoam\nfoe\nfog\nfoil\nfolic\nfolk\nfollicle\nfollow\nfondling\nfondly\nfondness\nfondue\nfont\nfood\nfool\nfootage\nfootball\nfootbath\nfootboard\nfooter\nfootgear\nfoothill\nfoothold\nfooting\nfootless\nfootman\nfootnote\nfootpad\nfootpath\nfootprint\nfootrest\nfootsie\nfootsore\nfootwear\nfootwork\nfossil\nfoster\nfounder\nfounding\nfountain\nfox\nfoyer\nfraction\nfracture\nfragile\nfragility\nfragment\nfragrance\nfragrant\nfrail\nframe\nframing\nfrantic\nfraternal\nfrayed\nfraying\nfrays\nfreckled\nfreckles\nfreebase\nfreebee\nfreebie\nfreedom\nfreefall\nfreehand\nfreeing\nfreeload\nfreely\nfreemason\nfreeness\nfreestyle\nfreeware\nfreeway\nfreewill\nfreezable\nfreezing\nfreight\nfrench\nfrenzied\nfrenzy\nfrequency\nfrequent\nfresh\nfretful\nfretted\nfriction\nfriday\nfridge\nfried\nfriend\nfrighten\nfrightful\nfrigidity\nfrigidly\nfrill\nfringe\nfrisbee\nfrisk\nfritter\nfrivolous\nfrolic\nfrom\nfront\nfrostbite\nfrosted\nfrostily\nfrosting\nfrostlike\nfrosty\nfroth\nfrown\nfrozen\nfructose\nfrugality\nfrugally\nfruit\nfrustrate\nfrying\ngab\ngaffe\ngag\ngainfully\ngaining\ngains\ngala\ngallantly\ngalleria\ngallery\ngalley\ngallon\ngallows\ngallstone\ngalore\ngalvanize\ngambling\ngame\ngaming\ngamma\ngander\ngangly\ngangrene\ngangway\ngap\ngarage\ngarbage\ngarden\ngargle\ngarland\ngarlic\ngarment\ngarnet\ngarnish\ngarter\ngas\ngatherer\ngathering\ngating\ngauging\ngauntlet\ngauze\ngave\ngawk\ngazing\ngear\ngecko\ngeek\ngeiger\ngem\ngender\ngeneric\ngenerous\ngenetics\ngenre\ngentile\ngentleman\ngently\ngents\ngeography\ngeologic\ngeologist\ngeology\ngeometric\ngeometry\ngeranium\ngerbil\ngeriatric\ngermicide\ngerminate\ngermless\ngermproof\ngestate\ngestation\ngesture\ngetaway\ngetting\ngetup\ngiant\ngibberish\ngiblet\ngiddily\ngiddiness\ngiddy\ngift\ngigabyte\ngigahertz\ngigantic\ngiggle\ngiggling\ngiggly\ngigolo\ngilled\ngills\ngimmick\ngirdle\ngiveaway\ngiven\ngiver\ngiving\ngizmo\ngizzard\nglacial\nglacier\nglade\ngladiator\ngladly\nglamorous\nglamour\nglance\nglancing\nglandular\nglare\nglaring\nglass\nglaucoma\nglazing\ngleaming\ngleeful\nglider\ngliding\nglimmer\nglimpse\nglisten\nglitch\nglitter\nglitzy\ngloater\ngloating\ngloomily\ngloomy\nglorified\nglorifier\nglorify\nglorious\nglory\ngloss\nglove\nglowing\nglowworm\nglucose\nglue\ngluten\nglutinous\nglutton\ngnarly\ngnat\ngoal\ngoatskin\ngoes\ngoggles\ngoing\ngoldfish\ngoldmine\ngoldsmith\ngolf\ngoliath\ngonad\ngondola\ngone\ngong\ngood\ngooey\ngoofball\ngoofiness\ngoofy\ngoogle\ngoon\ngopher\ngore\ngorged\ngorgeous\ngory\ngosling\ngossip\ngothic\ngotten\ngout\ngown\ngrab\ngraceful\ngraceless\ngracious\ngradation\ngraded\ngrader\ngradient\ngrading\ngradually\ngraduate\ngraffiti\ngrafted\ngrafting\ngrain\ngranddad\ngrandkid\ngrandly\ngrandma\ngrandpa\ngrandson\ngranite\ngranny\ngranola\ngrant\ngranular\ngrape\ngraph\ngrapple\ngrappling\ngrasp\ngrass\ngratified\ngratify\ngrating\ngratitude\ngratuity\ngravel\ngraveness\ngraves\ngraveyard\ngravitate\ngravity\ngravy\ngray\ngrazing\ngreasily\ngreedily\ngreedless\ngreedy\ngreen\ngreeter\ngreeting\ngrew\ngreyhound\ngrid\ngrief\ngrievance\ngrieving\ngrievous\ngrill\ngrimace\ngrimacing\ngrime\ngriminess\ngrimy\ngrinch\ngrinning\ngrip\ngristle\ngrit\ngroggily\ngroggy\ngroin\ngroom\ngroove\ngrooving\ngroovy\ngrope\nground\ngrouped\ngrout\ngrove\ngrower\ngrowing\ngrowl\ngrub\ngrudge\ngrudging\ngrueling\ngruffly\ngrumble\ngrumbling\ngrumbly\ngrumpily\ngrunge\ngrunt\nguacamole\nguidable\nguidance\nguide\nguiding\nguileless\nguise\ngulf\ngullible\ngully\ngulp\ngumball\ngumdrop\ngumminess\ngumming\ngummy\ngurgle\ngurgling\nguru\ngush\ngusto\ngusty\ngutless\nguts\ngutter\nguy\nguzzler\ngyration\nhabitable\nhabitant\nhabitat\nhabitual\nhacked\nhacker\nhacking\nhacksaw\nhad\nhaggler\nhaiku\nhalf\nhalogen\nhalt\nhalved\nhalves\nhamburger\nhamlet\nhammock\nhamper\nhamster\nhamstring\nhandbag\nhandball\nhandbook\nhandbrake\nhandcart\nhandclap\nhandclasp\nhandcraft\nhandcuff\nhanded\nhandful\nhandgrip\nhandgun\nhandheld\nhandiness\nhandiwork\nhandlebar\nhandled\nhandler\nhandling\nhandmade\nhandoff\nhandpick\nhandprint\nhandrail\nhandsaw\nhandset\nhandsfree\nhandshake\nhandstand\nhandwash\nhandwork\nhandwoven\nhandwrite\nhandyman\nhangnail\nhangout\nhangover\nhangup\nhankering\nhankie\nhanky\nhaphazard\nhappening\nhappier\nhappiest\nhappily\nhappiness\nhappy\nharbor\nhardcopy\nhardcore\nhardcover\nharddisk\nhardened\nhardener\nhardening\nhardhat\nhardhead\nhardiness\nhardly\nhardness\nhardship\nhardware\nhardwired\nhardwood\nhardy\nharmful\nharmless\nharmonica\nharmonics\nharmonize\nharmony\nharness\nharpist\nharsh\nharvest\nhash\nhassle\nhaste\nhastily\nhastiness\nhasty\nhatbox\nhatchback\nhatchery\nhatchet\nhatching\nhatchling\nhate\nhatless\nhatred\nhaunt\nhaven\nhazard\nhazelnut\nhazily\nhaziness\nhazing\nhazy\nheadache\nheadband\nheadboard\nheadcount\nheaddress\nheaded\nheader\nheadfirst\nheadgear\nheading\nheadlamp\nheadless\nheadlock\nheadphone\nheadpiece\nheadrest\nheadroom\nheadscarf\nheadset\nheadsman\nheadstand\nheadstone\nheadway\nheadwear\nheap\nheat\nheave\nheavily\nheaviness\nheaving\nhedge\nhedging\nheftiness\nhefty\nhelium\nhelmet\nhelper\nhelpful\nhelping\nhelpless\nhelpline\nhemlock\nhemstitch\nhence\nhenchman\nhenna\nherald\nherbal\nherbicide\nherbs\nheritage\nhermit\nheroics\nheroism\nherring\nherself\nhertz\nhesitancy\nhesitant\nhesitate\nhexagon\nhexagram\nhubcap\nhuddle\nhuddling\nhuff\nhug\nhula\nhulk\nhull\nhuman\nhumble\nhumbling\nhumbly\nhumid\nhumiliate\nhumility\nhumming\nhummus\nhumongous\nhumorist\nhumorless\nhumorous\nhumpback\nhumped\nhumvee\nhunchback\nhundredth\nhunger\nhungrily\nhungry\nhunk\nhunter\nhunting\nhuntress\nhuntsman\nhurdle\nhurled\nhurler\nhurling\nhurray\nhurricane\nhurried\nhurry\nhurt\nhusband\nhush\nhusked\nhuskiness\nhut\nhybrid\nhydrant\nhydrated\nhydration\nhydrogen\nhydroxide\nhyperlink\nhypertext\nhyphen\nhypnoses\nhypnosis\nhypnotic\nhypnotism\nhypnotist\nhypnotize\nhypocrisy\nhypocrite\nibuprofen\nice\niciness\nicing\nicky\nicon\nicy\nidealism\nidealist\nidealize\nideally\nidealness\nidentical\nidentify\nidentity\nideology\nidiocy\nidiom\nidly\nigloo\nignition\nignore\niguana\nillicitly\nillusion\nillusive\nimage\nimaginary\nimagines\nimaging\nimbecile\nimitate\nimitation\nimmature\nimmerse\nimmersion\nimminent\nimmobile\nimmodest\nimmorally\nimmortal\nimmovable\nimmovably\nimmunity\nimmunize\nimpaired\nimpale\nimpart\nimpatient\nimpeach\nimpeding\nimpending\nimperfect\nimperial\nimpish\nimplant\nimplement\nimplicate\nimplicit\nimplode\nimplosion\nimplosive\nimply\nimpolite\nimportant\nimporter\nimpose\nimposing\nimpotence\nimpotency\nimpotent\nimpound\nimprecise\nimprint\nimprison\nimpromptu\nimproper\nimprove\nimproving\nimprovise\nimprudent\nimpulse\nimpulsive\nimpure\nimpurity\niodine\niodize\nion\nipad\niphone\nipod\nirate\nirk\niron\nirregular\nirrigate\nirritable\nirritably\nirritant\nirritate\nislamic\nislamist\nisolated\nisolating\nisolation\nisotope\nissue\nissuing\nitalicize\nitalics\nitem\nitinerary\nitunes\nivory\nivy\njab\njackal\njacket\njackknife\njackpot\njailbird\njailbreak\njailer\njailhouse\njalapeno\njam\njanitor\njanuary\njargon\njarring\njasmine\njaundice\njaunt\njava\njawed\njawless\njawline\njaws\njaybird\njaywalker\njazz\njeep\njeeringly\njellied\njelly\njersey\njester\njet\njiffy\njigsaw\njimmy\njingle\njingling\njinx\njitters\njittery\njob\njockey\njockstrap\njogger\njogging\njohn\njoining\njokester\njokingly\njolliness\njolly\njolt\njot\njovial\njoyfully\njoylessly\njoyous\njoyride\njoystick\njubilance\njubilant\njudge\njudgingly\njudicial\njudiciary\njudo\njuggle\njuggling\njugular\njuice\njuiciness\njuicy\njujitsu\njukebox\njuly\njumble\njumbo\njump\njunction\njuncture\njune\njunior\njuniper\njunkie\njunkman\njunkyard\njurist\njuror\njury\njustice\njustifier\njustify\njustly\njustness\njuvenile\nkabob\nkangaroo\nkaraoke\nkarate\nkarma\nkebab\nkeenly\nkeenness\nkeep\nkeg\nkelp\nkennel\nkept\nkerchief\nkerosene\nkettle\nkick\nkiln\nkilobyte\nkilogram\nkilometer\nkilowatt\nkilt\nkimono\nkindle\nkindling\nkindly\nkindness\nkindred\nkinetic\nkinfolk\nking\nkinship\nkinsman\nkinswoman\nkissable\nkisser\nkissing\nkitchen\nkite\nkitten\nkitty\nkiwi\nkleenex\nknapsack\nknee\nknelt\nknickers\nknoll\nkoala\nkooky\nkosher\nkrypton\nkudos\nkung\nlabored\nlaborer\nlaboring\nlaborious\nlabrador\nladder\nladies\nladle\nladybug\nladylike\nlagged\nlagging\nlagoon\nlair\nlake\nlance\nlanded\nlandfall\nlandfill\nlanding\nlandlady\nlandless\nlandline\nlandlord\nlandmark\nlandmass\nlandmine\nlandowner\nlandscape\nlandside\nlandslide\nlanguage\nlankiness\nlanky\nlantern\nlapdog\nlapel\nlapped\nlapping\nlaptop\nlard\nlarge\nlark\nlash\nlasso\nlast\nlatch\nlate\nlather\nlatitude\nlatrine\nlatter\nlatticed\nlaunch\nlaunder\nlaundry\nlaurel\nlavender\nlavish\nlaxative\nlazily\nlaziness\nlazy\nlecturer\nleft\nlegacy\nlegal\nlegend\nlegged\nleggings\nlegible\nlegibly\nlegislate\nlego\nlegroom\nlegume\nlegwarmer\nlegwork\nlemon\nlend\nlength\nlens\nlent\nleotard\nlesser\nletdown\nlethargic\nlethargy\nletter\nlettuce\nlevel\nleverage\nlevers\nlevitate\nlevitator\nliability\nliable\nliberty\nlibrarian\nlibrary\nlicking\nlicorice\nlid\nlife\nlifter\nlifting\nliftoff\nligament\nlikely\nlikeness\nlikewise\nliking\nlilac\nlilly\nlily\nlimb\nlimeade\nlimelight\nlimes\nlimit\nlimping\nlimpness\nline\nlingo\nlinguini\nlinguist\nlining\nlinked\nlinoleum\nlinseed\nlint\nlion\nlip\nliquefy\nliqueur\nliquid\nlisp\nlist\nlitigate\nlitigator\nlitmus\nlitter\nlittle\nlivable\nlived\nlively\nliver\nlivestock\nlividly\nliving\nlizard\nlubricant\nlubricate\nlucid\nluckily\nluckiness\nluckless\nlucrative\nludicrous\nlugged\nlukewarm\nlullaby\nlumber\nluminance\nluminous\nlumpiness\nlumping\nlumpish\nlunacy\nlunar\nlunchbox\nluncheon\nlunchroom\nlunchtime\nlung\nlurch\nlure\nluridness\nlurk\nlushly\nlushness\nluster\nlustfully\nlustily\nlustiness\nlustrous\nlusty\nluxurious\nluxury\nlying\nlyrically\nlyricism\nlyricist\nlyrics\nmacarena\nmacaroni\nmacaw\nmace\nmachine\nmachinist\nmagazine\nmagenta\nmaggot\nmagical\nmagician\nmagma\nmagnesium\nmagnetic\nmagnetism\nmagnetize\nmagnifier\nmagnify\nmagnitude\nmagnolia\nmahogany\nmaimed\nmajestic\nmajesty\nmajorette\nmajority\nmakeover\nmaker\nmakeshift\nmaking\nmalformed\nmalt\nmama\nmammal\nmammary\nmammogram\nmanager\nmanaging\nmanatee\nmandarin\nmandate\nmandatory\nmandolin\nmanger\nmangle\nmango\nmangy\nmanhandle\nmanhole\nmanhood\nmanhunt\nmanicotti\nmanicure\nmanifesto\nmanila\nmankind\nmanlike\nmanliness\nmanly\nmanmade\nmanned\nmannish\nmanor\nmanpower\nmantis\nmantra\nmanual\nmany\nmap\nmarathon\nmarauding\nmarbled\nmarbles\nmarbling\nmarch\nmardi\nmargarine\nmargarita\nmargin\nmarigold\nmarina\nmarine\nmarital\nmaritime\nmarlin\nmarmalade\nmaroon\nmarried\nmarrow\nmarry\nmarshland\nmarshy\nmarsupial\nmarvelous\nmarxism\nmascot\nmasculine\nmashed\nmashing\nmassager\nmasses\nmassive\nmastiff\nmatador\nmatchbook\nmatchbox\nmatcher\nmatching\nmatchless\nmaterial\nmaternal\nmaternity\nmath\nmating\nmatriarch\nmatrimony\nmatrix\nmatron\nmatted\nmatter\nmaturely\nmaturing\nmaturity\nmauve\nmaverick\nmaximize\nmaximum\nmaybe\nmayday\nmayflower\nmoaner\nmoaning\nmobile\nmobility\nmobilize\nmobster\nmocha\nmocker\nmockup\nmodified\nmodify\nmodular\nmodulator\nmodule\nmoisten\nmoistness\nmoisture\nmolar\nmolasses\nmold\nmolecular\nmolecule\nmolehill\nmollusk\nmom\nmonastery\nmonday\nmonetary\nmonetize\nmoneybags\nmoneyless\nmoneywise\nmongoose\nmongrel\nmonitor\nmonkhood\nmonogamy\nmonogram\nmonologue\nmonopoly\nmonorail\nmonotone\nmonotype\nmonoxide\nmonsieur\nmonsoon\nmonstrous\nmonthly\nmonument\nmoocher\nmoodiness\nmoody\nmooing\nmoonbeam\nmooned\nmoonlight\nmoonlike\nmoonlit\nmoonrise\nmoonscape\nmoonshine\nmoonstone\nmoonwalk\nmop\nmorale\nmorality\nmorally\nmorbidity\nmorbidly\nmorphine\nmorphing\nmorse\nmortality\nmortally\nmortician\nmortified\nmortify\nmortuary\nmosaic\nmossy\nmost\nmothball\nmothproof\nmotion\nmotivate\nmotivator\nmotive\nmotocross\nmotor\nmotto\nmountable\nmountain\nmounted\nmounting\nmourner\nmournful\nmouse\nmousiness\nmoustache\nmousy\nmouth\nmovable\nmove\nmovie\nmoving\nmower\nmowing\nmuch\nmuck\nmud\nmug\nmulberry\nmulch\nmule\nmulled\nmullets\nmultiple\nmultiply\nmultitask\nmultitude\nmumble\nmumbling\nmumbo\nmummified\nmummify\nmummy\nmumps\nmunchkin\nmundane\nmunicipal\nmuppet\nmural\nmurkiness\nmurky\nmurmuring\nmuscular\nmuseum\nmushily\nmushiness\nmushroom\nmushy\nmusic\nmusket\nmuskiness\nmusky\nmustang\nmustard\nmuster\nmustiness\nmusty\nmutable\nmutate\nmutation\nmute\nmutilated\nmutilator\nmutiny\nmutt\nmutual\nmuzzle\nmyself\nmyspace\nmystified\nmystify\nmyth\nnacho\nnag\nnail\nname\nnaming\nnanny\nnanometer\nnape\nnapkin\nnapped\nnapping\nnappy\nnarrow\nnastily\nnastiness\nnational\nnative\nnativity\nnatural\nnature\nnaturist\nnautical\nnavigate\nnavigator\nnavy\nnearby\nnearest\nnearly\nnearness\nneatly\nneatness\nnebula\nnebulizer\nnectar\nnegate\nnegation\nnegative\nneglector\nnegligee\nnegligent\nnegotiate\nnemeses\nnemesis\nneon\nnephew\nnerd\nnervous\nnervy\nnest\nnet\nneurology\nneuron\nneurosis\nneurotic\nneuter\nneutron\nnever\nnext\nnibble\nnickname\nnicotine\nniece\nnifty\nnimble\nnimbly\nnineteen\nninetieth\nninja\nnintendo\nninth\nnuclear\nnuclei\nnucleus\nnugget\nnullify\nnumber\nnumbing\nnumbly\nnumbness\nnumeral\nnumerate\nnumerator\nnumeric\nnumerous\nnuptials\nnursery\nnursing\nnurture\nnutcase\nnutlike\nnutmeg\nnutrient\nnutshell\nnuttiness\nnutty\nnuzzle\nnylon\noaf\noak\noasis\noat\nobedience\nobedient\nobituary\nobject\nobligate\nobliged\noblivion\noblivious\noblong\nobnoxious\noboe\nobscure\nobscurity\nobservant\nobserver\nobserving\nobsessed\nobsession\nobsessive\nobsolete\nobstacle\nobstinate\nobstruct\nobtain\nobtrusive\nobtuse\nobvious\noccultist\noccupancy\noccupant\noccupier\noccupy\nocean\nocelot\noctagon\noctane\noctober\noctopus\nogle\noil\noink\nointment\nokay\nold\nolive\nolympics\nomega\nomen\nominous\nomission\nomit\nomnivore\nonboard\noncoming\nongoing\nonion\nonline\nonlooker\nonly\nonscreen\nonset\nonshore\nonslaught\nonstage\nonto\nonward\nonyx\noops\nooze\noozy\nopacity\nopal\nopen\noperable\noperate\noperating\noperation\noperative\noperator\nopium\nopossum\nopponent\noppose\nopposing\nopposite\noppressed\noppressor\nopt\nopulently\nosmosis\nother\notter\nouch\nought\nounce\noutage\noutback\noutbid\noutboard\noutbound\noutbreak\noutburst\noutcast\noutclass\noutcome\noutdated\noutdoors\nouter\noutfield\noutfit\noutflank\noutgoing\noutgrow\nouthouse\nouting\noutlast\noutlet\noutline\noutlook\noutlying\noutmatch\noutmost\noutnumber\noutplayed\noutpost\noutpour\noutput\noutrage\noutrank\noutreach\noutright\noutscore\noutsell\noutshine\noutshoot\noutsider\noutskirts\noutsmart\noutsource\noutspoken\nouttakes\noutthink\noutward\noutweigh\noutwit\noval\novary\noven\noveract\noverall\noverarch\noverbid\noverbill\noverbite\noverblown\noverboard\noverbook\noverbuilt\novercast\novercoat\novercome\novercook\novercrowd\noverdraft\noverdrawn\noverdress\noverdrive\noverdue\novereager\novereater\noverexert\noverfed\noverfeed\noverfill\noverflow\noverfull\novergrown\noverhand\noverhang\noverhaul\noverhead\noverhear\noverheat\noverhung\noverjoyed\noverkill\noverlabor\noverlaid\noverlap\noverlay\noverload\noverlook\noverlord\noverlying\novernight\noverpass\noverpay\noverplant\noverplay\noverpower\noverprice\noverrate\noverreach\noverreact\noverride\noverripe\noverrule\noverrun\novershoot\novershot\noversight\noversized\noversleep\noversold\noverspend\noverstate\noverstay\noverstep\noverstock\noverstuff\noversweet\novertake\noverthrow\novertime\novertly\novertone\noverture\noverturn\noveruse\novervalue\noverview\noverwrite\nowl\noxford\noxidant\noxidation\noxidize\noxidizing\noxygen\noxymoron\noyster\nozone\npaced\npacemaker\npacific\npacifier\npacifism\npacifist\npacify\npadded\npadding\npaddle\npaddling\npadlock\npagan\npager\npaging\npajamas\npalace\npalatable\npalm\npalpable\npalpitate\npaltry\npampered\npamperer\npampers\npamphlet\npanama\npancake\npancreas\npanda\npandemic\npang\npanhandle\npanic\npanning\npanorama\npanoramic\npanther\npantomime\npantry\npants\npantyhose\npaparazzi\npapaya\npaper\npaprika\npapyrus\nparabola\nparachute\nparade\nparadox\nparagraph\nparakeet\nparalegal\nparalyses\nparalysis\nparalyze\nparamedic\nparameter\nparamount\nparasail\nparasite\nparasitic\nparcel\nparched\nparchment\npardon\nparish\nparka\nparking\nparkway\nparlor\nparmesan\nparole\nparrot\nparsley\nparsnip\npartake\nparted\nparting\npartition\npartly\npartner\npartridge\nparty\npassable\npassably\npassage\npasscode\npassenger\npasserby\npassing\npassion\npassive\npassivism\npassover\npassport\npassword\npasta\npasted\npastel\npastime\npastor\npastrami\npasture\npasty\npatchwork\npatchy\npaternal\npaternity\npath\npatience\npatient\npatio\npatriarch\npatriot\npatrol\npatronage\npatronize\npauper\npavement\npaver\npavestone\npavilion\npaving\npawing\npayable\npayback\npaycheck\npayday\npayee\npayer\npaying\npayment\npayphone\npayroll\npebble\npebbly\npecan\npectin\npeculiar\npeddling\npediatric\npedicure\npedigree\npedometer\npegboard\npelican\npellet\npelt\npelvis\npenalize\npenalty\npencil\npendant\npending\npenholder\npenknife\npennant\npenniless\npenny\npenpal\npension\npentagon\npentagram\npep\nperceive\npercent\nperch\npercolate\nperennial\nperfected\nperfectly\nperfume\nperiscope\nperish\nperjurer\nperjury\nperkiness\nperky\nperm\nperoxide\nperpetual\nperplexed\npersecute\npersevere\npersuaded\npersuader\npesky\npeso\npessimism\npessimist\npester\npesticide\npetal\npetite\npetition\npetri\npetroleum\npetted\npetticoat\npettiness\npetty\npetunia\nphantom\nphobia\nphoenix\nphonebook\nphoney\nphonics\nphoniness\nphony\nphosphate\nphoto\nphrase\nphrasing\nplacard\nplacate\nplacidly\nplank\nplanner\nplant\nplasma\nplaster\nplastic\nplated\nplatform\nplating\nplatinum\nplatonic\nplatter\nplatypus\nplausible\nplausibly\nplayable\nplayback\nplayer\nplayful\nplaygroup\nplayhouse\nplaying\nplaylist\nplaymaker\nplaymate\nplayoff\nplaypen\nplayroom\nplayset\nplaything\nplaytime\nplaza\npleading\npleat\npledge\nplentiful\nplenty\nplethora\nplexiglas\npliable\nplod\nplop\nplot\nplow\nploy\npluck\nplug\nplunder\nplunging\nplural\nplus\nplutonium\nplywood\npoach\npod\npoem\npoet\npogo\npointed\npointer\npointing\npointless\npointy\npoise\npoison\npoker\npoking\npolar\npolice\npolicy\npolio\npolish\npolitely\npolka\npolo\npolyester\npolygon\npolygraph\npolymer\nponcho\npond\npony\npopcorn\npope\npoplar\npopper\npoppy\npopsicle\npopulace\npopular\npopulate\nporcupine\npork\nporous\nporridge\nportable\nportal\nportfolio\nporthole\nportion\nportly\nportside\nposer\nposh\nposing\npossible\npossibly\npossum\npostage\npostal\npostbox\npostcard\nposted\nposter\nposting\npostnasal\nposture\npostwar\npouch\npounce\npouncing\npound\npouring\npout\npowdered\npowdering\npowdery\npower\npowwow\npox\npraising\nprance\nprancing\npranker\nprankish\nprankster\nprayer\npraying\npreacher\npreaching\npreachy\npreamble\nprecinct\nprecise\nprecision\nprecook\nprecut\npredator\npredefine\npredict\npreface\nprefix\npreflight\npreformed\npregame\npregnancy\npregnant\npreheated\nprelaunch\nprelaw\nprelude\npremiere\npremises\npremium\nprenatal\npreoccupy\npreorder\nprepaid\nprepay\npreplan\npreppy\npreschool\nprescribe\npreseason\npreset\npreshow\npresident\npresoak\npress\npresume\npresuming\npreteen\npretended\npretender\npretense\npretext\npretty\npretzel\nprevail\nprevalent\nprevent\npreview\nprevious\nprewar\nprewashed\nprideful\npried\nprimal\nprimarily\nprimary\nprimate\nprimer\nprimp\nprincess\nprint\nprior\nprism\nprison\nprissy\npristine\nprivacy\nprivate\nprivatize\nprize\nproactive\nprobable\nprobably\nprobation\nprobe\nprobing\nprobiotic\nproblem\nprocedure\nprocess\nproclaim\nprocreate\nprocurer\nprodigal\nprodigy\nproduce\nproduct\nprofane\nprofanity\nprofessed\nprofessor\nprofile\nprofound\nprofusely\nprogeny\nprognosis\nprogram\nprogress\nprojector\nprologue\nprolonged\npromenade\nprominent\npromoter\npromotion\nprompter\npromptly\nprone\nprong\npronounce\npronto\nproofing\nproofread\nproofs\npropeller\nproperly\nproperty\nproponent\nproposal\npropose\nprops\nprorate\nprotector\nprotegee\nproton\nprototype\nprotozoan\nprotract\nprotrude\nproud\nprovable\nproved\nproven\nprovided\nprovider\nproviding\nprovince\nproving\nprovoke\nprovoking\nprovolone\nprowess\nprowler\nprowling\nproximity\nproxy\nprozac\nprude\nprudishly\nprune\npruning\npry\npsychic\npublic\npublisher\npucker\npueblo\npug\npull\npulmonary\npulp\npulsate\npulse\npulverize\npuma\npumice\npummel\npunch\npunctual\npunctuate\npunctured\npungent\npunisher\npunk\npupil\npuppet\npuppy\npurchase\npureblood\npurebred\npurely\npureness\npurgatory\npurge\npurging\npurifier\npurify\npurist\npuritan\npurity\npurple\npurplish\npurposely\npurr\npurse\npursuable\npursuant\npursuit\npurveyor\npushcart\npushchair\npusher\npushiness\npushing\npushover\npushpin\npushup\npushy\nputdown\nputt\npuzzle\npuzzling\npyramid\npyromania\npython\nquack\nquadrant\nquail\nquaintly\nquake\nquaking\nqualified\nqualifier\nqualify\nquality\nqualm\nquantum\nquarrel\nquarry\nquartered\nquarterly\nquarters\nquartet\nquench\nquery\nquicken\nquickly\nquickness\nquicksand\nquickstep\nquiet\nquill\nquilt\nquintet\nquintuple\nquirk\nquit\nquiver\nquizzical\nquotable\nquotation\nquote\nrabid\nrace\nracing\nracism\nrack\nracoon\nradar\nradial\nradiance\nradiantly\nradiated\nradiation\nradiator\nradio\nradish\nraffle\nraft\nrage\nragged\nraging\nragweed\nraider\nrailcar\nrailing\nrailroad\nrailway\nraisin\nrake\nraking\nrally\nramble\nrambling\nramp\nramrod\nranch\nrancidity\nrandom\nranged\nranger\nranging\nranked\nranking\nransack\nranting\nrants\nrare\nrarity\nrascal\nrash\nrasping\nravage\nraven\nravine\nraving\nravioli\nravishing\nreabsorb\nreach\nreacquire\nreaction\nreactive\nreactor\nreaffirm\nream\nreanalyze\nreappear\nreapply\nreappoint\nreapprove\nrearrange\nrearview\nreason\nreassign\nreassure\nreattach\nreawake\nrebalance\nrebate\nrebel\nrebirth\nreboot\nreborn\nrebound\nrebuff\nrebuild\nrebuilt\nreburial\nrebuttal\nrecall\nrecant\nrecapture\nrecast\nrecede\nrecent\nrecess\nrecharger\nrecipient\nrecital\nrecite\nreckless\nreclaim\nrecliner\nreclining\nrecluse\nreclusive\nrecognize\nrecoil\nrecollect\nrecolor\nreconcile\nreconfirm\nreconvene\nrecopy\nrecord\nrecount\nrecoup\nrecovery\nrecreate\nrectal\nrectangle\nrectified\nrectify\nrecycled\nrecycler\nrecycling\nreemerge\nreenact\nreenter\nreentry\nreexamine\nreferable\nreferee\nreference\nrefill\nrefinance\nrefined\nrefinery\nrefining\nrefinish\nreflected\nreflector\nreflex\nreflux\nrefocus\nrefold\nreforest\nreformat\nreformed\nreformer\nreformist\nrefract\nrefrain\nrefreeze\nrefresh\nrefried\nrefueling\nrefund\nrefurbish\nrefurnish\nrefusal\nrefuse\nrefusing\nrefutable\nrefute\nregain\nregalia\nregally\nreggae\nregime\nregion\nregister\nregistrar\nregistry\nregress\nregretful\nregroup\nregular\nregulate\nregulator\nrehab\nreheat\nrehire\nrehydrate\nreimburse\nreissue\nreiterate\nrejoice\nrejoicing\nrejoin\nrekindle\nrelapse\nrelapsing\nrelatable\nrelated\nrelation\nrelative\nrelax\nrelay\nrelearn\nrelease\nrelenting\nreliable\nreliably\nreliance\nreliant\nrelic\nrelieve\nrelieving\nrelight\nrelish\nrelive\nreload\nrelocate\nrelock\nreluctant\nrely\nremake\nremark\nremarry\nrematch\nremedial\nremedy\nremember\nreminder\nremindful\nremission\nremix\nremnant\nremodeler\nremold\nremorse\nremote\nremovable\nremoval\nremoved\nremover\nremoving\nrename\nrenderer\nrendering\nrendition\nrenegade\nrenewable\nrenewably\nrenewal\nrenewed\nrenounce\nrenovate\nrenovator\nrentable\nrental\nrented\nrenter\nreoccupy\nreoccur\nreopen\nreorder\nrepackage\nrepacking\nrepaint\nrepair\nrepave\nrepaying\nrepayment\nrepeal\nrepeated\nrepeater\nrepent\nrephrase\nreplace\nreplay\nreplica\nreply\nreporter\nrepose\nrepossess\nrepost\nrepressed\nreprimand\nreprint\nreprise\nreproach\nreprocess\nreproduce\nreprogram\nreps\nreptile\nreptilian\nrepugnant\nrepulsion\nrepulsive\nrepurpose\nreputable\nreputably\nrequest\nrequire\nrequisite\nreroute\nrerun\nresale\nresample\nrescuer\nreseal\nresearch\nreselect\nreseller\nresemble\nresend\nresent\nreset\nreshape\nreshoot\nreshuffle\nresidence\nresidency\nresident\nresidual\nresidue\nresigned\nresilient\nresistant\nresisting\nresize\nresolute\nresolved\nresonant\nresonate\nresort\nresource\nrespect\nresubmit\nresult\nresume\nresupply\nresurface\nresurrect\nretail\nretainer\nretaining\nretake\nretaliate\nretention\nrethink\nretinal\nretired\nretiree\nretiring\nretold\nretool\nretorted\nretouch\nretrace\nretract\nretrain\nretread\nretreat\nretrial\nretrieval\nretriever\nretry\nreturn\nretying\nretype\nreunion\nreunite\nreusable\nreuse\nreveal\nreveler\nrevenge\nrevenue\nreverb\nrevered\nreverence\nreverend\nreversal\nreverse\nreversing\nreversion\nrevert\nrevisable\nrevise\nrevision\nrevisit\nrevivable\nrevival\nreviver\nreviving\nrevocable\nrevoke\nrevolt\nrevolver\nrevolving\nreward\nrewash\nrewind\nrewire\nreword\nrework\nrewrap\nrewrite\nrhyme\nribbon\nribcage\nrice\nriches\nrichly\nrichness\nrickety\nricotta\nriddance\nridden\nride\nriding\nrifling\nrift\nrigging\nrigid\nrigor\nrimless\nrimmed\nrind\nrink\nrinse\nrinsing\nriot\nripcord\nripeness\nripening\nripping\nripple\nrippling\nriptide\nrise\nrising\nrisk\nrisotto\nritalin\nritzy\nrival\nriverbank\nriverbed\nriverboat\nriverside\nriveter\nriveting\nroamer\nroaming\nroast\nrobbing\nrobe\nrobin\nrobotics\nrobust\nrockband\nrocker\nrocket\nrockfish\nrockiness\nrocking\nrocklike\nrockslide\nrockstar\nrocky\nrogue\nroman\nromp\nrope\nroping\nroster\nrosy\nrotten\nrotting\nrotunda\nroulette\nrounding\nroundish\nroundness\nroundup\nroundworm\nroutine\nrouting\nrover\nroving\nroyal\nrubbed\nrubber\nrubbing\nrubble\nrubdown\nruby\nruckus\nrudder\nrug\nruined\nrule\nrumble\nrumbling\nrummage\nrumor\nrunaround\nrundown\nrunner\nrunning\nrunny\nrunt\nrunway\nrupture\nrural\nruse\nrush\nrust\nrut\nsabbath\nsabotage\nsacrament\nsacred\nsacrifice\nsadden\nsaddlebag\nsaddled\nsaddling\nsadly\nsadness\nsafari\nsafeguard\nsafehouse\nsafely\nsafeness\nsaffron\nsaga\nsage\nsagging\nsaggy\nsaid\nsaint\nsake\nsalad\nsalami\nsalaried\nsalary\nsaline\nsalon\nsaloon\nsalsa\nsalt\nsalutary\nsalute\nsalvage\nsalvaging\nsalvation\nsame\nsample\nsampling\nsanction\nsanctity\nsanctuary\nsandal\nsandbag\nsandbank\nsandbar\nsandblast\nsandbox\nsanded\nsandfish\nsanding\nsandlot\nsandpaper\nsandpit\nsandstone\nsandstorm\nsandworm\nsandy\nsanitary\nsanitizer\nsank\nsanta\nsapling\nsappiness\nsappy\nsarcasm\nsarcastic\nsardine\nsash\nsasquatch\nsassy\nsatchel\nsatiable\nsatin\nsatirical\nsatisfied\nsatisfy\nsaturate\nsaturday\nsauciness\nsaucy\nsauna\nsavage\nsavanna\nsaved\nsavings\nsavior\nsavor\nsaxophone\nsay\nscabbed\nscabby\nscalded\nscalding\nscale\nscaling\nscallion\nscallop\nscalping\nscam\nscandal\nscanner\nscanning\nscant\nscapegoat\nscarce\nscarcity\nscarecrow\nscared\nscarf\nscarily\nscariness\nscarring\nscary\nscavenger\nscenic\nschedule\nschematic\nscheme\nscheming\nschilling\nschnapps\nscholar\nscience\nscientist\nscion\nscoff\nscolding\nscone\nscoop\nscooter\nscope\nscorch\nscorebook\nscorecard\nscored\nscoreless\nscorer\nscoring\nscorn\nscorpion\nscotch\nscoundrel\nscoured\nscouring\nscouting\nscouts\nscowling\nscrabble\nscraggly\nscrambled\nscrambler\nscrap\nscratch\nscrawny\nscreen\nscribble\nscribe\nscribing\nscrimmage\nscript\nscroll\nscrooge\nscrounger\nscrubbed\nscrubber\nscruffy\nscrunch\nscrutiny\nscuba\nscuff\nsculptor\nsculpture\nscurvy\nscuttle\nsecluded\nsecluding\nseclusion\nsecond\nsecrecy\nsecret\nsectional\nsector\nsecular\nsecurely\nsecurity\nsedan\nsedate\nsedation\nsedative\nsediment\nseduce\nseducing\nsegment\nseismic\nseizing\nseldom\nselected\nselection\nselective\nselector\nself\nseltzer\nsemantic\nsemester\nsemicolon\nsemifinal\nseminar\nsemisoft\nsemisweet\nsenate\nsenator\nsend\nsenior\nsenorita\nsensation\nsensitive\nsensitize\nsensually\nsensuous\nsepia\nseptember\nseptic\nseptum\nsequel\nsequence\nsequester\nseries\nsermon\nserotonin\nserpent\nserrated\nserve\nservice\nserving\nsesame\nsessions\nsetback\nsetting\nsettle\nsettling\nsetup\nsevenfold\nseventeen\nseventh\nseventy\nseverity\nshabby\nshack\nshaded\nshadily\nshadiness\nshading\nshadow\nshady\nshaft\nshakable\nshakily\nshakiness\nshaking\nshaky\nshale\nshallot\nshallow\nshame\nshampoo\nshamrock\nshank\nshanty\nshape\nshaping\nshare\nsharpener\nsharper\nsharpie\nsharply\nsharpness\nshawl\nsheath\nshed\nsheep\nsheet\nshelf\nshell\nshelter\nshelve\nshelving\nsherry\nshield\nshifter\nshifting\nshiftless\nshifty\nshimmer\nshimmy\nshindig\nshine\nshingle\nshininess\nshining\nshiny\nship\nshirt\nshivering\nshock\nshone\nshoplift\nshopper\nshopping\nshoptalk\nshore\nshortage\nshortcake\nshortcut\nshorten\nshorter\nshorthand\nshortlist\nshortly\nshortness\nshorts\nshortwave\nshorty\nshout\nshove\nshowbiz\nshowcase\nshowdown\nshower\nshowgirl\nshowing\nshowman\nshown\nshowoff\nshowpiece\nshowplace\nshowroom\nshowy\nshrank\nshrapnel\nshredder\nshredding\nshrewdly\nshriek\nshrill\nshrimp\nshrine\nshrink\nshrivel\nshrouded\nshrubbery\nshrubs\nshrug\nshrunk\nshucking\nshudder\nshuffle\nshuffling\nshun\nshush\nshut\nshy\nsiamese\nsiberian\nsibling\nsiding\nsierra\nsiesta\nsift\nsighing\nsilenced\nsilencer\nsilent\nsilica\nsilicon\nsilk\nsilliness\nsilly\nsilo\nsilt\nsilver\nsimilarly\nsimile\nsimmering\nsimple\nsimplify\nsimply\nsincere\nsincerity\nsinger\nsinging\nsingle\nsingular\nsinister\nsinless\nsinner\nsinuous\nsip\nsiren\nsister\nsitcom\nsitter\nsitting\nsituated\nsituation\nsixfold\nsixteen\nsixth\nsixties\nsixtieth\nsixtyfold\nsizable\nsizably\nsize\nsizing\nsizzle\nsizzling\nskater\nskating\nskedaddle\nskeletal\nskeleton\nskeptic\nsketch\nskewed\nskewer\nskid\nskied\nskier\nskies\nskiing\nskilled\nskillet\nskillful\nskimmed\nskimmer\nskimming\nskimpily\nskincare\nskinhead\nskinless\nskinning\nskinny\nskintight\nskipper\nskipping\nskirmish\nskirt\nskittle\nskydiver\nskylight\nskyline\nskype\nskyrocket\nskyward\nslab\nslacked\nslacker\nslacking\nslackness\nslacks\nslain\nslam\nslander\nslang\nslapping\nslapstick\nslashed\nslashing\nslate\nslather\nslaw\nsled\nsleek\nsleep\nsleet\nsleeve\nslept\nsliceable\nsliced\nslicer\nslicing\nslick\nslider\nslideshow\nsliding\nslighted\nslighting\nslightly\nslimness\nslimy\nslinging\nslingshot\nslinky\nslip\nslit\nsliver\nslobbery\nslogan\nsloped\nsloping\nsloppily\nsloppy\nslot\nslouching\nslouchy\nsludge\nslug\nslum\nslurp\nslush\nsly\nsmall\nsmartly\nsmartness\nsmasher\nsmashing\nsmashup\nsmell\nsmelting\nsmile\nsmilingly\nsmirk\nsmite\nsmith\nsmitten\nsmock\nsmog\nsmoked\nsmokeless\nsmokiness\nsmoking\nsmoky\nsmolder\nsmooth\nsmother\nsmudge\nsmudgy\nsmuggler\nsmuggling\nsmugly\nsmugness\nsnack\nsnagged\nsnaking\nsnap\nsnare\nsnarl\nsnazzy\nsneak\nsneer\nsneeze\nsneezing\nsnide\nsniff\nsnippet\nsnipping\nsnitch\nsnooper\nsnooze\nsnore\nsnoring\nsnorkel\nsnort\nsnout\nsnowbird\nsnowboard\nsnowbound\nsnowcap\nsnowdrift\nsnowdrop\nsnowfall\nsnowfield\nsnowflake\nsnowiness\nsnowless\nsnowman\nsnowplow\nsnowshoe\nsnowstorm\nsnowsuit\nsnowy\nsnub\nsnuff\nsnuggle\nsnugly\nsnugness\nspeak\nspearfish\nspearhead\nspearman\nspearmint\nspecies\nspecimen\nspecked\nspeckled\nspecks\nspectacle\nspectator\nspectrum\nspeculate\nspeech\nspeed\nspellbind\nspeller\nspelling\nspendable\nspender\nspending\nspent\nspew\nsphere\nspherical\nsphinx\nspider\nspied\nspiffy\nspill\nspilt\nspinach\nspinal\nspindle\nspinner\nspinning\nspinout\nspinster\nspiny\nspiral\nspirited\nspiritism\nspirits\nspiritual\nsplashed\nsplashing\nsplashy\nsplatter\nspleen\nsplendid\nsplendor\nsplice\nsplicing\nsplinter\nsplotchy\nsplurge\nspoilage\nspoiled\nspoiler\nspoiling\nspoils\nspoken\nspokesman\nsponge\nspongy\nsponsor\nspoof\nspookily\nspooky\nspool\nspoon\nspore\nsporting\nsports\nsporty\nspotless\nspotlight\nspotted\nspotter\nspotting\nspotty\nspousal\nspouse\nspout\nsprain\nsprang\nsprawl\nspray\nspree\nsprig\nspring\nsprinkled\nsprinkler\nsprint\nsprite\nsprout\nspruce\nsprung\nspry\nspud\nspur\nsputter\nspyglass\nsquabble\nsquad\nsquall\nsquander\nsquash\nsquatted\nsquatter\nsquatting\nsqueak\nsquealer\nsquealing\nsqueamish\nsqueegee\nsqueeze\nsqueezing\nsquid\nsquiggle\nsquiggly\nsquint\nsquire\nsquirt\nsquishier\nsquishy\nstability\nstabilize\nstable\nstack\nstadium\nstaff\nstage\nstaging\nstagnant\nstagnate\nstainable\nstained\nstaining\nstainless\nstalemate\nstaleness\nstalling\nstallion\nstamina\nstammer\nstamp\nstand\nstank\nstaple\nstapling\nstarboard\nstarch\nstardom\nstardust\nstarfish\nstargazer\nstaring\nstark\nstarless\nstarlet\nstarlight\nstarlit\nstarring\nstarry\nstarship\nstarter\nstarting\nstartle\nstartling\nstartup\nstarved\nstarving\nstash\nstate\nstatic\nstatistic\nstatue\nstature\nstatus\nstatute\nstatutory\nstaunch\nstays\nsteadfast\nsteadier\nsteadily\nsteadying\nsteam\nsteed\nsteep\nsteerable\nsteering\nsteersman\nstegosaur\nstellar\nstem\nstench\nstencil\nstep\nstereo\nsterile\nsterility\nsterilize\nsterling\nsternness\nsternum\nstew\nstick\nstiffen\nstiffly\nstiffness\nstifle\nstifling\nstillness\nstilt\nstimulant\nstimulate\nstimuli\nstimulus\nstinger\nstingily\nstinging\nstingray\nstingy\nstinking\nstinky\nstipend\nstipulate\nstir\nstitch\nstock\nstoic\nstoke\nstole\nstomp\nstonewall\nstoneware\nstonework\nstoning\nstony\nstood\nstooge\nstool\nstoop\nstoplight\nstoppable\nstoppage\nstopped\nstopper\nstopping\nstopwatch\nstorable\nstorage\nstoreroom\nstorewide\nstorm\nstout\nstove\nstowaway\nstowing\nstraddle\nstraggler\nstrained\nstrainer\nstraining\nstrangely\nstranger\nstrangle\nstrategic\nstrategy\nstratus\nstraw\nstray\nstreak\nstream\nstreet\nstrength\nstrenuous\nstrep\nstress\nstretch\nstrewn\nstricken\nstrict\nstride\nstrife\nstrike\nstriking\nstrive\nstriving\nstrobe\nstrode\nstroller\nstrongbox\nstrongly\nstrongman\nstruck\nstructure\nstrudel\nstruggle\nstrum\nstrung\nstrut\nstubbed\nstubble\nstubbly\nstubborn\nstucco\nstuck\nstudent\nstudied\nstudio\nstudy\nstuffed\nstuffing\nstuffy\nstumble\nstumbling\nstump\nstung\nstunned\nstunner\nstunning\nstunt\nstupor\nsturdily\nsturdy\nstyling\nstylishly\nstylist\nstylized\nstylus\nsuave\nsubarctic\nsubatomic\nsubdivide\nsubdued\nsubduing\nsubfloor\nsubgroup\nsubheader\nsubject\nsublease\nsublet\nsublevel\nsublime\nsubmarine\nsubmerge\nsubmersed\nsubmitter\nsubpanel\nsubpar\nsubplot\nsubprime\nsubscribe\nsubscript\nsubsector\nsubside\nsubsiding\nsubsidize\nsubsidy\nsubsoil\nsubsonic\nsubstance\nsubsystem\nsubtext\nsubtitle\nsubtly\nsubtotal\nsubtract\nsubtype\nsuburb\nsubway\nsubwoofer\nsubzero\nsucculent\nsuch\nsuction\nsudden\nsudoku\nsuds\nsufferer\nsuffering\nsuffice\nsuffix\nsuffocate\nsuffrage\nsugar\nsuggest\nsuing\nsuitable\nsuitably\nsuitcase\nsuitor\nsulfate\nsulfide\nsulfite\nsulfur\nsulk\nsullen\nsulphate\nsulphuric\nsultry\nsuperbowl\nsuperglue\nsuperhero\nsuperior\nsuperjet\nsuperman\nsupermom\nsupernova\nsupervise\nsupper\nsupplier\nsupply\nsupport\nsupremacy\nsupreme\nsurcharge\nsurely\nsureness\nsurface\nsurfacing\nsurfboard\nsurfer\nsurgery\nsurgical\nsurging\nsurname\nsurpass\nsurplus\nsurprise\nsurreal\nsurrender\nsurrogate\nsurround\nsurvey\nsurvival\nsurvive\nsurviving\nsurvivor\nsushi\nsuspect\nsuspend\nsuspense\nsustained\nsustainer\nswab\nswaddling\nswagger\nswampland\nswan\nswapping\nswarm\nsway\nswear\nsweat\nsweep\nswell\nswept\nswerve\nswifter\nswiftly\nswiftness\nswimmable\nswimmer\nswimming\nswimsuit\nswimwear\nswinger\nswinging\nswipe\nswirl\nswitch\nswivel\nswizzle\nswooned\nswoop\nswoosh\nswore\nsworn\nswung\nsycamore\nsympathy\nsymphonic\nsymphony\nsymptom\nsynapse\nsyndrome\nsynergy\nsynopses\nsynopsis\nsynthesis\nsynthetic\nsyrup\nsystem\ntshirt\ntabasco\ntabby\ntableful\ntables\ntablet\ntableware\ntabloid\ntackiness\ntacking\ntackle\ntackling\ntacky\ntaco\ntactful\ntactical\ntactics\ntactile\ntactless\ntadpole\ntaekwondo\ntag\ntainted\ntake\ntaking\ntalcum\ntalisman\ntall\ntalon\ntamale\ntameness\ntamer\ntamper\ntank\ntanned\ntannery\ntanning\ntantrum\ntapeless\ntapered\ntapering\ntapestry\ntapioca\ntapping\ntaps\ntarantula\ntarget\ntarmac\ntarnish\ntarot\ntartar\ntartly\ntartness\ntask\ntassel\ntaste\ntastiness\ntasting\ntasty\ntattered\ntattle\ntattling\ntattoo\ntaunt\ntavern\nthank\nthat\nthaw\ntheater\ntheatrics\nthee\ntheft\ntheme\ntheology\ntheorize\nthermal\nthermos\nthesaurus\nthese\nthesis\nthespian\nthicken\nthicket\nthickness\nthieving\nthievish\nthigh\nthimble\nthing\nthink\nthinly\nthinner\nthinness\nthinning\nthirstily\nthirsting\nthirsty\nthirteen\nthirty\nthong\nthorn\nthose\nthousand\nthrash\nthread\nthreaten\nthreefold\nthrift\nthrill\nthrive\nthriving\nthroat\nthrobbing\nthrong\nthrottle\nthrowaway\nthrowback\nthrower\nthrowing\nthud\nthumb\nthumping\nthursday\nthus\nthwarting\nthyself\ntiara\ntibia\ntidal\ntidbit\ntidiness\ntidings\ntidy\ntiger\ntighten\ntightly\ntightness\ntightrope\ntightwad\ntigress\ntile\ntiling\ntill\ntilt\ntimid\ntiming\ntimothy\ntinderbox\ntinfoil\ntingle\ntingling\ntingly\ntinker\ntinkling\ntinsel\ntinsmith\ntint\ntinwork\ntiny\ntipoff\ntipped\ntipper\ntipping\ntiptoeing\ntiptop\ntiring\ntissue\ntrace\ntracing\ntrack\ntraction\ntractor\ntrade\ntrading\ntradition\ntraffic\ntragedy\ntrailing\ntrailside\ntrain\ntraitor\ntrance\ntranquil\ntransfer\ntransform\ntranslate\ntranspire\ntransport\ntranspose\ntrapdoor\ntrapeze\ntrapezoid\ntrapped\ntrapper\ntrapping\ntraps\ntrash\ntravel\ntraverse\ntravesty\ntray\ntreachery\ntreading\ntreadmill\ntreason\ntreat\ntreble\ntree\ntrekker\ntremble\ntrembling\ntremor\ntrench\ntrend\ntrespass\ntriage\ntrial\ntriangle\ntribesman\ntribunal\ntribune\ntributary\ntribute\ntriceps\ntrickery\ntrickily\ntricking\ntrickle\ntrickster\ntricky\ntricolor\ntricycle\ntrident\ntried\ntrifle\ntrifocals\ntrillion\ntrilogy\ntrimester\ntrimmer\ntrimming\ntrimness\ntrinity\ntrio\ntripod\ntripping\ntriumph\ntrivial\ntrodden\ntrolling\ntrombone\ntrophy\ntropical\ntropics\ntrouble\ntroubling\ntrough\ntrousers\ntrout\ntrowel\ntruce\ntruck\ntruffle\ntrump\ntrunks\ntrustable\ntrustee\ntrustful\ntrusting\ntrustless\ntruth\ntry\ntubby\ntubeless\ntubular\ntucking\ntuesday\ntug\ntuition\ntulip\ntumble\ntumbling\ntummy\nturban\nturbine\nturbofan\nturbojet\nturbulent\nturf\nturkey\nturmoil\nturret\nturtle\ntusk\ntutor\ntutu\ntux\ntweak\ntweed\ntweet\ntweezers\ntwelve\ntwentieth\ntwenty\ntwerp\ntwice\ntwiddle\ntwiddling\ntwig\ntwilight\ntwine\ntwins\ntwirl\ntwistable\ntwisted\ntwister\ntwisting\ntwisty\ntwitch\ntwitter\ntycoon\ntying\ntyke\nudder\nultimate\nultimatum\nultra\numbilical\numbrella\numpire\nunabashed\nunable\nunadorned\nunadvised\nunafraid\nunaired\nunaligned\nunaltered\nunarmored\nunashamed\nunaudited\nunawake\nunaware\nunbaked\nunbalance\nunbeaten\nunbend\nunbent\nunbiased\nunbitten\nunblended\nunblessed\nunblock\nunbolted\nunbounded\nunboxed\nunbraided\nunbridle\nunbroken\nunbuckled\nunbundle\nunburned\nunbutton\nuncanny\nuncapped\nuncaring\nuncertain\nunchain\nunchanged\nuncharted\nuncheck\nuncivil\nunclad\nunclaimed\nunclamped\nunclasp\nuncle\nunclip\nuncloak\nunclog\nunclothed\nuncoated\nuncoiled\nuncolored\nuncombed\nuncommon\nuncooked\nuncork\nuncorrupt\nuncounted\nuncouple\nuncouth\nuncover\nuncross\nuncrown\nuncrushed\nuncured\nuncurious\nuncurled\nuncut\nundamaged\nundated\nundaunted\nundead\nundecided\nundefined\nunderage\nunderarm\nundercoat\nundercook\nundercut\nunderdog\nunderdone\nunderfed\nunderfeed\nunderfoot\nundergo\nundergrad\nunderhand\nunderline\nunderling\nundermine\nundermost\nunderpaid\nunderpass\nunderpay\nunderrate\nundertake\nundertone\nundertook\nundertow\nunderuse\nunderwear\nunderwent\nunderwire\nundesired\nundiluted\nundivided\nundocked\nundoing\nundone\nundrafted\nundress\nundrilled\nundusted\nundying\nunearned\nunearth\nunease\nuneasily\nuneasy\nuneatable\nuneaten\nunedited\nunelected\nunending\nunengaged\nunenvied\nunequal\nunethical\nuneven\nunexpired\nunexposed\nunfailing\nunfair\nunfasten\nunfazed\nunfeeling\nunfiled\nunfilled\nunfitted\nunfitting\nunfixable\nunfixed\nunflawed\nunfocused\nunfold\nunfounded\nunframed\nunfreeze\nunfrosted\nunfrozen\nunfunded\nunglazed\nungloved\nunglue\nungodly\nungraded\nungreased\nunguarded\nunguided\nunhappily\nunhappy\nunharmed\nunhealthy\nunheard\nunhearing\nunheated\nunhelpful\nunhidden\nunhinge\nunhitched\nunholy\nunhook\nunicorn\nunicycle\nunified\nunifier\nuniformed\nuniformly\nunify\nunimpeded\nuninjured\nuninstall\nuninsured\nuninvited\nunion\nuniquely\nunisexual\nunison\nunissued\nunit\nuniversal\nuniverse\nunjustly\nunkempt\nunkind\nunknotted\nunknowing\nunknown\nunlaced\nunlatch\nunlawful\nunleaded\nunlearned\nunleash\nunless\nunleveled\nunlighted\nunlikable\nunlimited\nunlined\nunlinked\nunlisted\nunlit\nunlivable\nunloaded\nunloader\nunlocked\nunlocking\nunlovable\nunloved\nunlovely\nunloving\nunluckily\nunlucky\nunmade\nunmanaged\nunmanned\nunmapped\nunmarked\nunmasked\nunmasking\nunmatched\nunmindful\nunmixable\nunmixed\nunmolded\nunmoral\nunmovable\nunmoved\nunmoving\nunnamable\nunnamed\nunnatural\nunneeded\nunnerve\nunnerving\nunnoticed\nunopened\nunopposed\nunpack\nunpadded\nunpaid\nunpainted\nunpaired\nunpaved\nunpeeled\nunpicked\nunpiloted\nunpinned\nunplanned\nunplanted\nunpleased\nunpledged\nunplowed\nunplug\nunpopular\nunproven\nunquote\nunranked\nunrated\nunraveled\nunreached\nunread\nunreal\nunreeling\nunrefined\nunrelated\nunrented\nunrest\nunretired\nunrevised\nunrigged\nunripe\nunrivaled\nunroasted\nunrobed\nunroll\nunruffled\nunruly\nunrushed\nunsaddle\nunsafe\nunsaid\nunsalted\nunsaved\nunsavory\nunscathed\nunscented\nunscrew\nunsealed\nunseated\nunsecured\nunseeing\nunseemly\nunseen\nunselect\nunselfish\nunsent\nunsettled\nunshackle\nunshaken\nunshaved\nunshaven\nunsheathe\nunshipped\nunsightly\nunsigned\nunskilled\nunsliced\nunsmooth\nunsnap\nunsocial\nunsoiled\nunsold\nunsolved\nunsorted\nunspoiled\nunspoken\nunstable\nunstaffed\nunstamped\nunsteady\nunsterile\nunstirred\nunstitch\nunstopped\nunstuck\nunstuffed\nunstylish\nunsubtle\nunsubtly\nunsuited\nunsure\nunsworn\nuntagged\nuntainted\nuntaken\nuntamed\nuntangled\nuntapped\nuntaxed\nunthawed\nunthread\nuntidy\nuntie\nuntil\nuntimed\nuntimely\nuntitled\nuntoasted\nuntold\nuntouched\nuntracked\nuntrained\nuntreated\nuntried\nuntrimmed\nuntrue\nuntruth\nunturned\nuntwist\nuntying\nunusable\nunused\nunusual\nunvalued\nunvaried\nunvarying\nunveiled\nunveiling\nunvented\nunviable\nunvisited\nunvocal\nunwanted\nunwarlike\nunwary\nunwashed\nunwatched\nunweave\nunwed\nunwelcome\nunwell\nunwieldy\nunwilling\nunwind\nunwired\nunwitting\nunwomanly\nunworldly\nunworn\nunworried\nunworthy\nunwound\nunwoven\nunwrapped\nunwritten\nunzip\nupbeat\nupchuck\nupcoming\nupcountry\nupdate\nupfront\nupgrade\nupheaval\nupheld\nuphill\nuphold\nuplifted\nuplifting\nupload\nupon\nupper\nupright\nuprising\nupriver\nuproar\nuproot\nupscale\nupside\nupstage\nupstairs\nupstart\nupstate\nupstream\nupstroke\nupswing\nuptake\nuptight\nuptown\nupturned\nupward\nupwind\nuranium\nurban\nurchin\nurethane\nurgency\nurgent\nurging\nurologist\nurology\nusable\nusage\nuseable\nused\nuselessly\nuser\nusher\nusual\nutensil\nutility\nutilize\nutmost\nutopia\nutter\nvacancy\nvacant\nvacate\nvacation\nvagabond\nvagrancy\nvagrantly\nvaguely\nvagueness\nvaliant\nvalid\nvalium\nvalley\nvaluables\nvalue\nvanilla\nvanish\nvanity\nvanquish\nvantage\nvaporizer\nvariable\nvariably\nvaried\nvariety\nvarious\nvarmint\nvarnish\nvarsity\nvarying\nvascular\nvaseline\nvastly\nvastness\nveal\nvegan\nveggie\nvehicular\nvelcro\nvelocity\nvelvet\nvendetta\nvending\nvendor\nveneering\nvengeful\nvenomous\nventricle\nventure\nvenue\nvenus\nverbalize\nverbally\nverbose\nverdict\nverify\nverse\nversion\nversus\nvertebrae\nvertical\nvertigo\nvery\nvessel\nvest\nveteran\nveto\nvexingly\nviability\nviable\nvibes\nvice\nvicinity\nvictory\nvideo\nviewable\nviewer\nviewing\nviewless\nviewpoint\nvigorous\nvillage\nvillain\nvindicate\nvineyard\nvintage\nviolate\nviolation\nviolator\nviolet\nviolin\nviper\nviral\nvirtual\nvirtuous\nvirus\nvisa\nviscosity\nviscous\nviselike\nvisible\nvisibly\nvision\nvisiting\nvisitor\nvisor\nvista\nvitality\nvitalize\nvitally\nvitamins\nvivacious\nvividly\nvividness\nvixen\nvocalist\nvocalize\nvocally\nvocation\nvoice\nvoicing\nvoid\nvolatile\nvolley\nvoltage\nvolumes\nvoter\nvoting\nvoucher\nvowed\nvowel\nvoyage\nwackiness\nwad\nwafer\nwaffle\nwaged\nwager\nwages\nwaggle\nwagon\nwake\nwaking\nwalk\nwalmart\nwalnut\nwalrus\nwaltz\nwand\nwannabe\nwanted\nwanting\nwasabi\nwashable\nwashbasin\nwashboard\nwashbowl\nwashcloth\nwashday\nwashed\nwasher\nwashhouse\nwashing\nwashout\nwashroom\nwashstand\nwashtub\nwasp\nwasting\nwatch\nwater\nwaviness\nwaving\nwavy\nwhacking\nwhacky\nwham\nwharf\nwheat\nwhenever\nwhiff\nwhimsical\nwhinny\nwhiny\nwhisking\nwhoever\nwhole\nwhomever\nwhoopee\nwhooping\nwhoops\nwhy\nwick\nwidely\nwiden\nwidget\nwidow\nwidth\nwieldable\nwielder\nwife\nwifi\nwikipedia\nwildcard\nwildcat\nwilder\nwildfire\nwildfowl\nwildland\nwildlife\nwildly\nwildness\nwilled\nwillfully\nwilling\nwillow\nwillpower\nwilt\nwimp\nwince\nwincing\nwind\nwing\nwinking\nwinner\nwinnings\nwinter\nwipe\nwired\nwireless\nwiring\nwiry\nwisdom\nwise\nwish\nwisplike\nwispy\nwistful\nwizard\nwobble\nwobbling\nwobbly\nwok\nwolf\nwolverine\nwomanhood\nwomankind\nwomanless\nwomanlike\nwomanly\nwomb\nwoof\nwooing\nwool\nwoozy\nword\nwork\nworried\nworrier\nworrisome\nworry\nworsening\nworshiper\nworst\nwound\nwoven\nwow\nwrangle\nwrath\nwreath\nwreckage\nwrecker\nwrecking\nwrench\nwriggle\nwriggly\nwrinkle\nwrinkly\nwrist\nwriting\nwritten\nwrongdoer\nwronged\nwrongful\nwrongly\nwrongness\nwrought\nxbox\nxerox\nyahoo\nyam\nyanking\nyapping\nyard\nyarn\nyeah\nyearbook\nyearling\nyearly\nyearning\nyeast\nyelling\nyelp\nyen\nyesterday\nyiddish\nyield\nyin\nyippee\nyolk\nyodel\nyoga\nyogurt\nyonder\nyoyo\nyummy\nzap\nzealous\nzebra\nzen\nzeppelin\nzero\nzestfully\nzesty\nzigzagged\nzipfile\nzipping\nzippy\nzips\nzit\nzodiac\nzombie\nzone\nzoning\nzookeeper\nzoologist\nzoology\nzoom\n";

// app/web/js/mailbox-core.js
var CODENAME_WORDS = 7;
var LIST_SIZE = 7776;
var CHECK_WEIGHTS = Object.freeze([1, 5, 7, 11, 13, 17, 19]);
var GROUP_DIGITS = 4;
var KDF_PARAMS = Object.freeze({
  N: 2 ** 12,
  r: 8,
  p: 1,
  dkLen: 64,
  salt: "guwah.org/v1/mailbox"
});
var TOKEN_HASH_PREFIX = "guwah.org/v1/token";
var KINDS = Object.freeze(["X25519", "mlkem768x25519"]);
var SEPARATORS = /[\s\x1c-\x1f\x85\u2010-\u2015\u2212\ufe58\ufe63\uff0d\ufeff-]+/u;
var CodenameError = class extends Error {
  constructor(message, code) {
    super(message);
    this.name = "CodenameError";
    this.code = code;
  }
};
function asciiDigits(text) {
  return text.replace(
    /[\u0660-\u0669\u06f0-\u06f9]/gu,
    (d) => String((d.codePointAt(0) & 15) % 10)
  );
}
function checkIndex(secret) {
  let sum = 0;
  for (let i = 0; i < CODENAME_WORDS; i += 1) sum += CHECK_WEIGHTS[i] * secret[i];
  return sum % LIST_SIZE;
}
function parseWordlist(text) {
  const words = text.split("\n").filter((w) => w !== "");
  if (words.length !== 7776 || new Set(words).size !== 7776) {
    throw new Error("the codename word list must hold 7776 unique words");
  }
  for (const w of words) {
    if (!/^[a-z]+$/.test(w)) throw new Error("bad word in the codename word list");
  }
  return Object.freeze(words);
}
function makeMailboxApi(words) {
  const wordSet = new Set(words);
  const wordIndex = new Map(words.map((w, i) => [w, i]));
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
  function normalizeCodename2(input) {
    return parseCodename(input).map((i) => words[i]).join(" ");
  }
  function writtenIndices(input) {
    const secret = parseCodename(input);
    return [...secret, checkIndex(secret)];
  }
  function codenameWords2(input) {
    return writtenIndices(input).map((i) => words[i]).join(" ");
  }
  function codenameNumbers2(input) {
    return writtenIndices(input).map((i) => String(i).padStart(GROUP_DIGITS, "0")).join(" ");
  }
  function newCodename2() {
    const n = words.length;
    const limit = 65536 - 65536 % n;
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
  async function deriveMailbox2(codename, kind, { onProgress } = {}) {
    if (!KINDS.includes(kind)) {
      throw new Error(`unknown reply identity kind: ${String(kind)}`);
    }
    const normalized = normalizeCodename2(codename);
    const { N: N2, r, p, dkLen, salt } = KDF_PARAMS;
    const opts2 = { N: N2, r, p, dkLen, maxmem: 2 ** 26 };
    if (onProgress) opts2.onProgress = onProgress;
    const out = await scryptAsync(utf8ToBytes(normalized), utf8ToBytes(salt), opts2);
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
    normalizeCodename: normalizeCodename2,
    codenameWords: codenameWords2,
    codenameNumbers: codenameNumbers2,
    newCodename: newCodename2,
    deriveMailbox: deriveMailbox2
  });
}

// app/web/js/mailbox.js
var api = makeMailboxApi(parseWordlist(wordlist_default));
var WORDS = api.WORDS;
var normalizeCodename = api.normalizeCodename;
var newCodename = api.newCodename;
var codenameNumbers = api.codenameNumbers;
var codenameWords = api.codenameWords;
var deriveMailbox = api.deriveMailbox;
async function decryptReply(file, replyIdentity) {
  let data = file;
  if (typeof data === "string") data = armor_exports.decode(data);
  const d = new Decrypter();
  d.addIdentity(replyIdentity);
  return d.decrypt(data);
}

// app/web/js/encrypt-client.js
var nextId = 1;
function answer(m) {
  return {
    status: m.status,
    headers: { get: (name) => name.toLowerCase() === "upload-offset" ? m.offset : null },
    json: async () => ({ error: m.error })
  };
}
function encryptInWorker(worker, blob, recipients, options = {}) {
  const { onChunk, framing = "attachment", chunkSize: chunkSize2, window: window2 = 4, hash = true, remote = false } = options;
  const jsHash = options.jsHash === true;
  const id = nextId++;
  const puts = /* @__PURE__ */ new Map();
  let nextPut = 1;
  const handle = (m) => ({
    seq: m.seq,
    length: m.length,
    header: m.header,
    put: (url, headers, from) => new Promise((resolve, reject) => {
      const put = nextPut++;
      puts.set(put, { resolve, reject });
      worker.postMessage({ type: "put", id, seq: m.seq, put, url, headers, from });
    })
  });
  return new Promise((resolve, reject) => {
    const queue = [];
    let draining = false;
    let summary = null;
    let failed = false;
    const finish = (fn, value) => {
      worker.removeEventListener("message", listener);
      queue.length = 0;
      fn(value);
    };
    const fail = (err) => {
      if (failed) return;
      failed = true;
      worker.postMessage({ type: "cancel", id });
      finish(reject, err);
    };
    const drain = async () => {
      draining = true;
      while (queue.length > 0 && !failed) {
        const m = queue.shift();
        const chunk = remote ? handle(m) : new Uint8Array(m.data, 0, m.length);
        const progress = { plainDone: m.plainDone, plainTotal: m.plainTotal };
        try {
          await onChunk?.(chunk, m.seq, progress);
        } catch (err) {
          fail(err);
          break;
        }
        worker.postMessage({ type: "ack", id, seq: m.seq });
      }
      draining = false;
      if (summary && !failed && queue.length === 0) finish(resolve, summary);
    };
    const listener = (ev) => {
      const m = ev.data;
      if (!m || m.id !== id || failed) return;
      if (m.type === "chunk") {
        queue.push(m);
        if (!draining) drain();
      } else if (m.type === "put") {
        const p = puts.get(m.put);
        puts.delete(m.put);
        if (m.network) p?.reject(new TypeError("network error"));
        else p?.resolve(answer(m));
      } else if (m.type === "done") {
        summary = m;
        if (!draining && queue.length === 0) finish(resolve, m);
      } else if (m.type === "error") {
        failed = true;
        finish(reject, new Error(m.message));
      }
    };
    worker.addEventListener("message", listener);
    worker.postMessage({ type: "encrypt", id, blob, recipients, framing, chunkSize: chunkSize2, window: window2, hash, jsHash, remote });
  });
}

// app/web/js/padding.js
var MIN_PADDED = 256;
var FILL = Object.freeze({ attachment: 0, testimony: 32 });
function bitLength(n) {
  return n === 0 ? 0 : n.toString(2).length;
}
function padme(length) {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError("bad length");
  if (length <= MIN_PADDED) return MIN_PADDED;
  const e = bitLength(length) - 1;
  const s = bitLength(e);
  const unit = 2 ** (e - s);
  return Math.ceil(length / unit) * unit;
}

// app/web/js/upload-client.js
var TUS = "1.0.0";
var CHUNK = 4 << 20;
var WINDOW = 3;
var STREAM_CHUNK = 65536;
var MAX_TRIES = 10;
var sleep = (ms) => new Promise((r) => setTimeout(r, ms));
var Refused = class extends Error {
};
function ciphertextSize2(header, size) {
  const padded = padme(size);
  return header + 16 + padded + 16 * Math.max(1, Math.ceil(padded / STREAM_CHUNK));
}
async function errorOf(res, fallback) {
  try {
    const j = await res.json();
    if (j && typeof j.error === "string") return j.error;
  } catch {
  }
  return fallback;
}
function withLang(ctx, url) {
  return `${url}${url.includes("?") ? "&" : "?"}lang=${encodeURIComponent(ctx.lang)}`;
}
async function retrying(ctx, make) {
  let delay = 500;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await make();
      if (res.status >= 500 && res.status !== 507 || res.status === 429) {
        if (attempt >= MAX_TRIES) return res;
      } else {
        return res;
      }
    } catch {
      if (attempt >= MAX_TRIES) throw new Refused(ctx.s.network);
    }
    ctx.status(ctx.s.retrying);
    await sleep(delay);
    delay = Math.min(delay * 2, 15e3);
  }
}
var Upload = class {
  constructor(ctx, role, plainSize, onProgress) {
    this.ctx = ctx;
    this.role = role;
    this.plainSize = plainSize;
    this.onProgress = onProgress;
    this.url = null;
    this.id = null;
    this.offset = 0;
    this.logical = 0;
    this.length = 0;
  }
  headers(extra = {}) {
    return { "Tus-Resumable": TUS, ...extra };
  }
  /** Create the upload; `first` is the first chunk (its `header` is the age header's length). */
  async create(first) {
    this.length = ciphertextSize2(first.header, this.plainSize);
    const desk = btoa(String.fromCharCode(...new TextEncoder().encode(this.ctx.desk)));
    const res = await retrying(
      this.ctx,
      () => fetch(withLang(this.ctx, "/api/uploads"), {
        method: "POST",
        headers: this.headers({
          "Upload-Length": String(this.length),
          "Upload-Metadata": `desk ${desk},role ${btoa(this.role)}`,
          "Guwah-Form-Token": this.ctx.csrf
        }),
        credentials: "omit",
        cache: "no-store"
      })
    );
    if (res.status !== 201) throw new Refused(await errorOf(res, this.ctx.s.failed));
    this.url = res.headers.get("Location");
    this.id = this.url.split("/").pop();
  }
  async head() {
    const res = await retrying(
      this.ctx,
      () => fetch(withLang(this.ctx, this.url), { method: "HEAD", headers: this.headers(), cache: "no-store" })
    );
    if (res.status !== 200) throw new Refused(this.ctx.s.gone);
    return Number(res.headers.get("Upload-Offset"));
  }
  /**
   * Send one ciphertext chunk (a handle from encryptInWorker with `remote: true`: the bytes
   * stay in the worker, which PATCHes them); resolves once the server has stored all of it.
   */
  async send(data) {
    if (this.url === null) await this.create(data);
    const start2 = this.logical;
    const end = start2 + data.length;
    this.logical = end;
    let failures = 0;
    let delay = 500;
    while (this.offset < end) {
      if (this.offset < start2) throw new Refused(this.ctx.s.gone);
      let res = null;
      try {
        res = await data.put(
          withLang(this.ctx, this.url),
          this.headers({
            "Upload-Offset": String(this.offset),
            "Content-Type": "application/offset+octet-stream"
          }),
          this.offset - start2
        );
      } catch {
        res = null;
      }
      if (res && res.status === 204) {
        this.offset = Number(res.headers.get("Upload-Offset"));
        failures = 0;
        delay = 500;
        this.onProgress(this.offset, this.length);
        continue;
      }
      if (res && ![409, 429, 503].includes(res.status) && res.status < 500) {
        throw new Refused(await errorOf(res, this.ctx.s.failed));
      }
      if (res && res.status === 507) throw new Refused(await errorOf(res, this.ctx.s.failed));
      if (++failures > MAX_TRIES) throw new Refused(this.ctx.s.network);
      this.ctx.status(this.ctx.s.retrying);
      if (!res || res.status !== 409) {
        await sleep(delay);
        delay = Math.min(delay * 2, 15e3);
      }
      this.offset = await this.head();
      this.onProgress(this.offset, this.length);
    }
  }
};
async function encryptAndUpload(ctx, blob, role, framing, onProgress = () => void 0) {
  const up = new Upload(ctx, role, blob.size, onProgress);
  const summary = await encryptInWorker(ctx.worker, blob, ctx.recipients, {
    framing,
    chunkSize: CHUNK,
    window: WINDOW,
    remote: true,
    // the ciphertext stays in the worker, which sends it (docs/browser-uploads.md)
    onChunk: async (data) => {
      await up.send(data);
    }
  });
  if (up.offset !== up.length || summary.ciphertextSize !== up.length) {
    throw new Refused(ctx.s.failed);
  }
  return { id: up.id, sha256: summary.sha256 };
}
async function commitSubmission(ctx, body) {
  const res = await retrying(
    ctx,
    () => fetch(withLang(ctx, "/api/submissions"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store"
    })
  );
  if (res.status !== 201) throw new Refused(await errorOf(res, ctx.s.failed));
  return res.json();
}

// app/web/js/return.js
var WORKER_URL = new URL("./worker.js", import.meta.url).href;
var form = document.getElementById("return-form");
var msgs = document.getElementById("return-js");
function msg(name) {
  return msgs?.dataset[name] ?? "";
}
function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}
function base64ToBytes(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
function hybridIdentity(x25519Identity) {
  const seed = bech32.decodeToBytes(x25519Identity.toLowerCase()).bytes;
  const identity = bech32.encodeFromBytes("AGE-SECRET-KEY-PQ-", seed).toUpperCase();
  seed.fill(0);
  return identity;
}
async function openReply(bytes, identities) {
  for (const identity of identities()) {
    try {
      const plain = await decryptReply(bytes, identity);
      const doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plain).trimEnd());
      plain.fill(0);
      if (doc && doc.format === "guwah-reply/1" && typeof doc.text === "string") return doc;
      return null;
    } catch {
    }
  }
  return null;
}
function showError(text) {
  let p = document.getElementById("return-error");
  if (!p) {
    p = el("p", { id: "return-error", class: "error", role: "alert" });
    form.after(p);
  }
  p.textContent = text;
}
function renderReplies(section, replies) {
  section.append(el("h2", {}, msg("msgReplies")));
  if (replies.length === 0) {
    section.append(el("p", { id: "no-replies" }, msg("msgNone")));
    return;
  }
  const list = el("ol", { class: "replies", id: "replies" });
  for (const reply of replies) {
    const li = el("li", { class: "reply" });
    li.append(el("p", { class: "day" }, msg("msgReceived").replace("{day}", reply.day)));
    if (reply.text === null) {
      li.append(el("p", { class: "reply-text unreadable", dir: "auto" }, msg("msgUnreadable")));
    } else {
      const div = el("div", { class: "reply-text", dir: "auto" });
      reply.text.split("\n").forEach((line, i) => {
        if (i > 0) div.append(el("br"));
        div.append(document.createTextNode(line));
      });
      li.append(div);
    }
    list.append(li);
  }
  section.append(list);
}
function fallbackFollowUp(section, onFollowUp) {
  section.append(el("p", {}, msg("msgFollowUpNote")));
  const button = el("button", { type: "button", id: "follow-up-open" }, msg("msgFollowUpButton"));
  button.addEventListener("click", onFollowUp);
  section.append(button);
}
function followUpForm(section, desk, mailbox) {
  const s = { ...msgs.dataset };
  const box = el("form", { id: "follow-up-js" });
  box.append(el("p", {}, msg("msgFollowUpJs")));
  box.append(el("label", { for: "follow-up-text" }, msg("msgAdd")));
  const text = el("textarea", { id: "follow-up-text", rows: "8", spellcheck: "false" });
  box.append(text);
  box.append(el("label", { for: "follow-up-files" }, msg("msgFiles")));
  const files = el("input", { id: "follow-up-files", type: "file", multiple: "" });
  box.append(files);
  box.append(el("p", { class: "protection" }, msg("msgFollowUpProtection")));
  const send = el("button", { type: "submit" }, msg("msgSend"));
  box.append(send);
  const status = el("div", { id: "follow-up-status", role: "status" });
  box.append(status);
  const say = (line, cls = null) => {
    const p = el("p", cls ? { class: cls } : {}, line);
    status.replaceChildren(p);
  };
  box.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (send.disabled) return;
    const chosen = [...files.files ?? []];
    const testimony = text.value;
    if (!testimony.trim() && chosen.length === 0) return say(msg("msgEmpty"), "error");
    if (chosen.length > Number(msgs.dataset.maxFiles || 20)) return say(msg("msgTooMany"), "error");
    const maxBytes = Number(msgs.dataset.maxFileBytes || 0);
    if (maxBytes && chosen.some((f) => f.size > maxBytes)) return say(msg("msgTooBig"), "error");
    send.disabled = true;
    const ctx = {
      s,
      csrf: form.querySelector('input[name="csrf"]').value,
      lang: document.documentElement.lang || "en",
      desk: desk.name,
      recipients: desk.recipients,
      worker: new Worker(WORKER_URL),
      status: (line) => say(line)
    };
    try {
      say(msg("msgSending"));
      const described = [];
      for (let i = 0; i < chosen.length; i++) {
        const f = chosen[i];
        const role = `file-${i + 1}`;
        const r = await encryptAndUpload(ctx, f, role, "attachment");
        described.push({
          role,
          name: f.name,
          content_type: f.type || "application/octet-stream",
          size: f.size,
          sha256: r.sha256,
          upload: r.id
        });
      }
      const doc = {
        format: "guwah-testimony/1",
        protection: "browser-encrypted",
        day: (/* @__PURE__ */ new Date()).toISOString().slice(0, 10),
        desk: desk.name,
        lang: ctx.lang,
        testimony,
        answers: { where: "", when: "", consent: "", never_name: "" },
        files: described.map(({ upload, ...rest }) => rest),
        reply_recipient: mailbox.replyRecipient,
        // the server links it (it knows the first submission of the mailbox; the browser
        // is not told, so that an unused codename looks like any other)
        parent_id: null
      };
      const message = new Blob([new TextEncoder().encode(JSON.stringify(doc))]);
      const m = await encryptAndUpload(ctx, message, "message", "testimony");
      await commitSubmission(ctx, {
        csrf: ctx.csrf,
        desk: desk.name,
        message_upload: m.id,
        files: described.map((d) => ({ role: d.role, upload: d.upload })),
        token_hash: mailbox.tokenHash,
        reply_recipient: mailbox.replyRecipient,
        mailbox_token: mailbox.tokenHex
      });
      const done = el("div", { id: "follow-up-received" });
      done.append(el("h3", {}, msg("msgSent")), el("p", {}, msg("msgSentNote")));
      box.replaceWith(done);
    } catch (err) {
      say(err instanceof Refused ? err.message : msg("failed"), "error");
      send.disabled = false;
    } finally {
      ctx.worker.terminate();
    }
  });
  section.append(box);
}
function renderMailbox(replies, desk, mailbox, onFollowUp) {
  const main = form.parentElement;
  const section = el("section", { id: "mailbox-js", "aria-live": "polite" });
  renderReplies(section, replies);
  if (replies.length > 0) {
    section.append(deleteRepliesBox(mailbox.tokenHex, msg, () => document.getElementById("replies")?.remove()));
  }
  section.append(el("h2", { id: "follow-up" }, msg("msgFollowUp")));
  if (desk && typeof Worker !== "undefined" && typeof ReadableStream !== "undefined") {
    followUpForm(section, desk, mailbox);
  } else {
    fallbackFollowUp(section, onFollowUp);
  }
  main.append(section);
}
function start() {
  if (!form || !msgs) return;
  const note = document.getElementById("return-protection");
  if (note) note.textContent = msg("msgProtection");
  const input = form.querySelector("#codename");
  const button = form.querySelector("button[type=submit]");
  let busy = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    document.getElementById("return-error")?.remove();
    document.getElementById("mailbox-js")?.remove();
    let normalized;
    try {
      normalized = normalizeCodename(input.value);
    } catch (err) {
      const code = err instanceof CodenameError ? err.code : "";
      const key = `msgCodename${code.charAt(0).toUpperCase()}${code.slice(1)}`;
      showError(msg(key) || (err instanceof CodenameError ? err.message : String(err)));
      return;
    }
    busy = true;
    button.disabled = true;
    const status = el("p", { id: "return-status", role: "status" }, msg("msgOpening"));
    form.after(status);
    let mailbox = null;
    try {
      mailbox = await deriveMailbox(normalized, "X25519", {
        onProgress: (f) => {
          status.textContent = `${msg("msgOpening")} ${Math.round(f * 100)}%`;
        }
      });
      const response = await fetch("/api/mailbox", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ token: bytesToHex(mailbox.token) }),
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer"
      });
      if (!response.ok) throw new Error("mailbox request failed");
      const answer2 = await response.json();
      const x255193 = mailbox.replyIdentity;
      let pq = null;
      const identities = function* () {
        yield x255193;
        pq = pq ?? hybridIdentity(x255193);
        yield pq;
      };
      const replies = [];
      for (const item of answer2.replies ?? []) {
        const doc = await openReply(base64ToBytes(String(item.age)), identities);
        const day = doc && /^\d{4}-\d{2}-\d{2}$/.test(String(doc.day)) ? doc.day : String(item.day);
        replies.push({ day, text: doc ? doc.text : null });
      }
      input.value = "";
      const desk = answer2.desk && Array.isArray(answer2.desk.recipients) ? answer2.desk : null;
      const followUp = {
        tokenHex: bytesToHex(mailbox.token),
        tokenHash: mailbox.tokenHash,
        replyRecipient: desk?.kind === "mlkem768x25519" ? await identityToRecipient(pq ?? hybridIdentity(x255193)) : mailbox.replyRecipient
      };
      renderMailbox(replies, desk, followUp, () => {
        input.value = normalized;
        form.submit();
      });
    } catch {
      showError(msg("msgFailed"));
    } finally {
      mailbox?.token.fill(0);
      mailbox = null;
      status.remove();
      busy = false;
      button.disabled = false;
    }
  });
}
start();
