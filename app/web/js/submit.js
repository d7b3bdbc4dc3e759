// Witness submission page: progressive enhancement of the plain form (#submit-form).
//
// With this script the browser does all the cryptography: it makes the codename, derives
// the mailbox token hash and reply recipient (mailbox.js, the same KDF as the server),
// builds the testimony document (docs/formats.md §5, "browser-encrypted", SHA-256 of every
// plaintext file), age-encrypts the testimony and each file to the desk's editor keys in a
// Web Worker (padded, in chunks), uploads the ciphertext with tus 1.0 (resumable: after a
// network error it asks the server for its offset with HEAD and continues from there), and
// commits the submission in one request. Nothing readable leaves the page.
//
// Memory stays bounded whatever the file size (docs/browser-uploads.md): the worker produces
// at most WINDOW chunks ahead of the upload into a pool of WINDOW + 1 buffers, keeps them
// (the page handles only offsets and retries; the worker sends each PATCH), and reuses a
// buffer only once the server has acknowledged (and fsynced) its chunk. age encryption is
// randomized, so a resumed upload must continue with the same ciphertext: the chunk being
// sent is kept until it is acknowledged.
//
// Nothing goes to localStorage, sessionStorage, IndexedDB or cookies; the page forgets
// what it held after the receipt is shown and when "Leave quickly" is used. Without
// JavaScript the plain form posts to the server, which seals the parts itself.

import { codenameAhead } from "./codename-ahead.js";
import { encryptInWorker } from "./encrypt-client.js";
import { codenameNumbers, deriveMailbox, newCodename } from "./mailbox.js";
import { padme } from "./padding.js";

export { encryptInWorker };

/** URL of the built worker next to this script (same origin, allowed by script-src 'self'). */
export const WORKER_URL = new URL("./worker.js", import.meta.url).href;

const TUS = "1.0.0";
const CHUNK = 4 << 20; // ciphertext bytes per PATCH
const WINDOW = 3; // chunks the worker may produce ahead of the upload
const STREAM_CHUNK = 65536;
const MAX_TRIES = 10;
const PROBE_BYTES = 1 << 20;
const PROBE_ABOVE = 4 << 20; // smaller submissions are quick anywhere: no measurement
const SLOW_SECONDS = 60;
// Below this encryption speed (bytes/s) a browser is "slow": a JIT-less engine (Tor Browser
// "Safer") does about 2 MB/s, any JIT engine, even a phone's, well over 10 MB/s.
const SLOW_RATE = 8e6;

let state = null; // everything the page holds during a submission; dropped afterwards
let ahead = null; // the codename shown before Send (codename-ahead.js)

function $(sel, root = document) {
  return root.querySelector(sel);
}

function fmt(text, values) {
  return text.replace(/\{(\w+)\}/g, (_, k) => String(values[k] ?? ""));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Refused extends Error {}

/** The server has no room for the encrypted path now (507: space, quota): the plain form
 * (the server encrypts as it receives) still works, so it is offered instead of a dead end. */
class NoRoom extends Refused {}

/** The refusal that fits a non-success answer. */
async function refusalOf(res, fallback) {
  const message = await errorOf(res, fallback);
  return res.status === 507 ? new NoRoom(message) : new Refused(message);
}

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

async function errorOf(res, fallback) {
  try {
    const j = await res.json();
    if (j && typeof j.error === "string") return j.error;
  } catch {
    /* not JSON */
  }
  return fallback;
}

/** One tus upload, fed chunk by chunk by the worker. */
class Upload {
  constructor(ctx, role, plainSize, onProgress) {
    this.ctx = ctx;
    this.role = role;
    this.plainSize = plainSize;
    this.onProgress = onProgress;
    this.url = null;
    this.offset = 0; // what the server has acknowledged
    this.logical = 0; // ciphertext bytes handed to us so far
    this.length = 0;
    this.patchMs = 0; // time spent in PATCH requests (performance marks)
  }

  headers(extra = {}) {
    return { "Tus-Resumable": TUS, ...extra };
  }

  withLang(url) {
    return `${url}${url.includes("?") ? "&" : "?"}lang=${encodeURIComponent(this.ctx.lang)}`;
  }

  /** Create the upload; `first` is the first chunk (its `header` is the age header's length). */
  async create(first) {
    this.length = ciphertextSize(first.header, this.plainSize);
    const meta = `desk ${btoa(unescape(encodeURIComponent(this.ctx.desk)))},role ${btoa(this.role)}`;
    const res = await this.retrying(() =>
      fetch(this.withLang("/api/uploads"), {
        method: "POST",
        headers: this.headers({
          "Upload-Length": String(this.length),
          "Upload-Metadata": meta,
          "Guwah-Form-Token": this.ctx.csrf,
        }),
        credentials: "omit",
        cache: "no-store",
      }),
    );
    if (res.status !== 201) throw await refusalOf(res, this.ctx.s.failed);
    this.url = res.headers.get("Location");
    this.id = this.url.split("/").pop();
  }

  /** fetch with retries on network errors and 5xx/429, exponential backoff. */
  async retrying(make) {
    let delay = 500;
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await make();
        if ((res.status >= 500 && res.status !== 507) || res.status === 429) {
          if (attempt >= MAX_TRIES) return res;
        } else {
          return res;
        }
      } catch (err) {
        this.sawNetworkError = true;
        if (attempt >= MAX_TRIES) throw new Refused(this.ctx.s.network);
      }
      this.ctx.status(this.ctx.s.retrying);
      await sleep(delay);
      delay = Math.min(delay * 2, 15000);
    }
  }

  async head() {
    const res = await this.retrying(() =>
      fetch(this.withLang(this.url), { method: "HEAD", headers: this.headers(), cache: "no-store" }),
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
      if (this.offset < start) throw new Refused(this.ctx.s.gone); // never happens: acked bytes are durable
      let res = null;
      const t0 = performance.now();
      try {
        res = await data.put(
          this.withLang(this.url),
          this.headers({
            "Upload-Offset": String(this.offset),
            "Content-Type": "application/offset+octet-stream",
          }),
          this.offset - start,
        );
      } catch {
        res = null; // connection cut (e.g. a Tor circuit dropped)
      }
      this.patchMs += performance.now() - t0;
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
      if (res && res.status === 507) throw await refusalOf(res, this.ctx.s.failed);
      if (++failures > MAX_TRIES) throw new Refused(this.ctx.s.network);
      this.ctx.status(this.ctx.s.retrying);
      // also after a 409: the server may still be finishing the PATCH that was cut
      await sleep(delay);
      delay = Math.min(delay * 2, 15000);
      this.offset = await this.head(); // re-sync: continue exactly where the server stopped
      this.onProgress(this.offset, this.length);
    }
  }
}

