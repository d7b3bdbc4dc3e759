// Web Worker: age-encrypt one File/Blob to the desk's recipients without ever holding the
// whole file. Reads the Blob as one stream, appends Padmé padding (padding.js), streams
// through age-encryption's STREAM encrypter and posts ciphertext chunks back as they come, so
// the page can upload each one. Memory is bounded (docs/browser-uploads.md):
// - flow control: at most `window` chunks are in flight; the page answers every chunk with
//   {type: "ack", id} once it has uploaded (or dropped) it;
// - with `remote: true` (what the upload uses) the ciphertext never goes to the page: the
//   worker keeps each chunk until its ack and PATCHes it itself when the page asks
//   ({type: "put"}: the page keeps the tus logic, offsets and retries). Chromium keeps the
//   copy of a request body it makes in garbage-collected memory; here, where encryption
//   allocates all the time, the collector frees it promptly, where the idle page would let
//   hundreds of MiB pile up. The chunk buffers are a pool of at most window + 1
//   ArrayBuffers of `chunkSize` bytes, refilled once acknowledged. Without `remote`, each
//   chunk's buffer is transferred to the page (no copy) and a new one is made.
// - the plaintext SHA-256 of a big file is computed on another core, by hash-worker.js, while this worker
//   encrypts: each piece read is copied into one of HASH_POOL pooled buffers and transferred
//   there, and comes back once hashed. (The hash worker does not read the file again: in
//   Chromium 156 a second reader left hundreds of MiB of garbage or stalled near 4 GiB,
//   docs/browser-uploads.md.) Where a worker cannot start one, the hash runs here, inline.
//
// Page -> worker:
//   {type: "encrypt", id, blob, recipients: ["age1..."|"age1pq1..."],
//    framing: "attachment"|"testimony", chunkSize?: bytes (default 1 MiB), window?: 4,
//    hash?: true, jsHash?: false (always the JS SHA-256), inlineHash?: false (in this worker,
//    not hash-worker.js: the speed probe), remote?: false}
//   {type: "put", id, seq, put, url, headers, from}   (remote: PATCH bytes from..length)
//   {type: "ack", id, seq}
//   {type: "cancel", id}
// Worker -> page:
//   {type: "chunk", id, seq, data?: ArrayBuffer (transferred; not when remote), length,
//    header (length of the age header), plainDone, plainTotal}
//     (the ciphertext is the first `length` bytes of `data`)
//   {type: "put", id, seq, put, status, offset (Upload-Offset), error} | {..., network: true}
//   {type: "done", id, chunks, plaintextSize, paddedSize, ciphertextSize, sha256: hex|null,
//    hashedBy: "webcrypto"|"hash-worker"|"inline"|null, timings: {totalMs, readMs, hashMs, waitMs}}
//   {type: "error", id, message}

// Its ChaCha20-Poly1305 is app/web/js/chacha20poly1305.js (tests/js/build.mjs substitutes it
// for @noble/ciphers' in this bundle): about twice as fast without a JIT, same age format.
import { Encrypter } from "age-encryption";
import { bytesToHex } from "@noble/hashes/utils.js";
import { FILL, paddingFor } from "./padding.js";
import { Sha256 } from "./sha256.js";

const PAD_BLOCK = 1 << 16;
// Up to this size the plaintext SHA-256 is computed by WebCrypto in one call (native code,
// hundreds of MB/s even without a JIT, where the JS SHA-256, sha256.js, does ~2 MB/s). It
// briefly holds that much in memory; larger files are hashed incrementally in JS instead.
const WEBCRYPTO_HASH_LIMIT = 64 << 20;

/** Hex SHA-256 of a Blob small enough for one WebCrypto call. */
async function webcryptoSha256(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return bytesToHex(new Uint8Array(digest));
}

const jobs = new Map();
const now = () => performance.now();

// The parallel hash: pooled buffers of HASH_PIECE bytes, at most HASH_POOL in flight.
const HASH_PIECE = 1 << 20;
const HASH_POOL = 4;
let hashWorker = null; // null: not tried yet; false: this browser cannot start one
const hashing = new Map(); // job id -> ParallelHasher

function startHashWorker() {
  if (hashWorker === null) {
    try {
      hashWorker = new Worker(new URL("./hash-worker.js", self.location.href));
      hashWorker.onmessage = (ev) => hashing.get(ev.data?.id)?.onMessage(ev.data);
    } catch {
      hashWorker = false; // no nested workers here: hash inline
    }
  }
  return hashWorker || null;
}

/** The plaintext SHA-256, computed by hash-worker.js while this worker encrypts. */
class ParallelHasher {
  constructor(worker, id) {
    this.worker = worker;
    this.id = id;
    this.free = [];
    this.allocated = 0;
    this.buf = null;
    this.used = 0;
    this.waiting = null;
    this.result = null;
    this.where = "hash-worker";
    hashing.set(id, this);
  }

