// The browser-encrypted pipeline shared by every page that sends testimony (submit.js,
// return.js): the testimony document, the ciphertext size arithmetic, the tus 1.0 upload
// client and the commit. One copy, so a fix to one path (a lost answer, a busy server)
// reaches every page.
//
// Protocol: /api/uploads (POST with Guwah-Form-Token and desk/role metadata, PATCH at the
// acknowledged offset, HEAD to re-sync after a network error) and /api/submissions (JSON).
// The ciphertext is made and kept in the worker (encrypt-client.js); this module only
// handles offsets, retries and answers.
//
// Refusals carry a sentence for the witness: the server's own (translated by ?lang=) or one
// of the page's translated strings (`ctx.s`, read from the page's data- attributes); no
// sentence here is written in any language.

import { encryptInWorker } from "./encrypt-client.js";
import { padme } from "./padding.js";

const TUS = "1.0.0";
const CHUNK = 8 << 20; // ciphertext bytes per PATCH
const WINDOW = 3; // chunks the worker may produce ahead of the upload
const MAX_TRIES = 10; // network errors and 5xx: a Tor circuit can take a while to come back
const MAX_BUSY = 4; // 429/503: the server said it is busy; after that the witness decides

/** age STREAM: plaintext bytes per chunk, and the Poly1305 tag after each chunk. */
export const STREAM_CHUNK = 65536;
export const STREAM_TAG = 16;
/** age payload nonce, between the header and the first chunk. */
export const PAYLOAD_NONCE = 16;
export const TESTIMONY_FORMAT = "guwah-testimony/1";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A refusal with a sentence the witness can act on (in `.message`). */
export class Refused extends Error {}

/** The server has no room for the encrypted path now (507: space, quota): the plain form
 * (the server encrypts as it receives) still works, so the page offers it instead. */
export class NoRoom extends Refused {}

/** The server is busy (429/503) and stayed busy for a few tries: nothing was lost, the
 * witness can try again in a minute with the same words. */
export class Busy extends Refused {}

/** Bytes of the age STREAM payload (nonce, chunks, tags) for `plaintext` bytes: every chunk
 * but the last is full; an empty plaintext still has one (empty) final chunk. The twin of
 * app.crypto's payload_size. */
export function payloadSize(plaintext) {
  const chunks = Math.max(1, Math.ceil(plaintext / STREAM_CHUNK));
  return PAYLOAD_NONCE + plaintext + STREAM_TAG * chunks;
}

/** Ciphertext size of `size` plaintext bytes padded to padme(size), once the age header's
 * length is known (the worker reports it with the first chunk). */
export function ciphertextSize(header, size) {
  return header + payloadSize(padme(size));
}

/**
 * The testimony document (docs/formats.md §5) a browser-encrypted submission carries.
 * `files` are {role, name, content_type, size, sha256}; `parent_id` stays null: the server
 * links a follow-up itself, and the browser is never told the first submission's id.
 */
export function testimonyDocument({ day, desk, lang, testimony, answers = {}, files = [], replyRecipient }) {
  return {
    format: TESTIMONY_FORMAT,
    protection: "browser-encrypted",
    day,
    desk,
    lang,
    testimony,
    answers: {
      where: answers.where ?? "",
      when: answers.when ?? "",
      consent: answers.consent ?? "",
      never_name: answers.never_name ?? "",
    },
    files: files.map(({ role, name, content_type, size, sha256 }) => ({ role, name, content_type, size, sha256 })),
    reply_recipient: replyRecipient,
    parent_id: null,
  };
}

/** Today as the document records it: the UTC day, never a time. */
export function utcDay(now = new Date()) {
  return now.toISOString().slice(0, 10);
}

async function errorOf(res, fallback) {
  try {
    const j = await res.json();
    if (j && typeof j.error === "string") return j.error;
  } catch {
    /* not JSON */
  }
  return fallback;
}

/** The refusal that fits a non-success answer. */
async function refusalOf(ctx, res) {
  if (res.status === 429 || res.status === 503) return new Busy(ctx.s.busy || (await errorOf(res, ctx.s.failed)));
  const message = await errorOf(res, ctx.s.failed);
  return res.status === 507 ? new NoRoom(message) : new Refused(message);
}

const isBusy = (status) => status === 429 || status === 503;
const isTransient = (status) => status >= 500 && status !== 507 && status !== 503;

function withLang(ctx, url) {
  return `${url}${url.includes("?") ? "&" : "?"}lang=${encodeURIComponent(ctx.lang)}`;
}

/**
 * fetch with retries and exponential backoff: network errors and 5xx up to MAX_TRIES,
 * 429/503 up to MAX_BUSY (then the page tells the witness and lets them retry).
 * `seen.network` records whether a request may have reached the server unanswered.
 */