/** One labelled bar with its percentage ("Encryption 40 %"): the label names a step, not a
 * result, so a bar at 0 % never reads as "already encrypted". */
function progressBar(row, label, kind) {
  const line = document.createElement("div");
  line.className = "js-bar";
  const text = document.createElement("span");
  text.className = "js-bar-label";
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = 0;
  bar.className = kind;
  bar.setAttribute("aria-label", label);
  line.append(text, bar);
  row.append(line);
  const set = (done, total) => {
    const share = total ? Math.min(1, done / total) : 1;
    bar.value = share;
    text.textContent = `${label} ${Math.floor(share * 100)} %`;
  };
  text.textContent = `${label} 0 %`;
  return set;
}

function progressRow(container, label, s) {
  const row = document.createElement("div");
  row.className = "js-file";
  const name = document.createElement("p");
  name.textContent = label;
  row.append(name);
  const enc = progressBar(row, s.encrypting, "encrypt");
  const up = progressBar(row, s.uploading, "upload");
  container.append(row);
  // on a phone the bars are below the fold: bring them into view as each one starts
  row.scrollIntoView?.({ block: "nearest" });
  return { enc, up };
}

/** Encrypt `blob` in the worker and upload it as `role`; resolves to {upload id, sha256}. */
async function encryptAndUpload(ctx, blob, role, framing, row) {
  const up = new Upload(ctx, role, blob.size, row.up);
  const start = performance.now();
  const summary = await encryptInWorker(ctx.worker, blob, ctx.recipients, {
    framing,
    chunkSize: CHUNK,
    window: WINDOW,
    remote: true, // the ciphertext stays in the worker, which sends it (docs/browser-uploads.md)
    onChunk: async (data, _seq, p) => {
      row.enc(p.plainDone, p.plainTotal);
      await up.send(data);
    },
  });
  row.enc(1, 1);
  markTimings(role, start, summary.timings, up.patchMs);
  if (up.offset !== up.length || summary.ciphertextSize !== up.length) {
    throw new Refused(ctx.s.failed);
  }
  return { id: up.id, sha256: summary.sha256 };
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
 * This browser's speed (bytes per second) at what a large file costs: encryption with the
 * JavaScript SHA-256 that files over 64 MiB get. The worker is warmed up first (script
 * compiled, key wrapped), so the figure is the steady rate a JIT-less engine differs in,
 * not start-up time.
 */
async function probeSpeed(ctx) {
  const sample = (n) => new Blob([new Uint8Array(n)]);
  const opts = { framing: "attachment", jsHash: true, chunkSize: PROBE_BYTES, onChunk: () => undefined };
  await encryptInWorker(ctx.worker, sample(65536), ctx.recipients, opts);
  const t0 = performance.now();
  await encryptInWorker(ctx.worker, sample(PROBE_BYTES), ctx.recipients, opts);
  const seconds = Math.max((performance.now() - t0) / 1000, 0.001);
  return PROBE_BYTES / seconds;
}

function askToContinue(box, s, seconds) {
  return new Promise((resolve) => {
    const p = document.createElement("p");
    p.className = "js-warning";
    p.textContent = fmt(s.slow, { minutes: Math.max(1, Math.round(seconds / 60)) });
    const go = document.createElement("button");
    go.type = "button";
    go.id = "js-continue";
    go.textContent = s.continue;
    const stop = document.createElement("button");
    stop.type = "button";
    stop.textContent = s.cancel;
    go.addEventListener("click", () => {
      p.remove();
      resolve(true);
    });
    stop.addEventListener("click", () => {
      p.remove();
      resolve(false);
    });
    p.append(" ", go, " ", stop);
    box.append(p);
  });
}

function fieldValue(form, name) {
  const el = form.elements.namedItem(name);
  if (!el) return "";
  if (el instanceof RadioNodeList) return el.value ?? "";
  return el.value ?? "";
}

function chosenDesk(form) {
  const inputs = [...form.querySelectorAll('input[name="desk"]')];
  return inputs.find((i) => i.type === "hidden" || i.checked) ?? null;
}

function showReceipt(ctx, codename, result, fileCount) {
  const tpl = $("#js-receipt");
  const main = $("main");
  const frag = tpl.content.cloneNode(true);
  $(".codename", frag).textContent = codename;
  $("#codename-numbers", frag).textContent = codenameNumbers(codename);
  $(".desk-name", frag).textContent = result.desk;
  const count = $(".files-count", frag);
  count.textContent = fmt(count.dataset.text, { n: fileCount });
  const list = $("ul.keys", frag);
  for (const k of result.keys) {
    const li = document.createElement("li");
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = k.name;
    const code = document.createElement("code");
    code.lang = "en";
    code.dir = "ltr";
    code.textContent = k.fingerprint;
    li.append(who, " ", code);
    list.append(li);
  }
  main.replaceChildren(frag);
  window.scrollTo(0, 0);
}

function forget(form) {
  if (state) {
    state.worker?.terminate();
    if (state.mailbox?.token instanceof Uint8Array) state.mailbox.token.fill(0);
    state = null;
  }
  if (form) form.reset();
  const files = $("#files");
  if (files) files.value = "";
}

async function run(form, s) {
  const deskInput = chosenDesk(form);
  const testimony = fieldValue(form, "testimony");
  const files = [...($("#files")?.files ?? [])];
  const box = $("#js-status");
  const progress = $("#js-progress");
  const button = form.querySelector('button[type="submit"]');
  const showError = (msg) => {
    const p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = msg;
    box.replaceChildren(p);
  };
  if (!deskInput) return showError(s.noDesk);
  if (!testimony.trim() && files.length === 0) return showError(s.empty);
  const maxFiles = Number(form.dataset.maxFiles || 20);
  if (files.length > maxFiles) {
    showError(s.tooMany);
    return offerWithoutFiles(form, box, s);
  }
  const maxBytes = Number(form.dataset.maxFileBytes || 0);
  if (maxBytes && files.some((f) => f.size > maxBytes)) {
    showError(s.tooBig);
    return offerWithoutFiles(form, box, s);
  }

  const ctx = {
    s,
    csrf: fieldValue(form, "csrf"),
    lang: fieldValue(form, "lang") || "en",
    desk: deskInput.value,
    kind: deskInput.dataset.kind,
    recipients: deskInput.dataset.recipients.split(/\s+/).filter(Boolean),
    worker: new Worker(WORKER_URL),
    status: (text) => {
      const p = document.createElement("p");
      p.textContent = text;
      box.replaceChildren(p);
    },
  };
  state = { worker: ctx.worker };
  button.disabled = true;
  progress.replaceChildren();
  try {
    const total = files.reduce((n, f) => n + f.size, 0) + testimony.length;
    if (total > PROBE_ABOVE) {
      ctx.status(s.measuring);
      const speed = await probeSpeed(ctx);
      const seconds = total / speed;
      const slow = Number(form.dataset.slowSeconds || SLOW_SECONDS);
      const slowRate = Number(form.dataset.slowRate || SLOW_RATE);
      if (seconds > slow && speed < slowRate && !(await askToContinue(box, s, seconds))) {
        box.replaceChildren();
        return;
      }
    }
    ctx.status(s.codename);
    const codename = ahead?.codename ?? newCodename();
    const mailbox = await deriveMailbox(codename, ctx.kind);
    state.mailbox = mailbox;

    const described = [];
    for (let i = 0; i < files.length; i++) {
      const f = files[i];
      const role = `file-${i + 1}`;
      ctx.status(fmt(s.sending, { name: f.name }));
      const row = progressRow(progress, f.name, s);
      const r = await encryptAndUpload(ctx, f, role, "attachment", row);
      described.push({
        role,
        name: f.name,
        content_type: f.type || "application/octet-stream",
        size: f.size,
        sha256: r.sha256,
        upload: r.id,
      });
    }
    const doc = {
      format: "guwah-testimony/1",
      protection: "browser-encrypted",
      day: new Date().toISOString().slice(0, 10),
      desk: ctx.desk,
      lang: ctx.lang,
      testimony,
      answers: {
        where: fieldValue(form, "where"),
        when: fieldValue(form, "when"),
        consent: fieldValue(form, "consent"),
        never_name: fieldValue(form, "never_name"),
      },
      files: described.map(({ upload, ...rest }) => rest),
      reply_recipient: mailbox.replyRecipient,
      parent_id: null,
    };
    ctx.status(s.message);
    const message = new Blob([new TextEncoder().encode(JSON.stringify(doc))]);
    const row = progressRow(progress, s.messageLabel, s);
    const m = await encryptAndUpload(ctx, message, "message", "testimony", row);

    ctx.status(s.committing);
    const up = new Upload(ctx, "", 0, () => undefined);
    const res = await up.retrying(() =>
      fetch(up.withLang("/api/submissions"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          csrf: ctx.csrf,
          desk: ctx.desk,
          message_upload: m.id,
          files: described.map((d) => ({ role: d.role, upload: d.upload })),
          token_hash: mailbox.tokenHash,
          reply_recipient: mailbox.replyRecipient,
        }),
        cache: "no-store",
      }),
    );
    if (res.status === 409 && up.sawNetworkError) {
      // The first attempt was stored but its answer was lost on the way back: the form is
      // now "used". The submission exists, so the witness must still get the codename.
      showReceipt(ctx, codename, { desk: ctx.desk, keys: [] }, files.length);
    } else {
      if (res.status !== 201) throw await refusalOf(res, s.failed);
      const result = await res.json();
      showReceipt(ctx, codename, result, files.length);
    }
  } catch (err) {
    // the page stays: every word typed is still in the form, ready to be sent again
    showError(err instanceof Refused ? err.message : s.failed);
    if (err instanceof NoRoom) offerPlainForm(form, box, s);
    else if (files.length > 0) offerWithoutFiles(form, box, s);
    button.disabled = false;
    box.scrollIntoView?.({ block: "nearest" });
    return;
  } finally {
    forget(null);
  }
  forget(form);
}