  onMessage(msg) {
    if (msg.type === "free") this.free.push(msg.buffer);
    else if (msg.type === "digest") this.result = msg.hex;
    const wake = this.waiting;
    this.waiting = null;
    wake?.();
  }

  wait() {
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }

  async take() {
    while (this.free.length === 0 && this.allocated >= HASH_POOL) await this.wait();
    if (this.free.length > 0) return this.free.pop();
    this.allocated++;
    return new ArrayBuffer(HASH_PIECE);
  }

  async update(bytes) {
    let rest = bytes;
    while (rest.length > 0) {
      if (this.buf === null) {
        this.buf = await this.take();
        this.used = 0;
      }
      const n = Math.min(rest.length, HASH_PIECE - this.used);
      new Uint8Array(this.buf, this.used, n).set(rest.subarray(0, n));
      this.used += n;
      rest = rest.subarray(n);
      if (this.used === HASH_PIECE) this.send();
    }
  }

  send() {
    const msg = { type: "update", id: this.id, buffer: this.buf, length: this.used };
    this.worker.postMessage(msg, [this.buf]);
    this.buf = null;
    this.used = 0;
  }

  async hex() {
    if (this.buf !== null && this.used > 0) this.send();
    this.worker.postMessage({ type: "digest", id: this.id });
    while (this.result === null) await this.wait();
    hashing.delete(this.id);
    return this.result;
  }

  cancel() {
    if (hashing.delete(this.id)) this.worker.postMessage({ type: "cancel", id: this.id });
  }
}

/** The same interface, hashing inline (the speed probe, or where a worker cannot start
 * another one). */
function inlineHasher() {
  const h = new Sha256();
  return {
    where: "inline",
    update: async (bytes) => {
      h.update(bytes);
    },
    hex: async () => h.hex(),
    cancel() {},
  };
}

/** A hasher for one job: on its own core when the browser allows, inline otherwise. */
function newHasher(job, inline) {
  const worker = inline ? null : startHashWorker();
  return worker ? new ParallelHasher(worker, job.id) : inlineHasher();
}

/** A pull-based stream of plaintext + padding, hashing the plaintext as it passes. */
function plaintextStream(blob, framing, hasher, job) {
  const size = blob.size;
  let pad = paddingFor(size);
  const fill = FILL[framing];
  let offset = 0;
  const source = blob.stream().getReader(); // one read-ahead pipe, not a request per slice
  return new ReadableStream({
    async pull(controller) {
      if (job.cancelled) {
        controller.error(new Error("cancelled"));
        return;
      }
      if (offset < size) {
        const t0 = now();
        const { done, value } = await source.read();
        const t1 = now();
        job.timings.readMs += t1 - t0;
        if (done || offset + value.length > size) throw new Error("the file changed while it was read");
        const buf = value;
        if (hasher) {
          await hasher.update(buf);
          job.timings.hashMs += now() - t1;
        }
        offset += buf.length;
        job.plainDone = offset;
        controller.enqueue(buf);
        return;
      }
      if (pad > 0) {
        const n = Math.min(pad, PAD_BLOCK);
        controller.enqueue(new Uint8Array(n).fill(fill));
        pad -= n;
        return;
      }
      controller.close();
    },
  });
}

async function waitForCredit(job) {
  const t0 = now();
  while (job.inFlight >= job.window && !job.cancelled) {
    await new Promise((resolve) => {
      job.wake = resolve;
    });
  }
  job.timings.waitMs += now() - t0;
}

/** A chunk buffer: an acknowledged one again, or a new one while the pool is not full. */
function takeBuffer(job) {
  return job.free.pop() ?? new ArrayBuffer(job.chunkSize);
}

/** Tell the page about the filled part of the current buffer (kept, or transferred). */
async function flush(job) {
  await waitForCredit(job);
  if (job.cancelled) throw new Error("cancelled");
  const buffer = job.out;
  const length = job.used;
  job.out = null;
  job.used = 0;
  job.inFlight++;
  job.ciphertextSize += length;
  const msg = {
    type: "chunk",
    id: job.id,
    seq: job.seq,
    length,
    header: job.header,
    plainDone: job.plainDone,
    plainTotal: job.plainTotal,
  };
  if (job.remote) {
    job.held.set(job.seq++, { buffer, length });
    self.postMessage(msg);
  } else {
    job.seq++;
    self.postMessage({ ...msg, data: buffer }, [buffer]);
  }
}

/** Copy one piece of ciphertext into the chunk buffers, posting each one that fills up. */
async function collect(job, piece) {
  let rest = piece;
  while (rest.length > 0) {
    if (job.out === null) job.out = takeBuffer(job);
    const n = Math.min(rest.length, job.chunkSize - job.used);
    new Uint8Array(job.out, job.used, n).set(rest.subarray(0, n));
    job.used += n;
    rest = rest.subarray(n);
    if (job.used === job.chunkSize) await flush(job);
  }
}

