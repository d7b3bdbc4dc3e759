// Page-side helper for worker.js: encrypt one Blob in the Web Worker and hand each
// ciphertext chunk to `onChunk` (e.g. an upload); the next chunks are produced while
// that runs, but never more than `window` ahead, so memory stays bounded
// (docs/browser-uploads.md).
//
// Chunks wait in one queue drained by one loop (no promise chain with a closure per chunk:
// nothing keeps a chunk alive once it is handled). Two ways to get the bytes:
// - default: `onChunk` gets a Uint8Array of its own (the worker's buffer, transferred);
// - `remote: true`, what the upload uses: the bytes stay in the worker and `onChunk` gets a
//   handle {seq, length, header, put(url, headers, from)}; `put` has the worker PATCH the
//   chunk from byte `from` on and resolves to a fetch-like answer ({status, headers.get,
//   json}), or rejects as fetch does on a network error. Why: Chromium keeps the copy of a
//   request body it makes in garbage-collected memory, and the page's main thread allocates
//   so little that it collects rarely (hundreds of MiB of sent chunks piled up there); the
//   worker allocates constantly, so its collector frees them as it goes. The worker's chunk
//   buffers are refilled once acknowledged: a whole file moves through window + 1 buffers.

let nextId = 1;

/** The answer to a PATCH the worker sent, shaped like the part of a fetch Response we use. */
function answer(m) {
  return {
    status: m.status,
    headers: { get: (name) => (name.toLowerCase() === "upload-offset" ? m.offset : null) },
    json: async () => ({ error: m.error }),
  };
}

/**
 * Encrypt `blob` to `recipients` in `worker` (a Worker running static/js/worker.js).
 * `onChunk(chunk, seq, {plainDone, plainTotal})` may return a promise; the chunk counts as
 * in flight until it resolves. Resolves to the worker's "done" summary ({chunks,
 * plaintextSize, paddedSize, ciphertextSize, sha256, timings}).
 */
export function encryptInWorker(worker, blob, recipients, options = {}) {
  const { onChunk, framing = "attachment", chunkSize, window = 4, hash = true, remote = false } = options;
  const jsHash = options.jsHash === true;
  const inlineHash = options.inlineHash === true;
  const id = nextId++;
  const puts = new Map(); // put number -> {resolve, reject}
  let nextPut = 1;
  const handle = (m) => ({
    seq: m.seq,
    length: m.length,
    header: m.header,
    put: (url, headers, from) =>
      new Promise((resolve, reject) => {
        const put = nextPut++;
        puts.set(put, { resolve, reject });
        worker.postMessage({ type: "put", id, seq: m.seq, put, url, headers, from });
      }),
  });
  return new Promise((resolve, reject) => {
    const queue = []; // chunk messages not yet handled, in order
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
    worker.postMessage({ type: "encrypt", id, blob, recipients, framing, chunkSize, window, hash, jsHash, inlineHash, remote });
  });
}
