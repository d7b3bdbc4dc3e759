// Encrypt in the worker, upload with tus 1.0 (resumable), commit: the browser-encrypted
// pipeline used by the follow-up form of return.js.
//
// The same protocol and behaviour as the submission page (submit.js), written as a
// reusable module: /api/uploads (POST with Guwah-Form-Token and desk/role metadata, PATCH
// at the acknowledged offset, HEAD to re-sync after a network error) and
// /api/submissions (JSON). submit.js can import it too, so that one copy remains.

import { encryptInWorker } from "./encrypt-client.js";
import { padme } from "./padding.js";

const TUS = "1.0.0";
const CHUNK = 4 << 20; // ciphertext bytes per PATCH
const WINDOW = 3; // chunks the worker may produce ahead of the upload
const STREAM_CHUNK = 65536;
const MAX_TRIES = 10;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A refusal the server explained (its sentence is in `.message`). */
export class Refused extends Error {}

/** Length of the age header at the start of `first` (it ends with "\n--- <mac>\n"). */
export function headerLength(first) {
  for (let i = 0; i + 4 < first.length; i++) {
    if (first[i] === 0x0a && first[i + 1] === 0x2d && first[i + 2] === 0x2d && first[i + 3] === 0x2d && first[i + 4] === 0x20) {
      for (let j = i + 5; j < first.length; j++) if (first[j] === 0x0a) return j + 1;
      break;
    }
  }
  throw new Error("the encrypted file has no complete header in its first chunk");
}

/** Ciphertext size of a plaintext of `size` bytes once padded (header length known). */
export function ciphertextSize(header, size) {
  const padded = padme(size);
  return header + 16 + padded + 16 * Math.max(1, Math.ceil(padded / STREAM_CHUNK));
}

export async function errorOf(res, fallback) {
  try {
    const j = await res.json();
    if (j && typeof j.error === "string") return j.error;
  } catch {
    /* not JSON */
  }
  return fallback;
}

function withLang(ctx, url) {
  return `${url}${url.includes("?") ? "&" : "?"}lang=${encodeURIComponent(ctx.lang)}`;
}

/** fetch with retries on network errors and 5xx/429, exponential backoff. */
export async function retrying(ctx, make) {
  let delay = 500;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await make();
      if ((res.status >= 500 && res.status !== 507) || res.status === 429) {
        if (attempt >= MAX_TRIES) return res;
      } else {
        return res;
      }
    } catch {
      if (attempt >= MAX_TRIES) throw new Refused(ctx.s.network);
    }
    ctx.status(ctx.s.retrying);
    await sleep(delay);
    delay = Math.min(delay * 2, 15000);
  }
}

/** One tus upload, fed chunk by chunk by the worker. */
class Upload {
  constructor(ctx, role, plainSize, onProgress) {
    this.ctx = ctx;
    this.role = role;
    this.plainSize = plainSize;
    this.onProgress = onProgress;
    this.url = null;
    this.id = null;
    this.offset = 0; // what the server has acknowledged
    this.logical = 0; // ciphertext bytes handed to us so far
    this.length = 0;
  }

  headers(extra = {}) {
    return { "Tus-Resumable": TUS, ...extra };
  }

  /** Create the upload; `first` is the first chunk (its `header` is the age header's length). */
  async create(first) {
    this.length = ciphertextSize(first.header, this.plainSize);
    const desk = btoa(String.fromCharCode(...new TextEncoder().encode(this.ctx.desk)));
    const res = await retrying(this.ctx, () =>
      fetch(withLang(this.ctx, "/api/uploads"), {
        method: "POST",
        headers: this.headers({
          "Upload-Length": String(this.length),
          "Upload-Metadata": `desk ${desk},role ${btoa(this.role)}`,
          "Guwah-Form-Token": this.ctx.csrf,
        }),
        credentials: "omit",
        cache: "no-store",
      }),
    );
    if (res.status !== 201) throw new Refused(await errorOf(res, this.ctx.s.failed));
    this.url = res.headers.get("Location");
    this.id = this.url.split("/").pop();
  }

  async head() {
    const res = await retrying(this.ctx, () =>
      fetch(withLang(this.ctx, this.url), { method: "HEAD", headers: this.headers(), cache: "no-store" }),
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
    const start = this.logical;
    const end = start + data.length;
    this.logical = end;
    let failures = 0;
    let delay = 500;
    while (this.offset < end) {
      if (this.offset < start) throw new Refused(this.ctx.s.gone);
      let res = null;
      try {
        res = await data.put(
          withLang(this.ctx, this.url),
          this.headers({
            "Upload-Offset": String(this.offset),
            "Content-Type": "application/offset+octet-stream",
          }),
          this.offset - start,
        );
      } catch {
        res = null; // connection cut (e.g. a Tor circuit dropped)
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
        delay = Math.min(delay * 2, 15000);
      }
      this.offset = await this.head(); // re-sync: continue exactly where the server stopped
      this.onProgress(this.offset, this.length);
    }
  }
}

/**
 * Encrypt `blob` in the worker to `ctx.recipients` and upload it as `role`.
 * Resolves to {id (upload id), sha256 (of the plaintext)}.
 */
export async function encryptAndUpload(ctx, blob, role, framing, onProgress = () => undefined) {
  const up = new Upload(ctx, role, blob.size, onProgress);
  const summary = await encryptInWorker(ctx.worker, blob, ctx.recipients, {
    framing,
    chunkSize: CHUNK,
    window: WINDOW,
    remote: true, // the ciphertext stays in the worker, which sends it (docs/browser-uploads.md)
    onChunk: async (data) => {
      await up.send(data);
    },
  });
  if (up.offset !== up.length || summary.ciphertextSize !== up.length) {
    throw new Refused(ctx.s.failed);
  }
  return { id: up.id, sha256: summary.sha256 };
}

/** POST /api/submissions; resolves to the server's answer ({id, desk, keys}). */
export async function commitSubmission(ctx, body) {
  const res = await retrying(ctx, () =>
    fetch(withLang(ctx, "/api/submissions"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    }),
  );
  if (res.status !== 201) throw new Refused(await errorOf(res, ctx.s.failed));
  return res.json();
}
