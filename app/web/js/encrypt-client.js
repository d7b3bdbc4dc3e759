// Page-side helper for worker.js: encrypt one Blob in the Web Worker and hand each
// ciphertext chunk to `onChunk` (e.g. an upload); the next chunks are produced while
// that runs, but never more than `window` ahead, so memory stays bounded.

let nextId = 1;

/**
 * Encrypt `blob` to `recipients` in `worker` (a Worker running static/js/worker.js).
 * `onChunk(Uint8Array, seq, {plainDone, plainTotal})` may return a promise; the chunk
 * counts as in flight until it resolves. Resolves to the worker's "done" summary
 * ({chunks, plaintextSize, paddedSize, ciphertextSize, sha256}).
 */
export function encryptInWorker(worker, blob, recipients, options = {}) {
  const { onChunk, framing = "attachment", chunkSize, window = 4, hash = true } = options;
  const id = nextId++;
  return new Promise((resolve, reject) => {
    let failed = false;
    let pending = Promise.resolve();
    const finish = (fn, value) => {
      worker.removeEventListener("message", listener);
      fn(value);
    };
    const listener = (ev) => {
      const m = ev.data;
      if (!m || m.id !== id || failed) return;
      if (m.type === "chunk") {
        // Chunks are handed over in order, one at a time.
        pending = pending
          .then(() =>
            onChunk?.(new Uint8Array(m.data), m.seq, {
              plainDone: m.plainDone,
              plainTotal: m.plainTotal,
            }),
          )
          .then(() => worker.postMessage({ type: "ack", id }))
          .catch((err) => {
            failed = true;
            worker.postMessage({ type: "cancel", id });
            finish(reject, err);
          });
      } else if (m.type === "done") {
        pending.then(() => {
          if (!failed) finish(resolve, m);
        });
      } else if (m.type === "error") {
        failed = true;
        finish(reject, new Error(m.message));
      }
    };
    worker.addEventListener("message", listener);
    worker.postMessage({ type: "encrypt", id, blob, recipients, framing, chunkSize, window, hash });
  });
}
