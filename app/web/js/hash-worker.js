// Web Worker, started by worker.js: the SHA-256 of a file's plaintext, on a core of its own.
//
// Why a second worker: hashing in the encryption worker ran in series with the encryption
// (about 40 % of a big upload's time). This worker does not read the file again (in Chromium
// that left hundreds of MiB of garbage or stalled, docs/browser-uploads.md): worker.js copies
// each piece it reads into one of a few pooled buffers and transfers it here; the buffer is
// transferred back once hashed, so memory stays at the pool's size whatever the file size.
//
// worker.js -> here: {type: "update", id, buffer, length}  (the first `length` bytes count)
//                    {type: "digest", id} | {type: "cancel", id}
// here -> worker.js: {type: "free", id, buffer} (transferred back) | {type: "digest", id, hex}
import { Sha256 } from "./sha256.js";

const hashers = new Map();

function hasherFor(id) {
  let h = hashers.get(id);
  if (!h) {
    h = new Sha256();
    hashers.set(id, h);
  }
  return h;
}

self.onmessage = (ev) => {
  const msg = ev.data ?? {};
  if (msg.type === "update") {
    hasherFor(msg.id).update(new Uint8Array(msg.buffer, 0, msg.length));
    self.postMessage({ type: "free", id: msg.id, buffer: msg.buffer }, [msg.buffer]);
  } else if (msg.type === "digest") {
    const hex = hasherFor(msg.id).hex();
    hashers.delete(msg.id);
    self.postMessage({ type: "digest", id: msg.id, hex });
  } else if (msg.type === "cancel") {
    hashers.delete(msg.id);
  }
};