/** After a 507 on the encrypted path: say so plainly and offer the plain form, which sends
 * the same fields and files to the server's own sealing (form.submit() skips our handler). */
function offerPlainForm(form, box, s) {
  const note = document.createElement("p");
  note.textContent = s.noRoom;
  const plain = document.createElement("button");
  plain.type = "button";
  plain.textContent = s.plainSend;
  plain.addEventListener("click", () => {
    if (ahead?.restore()) {
      // the plain form is stored under the server's codename: show it, ask for the tick again
      note.textContent = s.aheadOther;
      $("#ahead-codename")?.scrollIntoView?.({ block: "center" });
      return;
    }
    if (!form.reportValidity()) return;
    plain.disabled = true;
    HTMLFormElement.prototype.submit.call(form);
  });
  box.append(note, plain);
}

/** After a refusal with files chosen: the text is kept; offer to send it without the files
 * (the witness can also press Send again to retry with them). */
function offerWithoutFiles(form, box, s) {
  const note = document.createElement("p");
  note.textContent = s.keptNote;
  const again = document.createElement("button");
  again.type = "button";
  again.textContent = s.withoutFiles;
  again.addEventListener("click", () => {
    const input = $("#files");
    if (input) input.value = "";
    box.replaceChildren();
    form.requestSubmit();
  });
  box.append(note, again);
}

function init() {
  const form = $("#submit-form");
  const strings = $("#js-strings");
  if (!form || !strings || typeof Worker === "undefined" || !globalThis.crypto?.getRandomValues || typeof ReadableStream === "undefined") {
    return; // the plain form keeps working: the server seals what it receives
  }
  const s = { ...strings.dataset };
  const note = $("#protection");
  if (note) note.textContent = s.protection;
  form.dataset.enhanced = "1";
  ahead = codenameAhead(document);
  form.addEventListener("submit", (ev) => {
    if (fieldValue(form, "website")) return; // let the server answer the honeypot
    ev.preventDefault();
    if (state) return; // already sending
    run(form, s);
  });
  for (const a of document.querySelectorAll("a.leave")) {
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      forget(form);
      $("main")?.replaceChildren();
      window.location.replace(a.href);
    });
  }
}

if (typeof document !== "undefined") init();
