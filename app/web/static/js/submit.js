/* Guwah witness-site bundle. Built from app/web/js with tests/js/build.mjs;
   dependencies pinned in package-lock.json (age-encryption, @noble, @scure: MIT).
   Rebuild and compare: pytest tests/test_bundle_reproducible.py */

// app/web/js/encrypt-client.js
var nextId = 1;
function encryptInWorker(worker, blob, recipients, options = {}) {
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
        pending = pending.then(
          () => onChunk?.(new Uint8Array(m.data), m.seq, {
            plainDone: m.plainDone,
            plainTotal: m.plainTotal
          })
        ).then(() => worker.postMessage({ type: "ack", id })).catch((err) => {
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

// app/web/js/submit.js
var WORKER_URL = new URL("./worker.js", import.meta.url).href;
export {
  WORKER_URL,
  encryptInWorker
};
