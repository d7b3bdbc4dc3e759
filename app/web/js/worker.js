// Web Worker: age-encrypt one File/Blob to the desk's recipients without ever holding the
// whole file. Reads Blob slices, appends Padmé padding (padding.js), streams through
// age-encryption's STREAM encrypter and posts ciphertext chunks back as they come, so the
// page can upload each one. Flow control: at most `window` chunks are in flight; the page
// answers every chunk with {type: "ack", id} once it has uploaded (or dropped) it.
//
// Page -> worker:
//   {type: "encrypt", id, blob, recipients: ["age1..."|"age1pq1..."],
//    framing: "attachment"|"testimony", chunkSize?: bytes (default 1 MiB), window?: 4,
//    hash?: true}
//   {type: "ack", id}        {type: "cancel", id}
// Worker -> page:
//   {type: "chunk", id, seq, data: ArrayBuffer (transferred), plainDone, plainTotal}
//   {type: "done", id, chunks, plaintextSize, paddedSize, ciphertextSize, sha256: hex|null}
//   {type: "error", id, message}

// Its ChaCha20-Poly1305 is app/web/js/chacha20poly1305.js (tests/js/build.mjs substitutes it
// for @noble/ciphers' in this bundle): about twice as fast without a JIT, same age format.
import { Encrypter } from "age-encryption";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { FILL, paddingFor } from "./padding.js";

const READ_SIZE = 1 << 20; // Blob slice read at a time: bounded memory whatever the file size
const PAD_BLOCK = 1 << 16;
// Up to this size the plaintext SHA-256 is computed by WebCrypto in one call (native code,
// hundreds of MB/s even without a JIT, where @noble's JS SHA-256 does ~0.5-1 MB/s). It
// briefly holds that much in memory; larger files are hashed incrementally in JS instead.
const WEBCRYPTO_HASH_LIMIT = 64 << 20;

/** Hex SHA-256 of a Blob small enough for one WebCrypto call. */
async function webcryptoSha256(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return bytesToHex(new Uint8Array(digest));
}

const jobs = new Map();

/** A pull-based stream of plaintext + padding, hashing the plaintext as it passes. */
function plaintextStream(blob, framing, hasher, job) {
  const size = blob.size;
  let pad = paddingFor(size);
  const fill = FILL[framing];
  let offset = 0;
  return new ReadableStream({
    async pull(controller) {
      if (job.cancelled) {
        controller.error(new Error("cancelled"));
        return;
      }
      if (offset < size) {
        const end = Math.min(size, offset + READ_SIZE);
        const buf = new Uint8Array(await blob.slice(offset, end).arrayBuffer());
        if (buf.length !== end - offset) throw new Error("the file changed while it was read");
        if (hasher) hasher.update(buf);
        offset = end;
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
  while (job.inFlight >= job.window && !job.cancelled) {
    await new Promise((resolve) => {
      job.wake = resolve;
    });
  }
}

async function send(job, parts, length) {
  await waitForCredit(job);
  if (job.cancelled) throw new Error("cancelled");
  const out = new Uint8Array(length);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  job.inFlight++;
  job.ciphertextSize += length;
  self.postMessage(
    {
      type: "chunk",
      id: job.id,
      seq: job.seq++,
      data: out.buffer,
      plainDone: job.plainDone,
      plainTotal: job.plainTotal,
    },
    [out.buffer],
  );
}

async function encryptJob(msg) {
  const framing = msg.framing ?? "attachment";
  if (!(framing in FILL)) throw new Error(`unknown framing: ${framing}`);
  if (!Array.isArray(msg.recipients) || msg.recipients.length === 0) {
    throw new Error("no recipients");
  }
  const job = {
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
  };
  jobs.set(job.id, job);
  try {
    const e = new Encrypter();
    for (const r of msg.recipients) e.addRecipient(r);
    const wantHash = msg.hash !== false;
    const small = msg.blob.size <= WEBCRYPTO_HASH_LIMIT && globalThis.crypto?.subtle;
    const digest = wantHash && small ? await webcryptoSha256(msg.blob) : null;
    const hasher = wantHash && !small ? sha256.create() : null;
    const reader = (await e.encrypt(plaintextStream(msg.blob, framing, hasher, job))).getReader();
    let parts = [];
    let length = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      length += value.length;
      if (length >= job.chunkSize) {
        await send(job, parts, length);
        parts = [];
        length = 0;
      }
    }
    if (length > 0) await send(job, parts, length);
    self.postMessage({
      type: "done",
      id: job.id,
      chunks: job.seq,
      plaintextSize: msg.blob.size,
      paddedSize: msg.blob.size + paddingFor(msg.blob.size),
      ciphertextSize: job.ciphertextSize,
      sha256: digest ?? (hasher ? bytesToHex(hasher.digest()) : null),
    });
  } finally {
    jobs.delete(job.id);
  }
}

self.onmessage = (ev) => {
  const msg = ev.data ?? {};
  if (msg.type === "encrypt") {
    encryptJob(msg).catch((err) => {
      self.postMessage({ type: "error", id: msg.id, message: String(err?.message ?? err) });
    });
  } else if (msg.type === "ack" || msg.type === "cancel") {
    const job = jobs.get(msg.id);
    if (!job) return;
    if (msg.type === "ack") job.inFlight = Math.max(0, job.inFlight - 1);
    else job.cancelled = true;
    if (job.wake) {
      const w = job.wake;
      job.wake = null;
      w();
    }
  }
};