function newJob(msg) {
  return {
    id: msg.id,
    window: Math.max(1, msg.window ?? 4),
    chunkSize: Math.max(1 << 16, msg.chunkSize ?? 1 << 20),
    inFlight: 0,
    wake: null,
    cancelled: false,
    seq: 0,
    plainDone: 0,
    plainTotal: msg.blob.size,
    ciphertextSize: 0,
    remote: msg.remote === true,
    held: new Map(), // seq -> {buffer, length}: sent to the page, not yet acknowledged
    header: 0,
    finished: false,
    free: [],
    out: null,
    used: 0,
    timings: { totalMs: 0, readMs: 0, hashMs: 0, waitMs: 0 },
  };
}

async function encryptJob(msg) {
  const framing = msg.framing ?? "attachment";
  if (!(framing in FILL)) throw new Error(`unknown framing: ${framing}`);
  if (!Array.isArray(msg.recipients) || msg.recipients.length === 0) {
    throw new Error("no recipients");
  }
  const job = newJob(msg);
  const start = now();
  jobs.set(job.id, job);
  let hasher = null;
  try {
    const e = new Encrypter();
    for (const r of msg.recipients) e.addRecipient(r);
    const wantHash = msg.hash !== false;
    const small = !msg.jsHash && msg.blob.size <= WEBCRYPTO_HASH_LIMIT && globalThis.crypto?.subtle;
    const digest = wantHash && small ? await webcryptoSha256(msg.blob) : null;
    hasher = wantHash && !small ? newHasher(job, msg.inlineHash === true) : null;
    const reader = (await e.encrypt(plaintextStream(msg.blob, framing, hasher, job))).getReader();
    for (let first = true; ; first = false) {
      const { done, value } = await reader.read();
      if (done) break;
      if (first) job.header = value.length; // age-encryption yields the header first
      await collect(job, value);
    }
    if (job.used > 0) await flush(job);
    job.timings.totalMs = now() - start;
    self.postMessage({
      type: "done",
      id: job.id,
      chunks: job.seq,
      plaintextSize: msg.blob.size,
      paddedSize: msg.blob.size + paddingFor(msg.blob.size),
      ciphertextSize: job.ciphertextSize,
      sha256: digest ?? (hasher ? await hasher.hex() : null),
      hashedBy: digest ? "webcrypto" : hasher?.where ?? null,
      timings: job.timings,
    });
  } finally {
    hasher?.cancel();
    job.finished = true;
    if (job.held.size === 0 || job.cancelled) jobs.delete(job.id);
  }
}

/** PATCH part of a held chunk (remote mode) and report the answer to the page. */
async function putJob(msg) {
  const job = jobs.get(msg.id);
  const held = job?.held.get(msg.seq);
  const reply = { type: "put", id: msg.id, seq: msg.seq, put: msg.put };
  if (!held || msg.from < 0 || msg.from > held.length) {
    self.postMessage({ ...reply, network: true });
    return;
  }
  let res;
  try {
    res = await fetch(msg.url, {
      method: "PATCH",
      headers: msg.headers,
      // a Blob, not the bytes: Chromium 156 uploads an ArrayBuffer body at 13-16 MB/s and a
      // Blob at 93-170 MB/s (docs/browser-uploads.md); the Blob is a copy of ciphertext only
      body: new Blob([new Uint8Array(held.buffer, msg.from, held.length - msg.from)]),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    self.postMessage({ ...reply, network: true }); // connection cut (a Tor circuit dropped)
    return;
  }
  let error = null;
  if (res.status !== 204) {
    try {
      const j = await res.json();
      if (j && typeof j.error === "string") error = j.error;
    } catch {
      /* not JSON */
    }
  }
  self.postMessage({ ...reply, status: res.status, offset: res.headers.get("Upload-Offset"), error });
}

function onControl(msg) {
  const job = jobs.get(msg.id);
  if (!job) return;
  if (msg.type === "ack" && job.free) {
    job.inFlight = Math.max(0, job.inFlight - 1);
    const held = job.held.get(msg.seq);
    job.held.delete(msg.seq);
    if (held && held.buffer.byteLength === job.chunkSize) job.free.push(held.buffer);
    if (job.finished && job.held.size === 0) jobs.delete(job.id);
  } else if (msg.type === "cancel") {
    job.cancelled = true;
    job.held.clear?.();
    if (job.finished) jobs.delete(msg.id);
  }
  if (job.wake) {
    const w = job.wake;
    job.wake = null;
    w();
  }
}

self.onmessage = (ev) => {
  const msg = ev.data ?? {};
  const fail = (err) => {
    self.postMessage({ type: "error", id: msg.id, message: String(err?.message ?? err) });
  };
  if (msg.type === "encrypt") encryptJob(msg).catch(fail);
  else if (msg.type === "put") putJob(msg).catch(fail);
  else if (msg.type === "ack" || msg.type === "cancel") onControl(msg);
};