async function retrying(ctx, make, seen = {}) {
  let delay = 500;
  let busy = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await make();
      if (isBusy(res.status)) {
        if (++busy >= MAX_BUSY) return res;
      } else if (!isTransient(res.status) || attempt >= MAX_TRIES) {
        return res;
      }
    } catch {
      seen.network = true;
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
    this.patchMs = 0; // time spent in PATCH requests (performance marks)
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
    if (res.status !== 201) throw await refusalOf(this.ctx, res);
    this.url = res.headers.get("Location");
    this.id = this.url.split("/").pop();
  }

  async head() {
    const res = await retrying(this.ctx, () =>
      fetch(withLang(this.ctx, this.url), { method: "HEAD", headers: this.headers(), cache: "no-store" }),
    );
    if (isBusy(res.status)) throw await refusalOf(this.ctx, res);
    if (res.status !== 200) throw new Refused(this.ctx.s.gone);
    return Number(res.headers.get("Upload-Offset"));
  }

  /** One PATCH of `data` from the acknowledged offset; null if the connection was cut. */
  async patch(data, start) {
    const t0 = performance.now();
    try {
      return await data.put(
        withLang(this.ctx, this.url),
        this.headers({ "Upload-Offset": String(this.offset), "Content-Type": "application/offset+octet-stream" }),
        this.offset - start,
      );
    } catch {
      return null; // connection cut (e.g. a Tor circuit dropped)
    } finally {
      this.patchMs += performance.now() - t0;
    }
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
    let busy = 0;
    let delay = 500;
    while (this.offset < end) {
      if (this.offset < start) throw new Refused(this.ctx.s.gone); // never happens: acked bytes are durable
      const res = await this.patch(data, start);
      if (res && res.status === 204) {
        this.offset = Number(res.headers.get("Upload-Offset"));
        failures = busy = 0;
        delay = 500;
        this.onProgress(this.offset, this.length);
        continue;
      }
      if (res && isBusy(res.status)) {
        if (++busy >= MAX_BUSY) throw await refusalOf(this.ctx, res);
      } else if (res && res.status !== 409 && !isTransient(res.status)) {
        throw await refusalOf(this.ctx, res);
      } else if (++failures > MAX_TRIES) {
        throw new Refused(this.ctx.s.network);
      }
      this.ctx.status(this.ctx.s.retrying);
      // also after a 409: the server may still be finishing the PATCH that was cut
      await sleep(delay);
      delay = Math.min(delay * 2, 15000);
      this.offset = await this.head(); // re-sync: continue exactly where the server stopped
      this.onProgress(this.offset, this.length);
    }
  }
}

/** Performance measures of one file ("guwah:<role> ..."), read by the benchmarks. */
function markTimings(role, start, timings, patchMs) {
  const end = performance.now();
  performance.measure(`guwah:${role} total`, { start, end });
  performance.measure(`guwah:${role} PATCH`, { start, duration: patchMs });
  for (const [k, ms] of Object.entries(timings ?? {})) {
    performance.measure(`guwah:${role} worker ${k}`, { start, duration: ms });
  }
}

/**
 * Encrypt `blob` in the worker to `ctx.recipients` and upload it as `role`.
 * `progress` = {enc(done, total), up(done, total)} (optional). Resolves to
 * {id (upload id), sha256 (of the plaintext)}.
 */
export async function encryptAndUpload(ctx, blob, role, framing, progress = {}) {
  const enc = progress.enc ?? (() => undefined);
  const up = new Upload(ctx, role, blob.size, progress.up ?? (() => undefined));
  const start = performance.now();
  const summary = await encryptInWorker(ctx.worker, blob, ctx.recipients, {
    framing,
    chunkSize: CHUNK,
    window: WINDOW,
    remote: true, // the ciphertext stays in the worker, which sends it (docs/browser-uploads.md)
    onChunk: async (data, _seq, p) => {
      enc(p.plainDone, p.plainTotal);
      await up.send(data);
    },
  });
  enc(1, 1);
  markTimings(role, start, summary.timings, up.patchMs);
  if (up.offset !== up.length || summary.ciphertextSize !== up.length) {
    throw new Refused(ctx.s.failed);
  }
  return { id: up.id, sha256: summary.sha256 };
}

/**
 * Encrypt and upload each file (roles file-1, file-2, …), then the testimony document built
 * from `fields` (see testimonyDocument; `files` are filled in here). `hooks.file(f)` and
 * `hooks.message()` may return progress callbacks for a file and for the testimony.
 * Resolves to {message (upload id), files [{role, upload}]}.
 */
export async function uploadTestimony(ctx, fields, chosen, hooks = {}) {
  const described = [];
  for (let i = 0; i < chosen.length; i++) {
    const f = chosen[i];
    const role = `file-${i + 1}`;
    const r = await encryptAndUpload(ctx, f, role, "attachment", hooks.file?.(f));
    const content_type = f.type || "application/octet-stream";
    described.push({ role, name: f.name, content_type, size: f.size, sha256: r.sha256, upload: r.id });
  }
  const doc = testimonyDocument({ ...fields, files: described });
  const message = new Blob([new TextEncoder().encode(JSON.stringify(doc))]);
  const m = await encryptAndUpload(ctx, message, "message", "testimony", hooks.message?.());
  return { message: m.id, files: described.map((d) => ({ role: d.role, upload: d.upload })) };
}

/** The commit's body (docs/formats.md): the uploads `uploadTestimony` made, for `mailbox`. */
export function commitBody(ctx, sent, mailbox) {
  return {
    csrf: ctx.csrf,
    desk: ctx.desk,
    message_upload: sent.message,
    files: sent.files,
    token_hash: mailbox.tokenHash,
    reply_recipient: mailbox.replyRecipient,
  };
}

/**
 * POST /api/submissions. Resolves to the server's answer ({id, desk, keys}), or to
 * {recovered: true, desk, keys: []} when an earlier attempt was stored but its answer was
 * lost on the way back (the form token is then "used": 409 after a network error), so the
 * witness still gets their confirmation and codename, and nothing is stored twice.
 */
export async function commitSubmission(ctx, body) {
  const seen = {};
  const res = await retrying(
    ctx,
    () =>
      fetch(withLang(ctx, "/api/submissions"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
      }),
    seen,
  );
  if (res.status === 409 && seen.network) return { recovered: true, desk: body.desk, keys: [] };
  if (res.status !== 201) throw await refusalOf(ctx, res);
  return res.json();
}
