// Witness submission page: progressive enhancement of the plain form (#submit-form).
//
// With this script the browser does all the cryptography: it makes the codename, derives
// the mailbox token hash and reply recipient (mailbox.js, the same KDF as the server),
// builds the testimony document (docs/formats.md §5, "browser-encrypted", SHA-256 of every
// plaintext file), age-encrypts the testimony and each file to the desk's editor keys in a
// Web Worker (padded, in chunks), uploads the ciphertext with tus 1.0 (upload-client.js, shared with return.js; resumable: after a
// network error it asks the server for its offset with HEAD and continues from there), and
// commits the submission in one request (an answer lost on the way back still ends on the
// receipt). Nothing readable leaves the page.
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
import { Busy, NoRoom, Refused, commitBody, commitSubmission, uploadTestimony, utcDay } from "./upload-client.js";
import { fill, plural } from "./i18n.js";
import { SLOW_RATE, measuredSpeed } from "./speed-probe.js";

export { encryptInWorker };

/** URL of the built worker next to this script (same origin, allowed by script-src 'self'). */
export const WORKER_URL = new URL("./worker.js", import.meta.url).href;

const PROBE_BYTES = 1 << 20;
const PROBE_ABOVE = 4 << 20; // smaller submissions are quick anywhere: no measurement
const SLOW_SECONDS = 60;

let state = null; // everything the page holds during a submission; dropped afterwards
let ahead = null; // the codename shown before Send (codename-ahead.js)

function $(sel, root = document) {
  return root.querySelector(sel);
}

const fmt = fill;

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

/**
 * This browser's speed (bytes per second) at what a large file costs: encryption with the
 * JavaScript SHA-256 that files over 64 MiB get. The worker is warmed up first (script
 * compiled, key wrapped), so the figure is the steady rate a JIT-less engine differs in,
 * not start-up time.
 */
async function probeSpeed(ctx) {
  const sample = (n) => new Blob([new Uint8Array(n)]);
  // the JS SHA-256 in this worker, after the encryption: a conservative rate, and one that
  // a second core busy elsewhere cannot disturb
  const opts = { framing: "attachment", jsHash: true, inlineHash: true, chunkSize: PROBE_BYTES, onChunk: () => undefined };
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
    const minutes = Math.max(1, Math.round(seconds / 60));
    p.textContent = fmt(plural($("#js-strings"), "slow", minutes), { minutes });
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
  count.textContent = fmt(plural(count, "text", fileCount), { n: fileCount });
  const list = $("ul.keys", frag);
  for (const k of result.keys) {
    const li = document.createElement("li");
    const who = document.createElement("span");
    who.className = "who";
    who.dir = "auto"; // a name the operator typed, in any script
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

/** An error line at the top of the status box (it replaces what was there). */
function showError(box, msg) {
  const p = document.createElement("p");
  p.className = "error";
  p.setAttribute("role", "alert");
  p.textContent = msg;
  box.replaceChildren(p);
}

/** What the browser can check before anything is sent; false (and says why) if not. */
function checkBeforeSending(form, box, s, deskInput, testimony, files) {
  if (!deskInput) return showError(box, s.noDesk), false;
  if (!testimony.trim() && files.length === 0) return showError(box, s.empty), false;
  const maxFiles = Number(form.dataset.maxFiles || 20);
  const maxBytes = Number(form.dataset.maxFileBytes || 0);
  const refusal = files.length > maxFiles ? s.tooMany : maxBytes && files.some((f) => f.size > maxBytes) ? s.tooBig : null;
  if (refusal === null) return true;
  showError(box, refusal);
  offerWithoutFiles(form, box, s);
  return false;
}

/** Everything the upload client needs for one submission. */
function submissionContext(form, s, box, deskInput) {
  return {
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
}

/** On a large submission, measure this browser first and let the witness decide if slow;
 * resolves to false if they chose not to continue. */
async function slowBrowserAgreed(form, ctx, box, s, total) {
  if (total <= PROBE_ABOVE) return true;
  ctx.status(s.measuring);
  const slow = Number(form.dataset.slowSeconds || SLOW_SECONDS);
  const slowRate = Number(form.dataset.slowRate || SLOW_RATE);
  const speed = await measuredSpeed(() => probeSpeed(ctx), slowRate);
  const seconds = total / speed;
  if (seconds > slow && speed < slowRate && !(await askToContinue(box, s, seconds))) {
    box.replaceChildren();
    return false;
  }
  return true;
}

/** The testimony document's fields taken from the form. */
function formFields(form, ctx, testimony, mailbox) {
  return {
    day: utcDay(),
    desk: ctx.desk,
    lang: ctx.lang,
    testimony,
    answers: {
      where: fieldValue(form, "where"),
      when: fieldValue(form, "when"),
      consent: fieldValue(form, "consent"),
      never_name: fieldValue(form, "never_name"),
    },
    replyRecipient: mailbox.replyRecipient,
  };
}

/** Progress rows for each file and for the testimony, with the status line for each. */
function progressHooks(ctx, progress, s) {
  return {
    file: (f) => {
      ctx.status(fmt(s.sending, { name: f.name }));
      return progressRow(progress, f.name, s);
    },
    message: () => {
      ctx.status(s.message);
      return progressRow(progress, s.messageLabel, s);
    },
  };
}

/** Make the codename, encrypt and upload everything, commit; resolves to the codename and
 * the server's answer. */
async function send(form, ctx, testimony, files, progress) {
  const s = ctx.s;
  ctx.status(s.codename);
  const codename = ahead?.codename ?? newCodename();
  const mailbox = await deriveMailbox(codename, ctx.kind);
  state.mailbox = mailbox;
  const sent = await uploadTestimony(ctx, formFields(form, ctx, testimony, mailbox), files, progressHooks(ctx, progress, s));
  ctx.status(s.committing);
  const result = await commitSubmission(ctx, commitBody(ctx, sent, mailbox));
  return { codename, result };
}

/** The page stays after a refusal: every word typed is still in the form; say why and
 * offer the way on that fits. */
function showRefusal(form, box, s, err, hasFiles) {
  showError(box, err instanceof Refused ? err.message : s.failed);
  form.querySelector('button[type="submit"]').disabled = false;
  if (err instanceof NoRoom) offerPlainForm(form, box, s);
  else if (err instanceof Busy) offerRetry(form, box, s, hasFiles);
  else if (hasFiles) offerWithoutFiles(form, box, s);
  box.scrollIntoView?.({ block: "nearest" });
}

async function run(form, s) {
  const deskInput = chosenDesk(form);
  const testimony = fieldValue(form, "testimony");
  const files = [...($("#files")?.files ?? [])];
  const box = $("#js-status");
  const progress = $("#js-progress");
  if (!checkBeforeSending(form, box, s, deskInput, testimony, files)) return;
  const ctx = submissionContext(form, s, box, deskInput);
  state = { worker: ctx.worker };
  form.querySelector('button[type="submit"]').disabled = true;
  progress.replaceChildren();
  try {
    const total = files.reduce((n, f) => n + f.size, 0) + testimony.length;
    if (!(await slowBrowserAgreed(form, ctx, box, s, total))) {
      form.querySelector('button[type="submit"]').disabled = false;
      return;
    }
    const { codename, result } = await send(form, ctx, testimony, files, progress);
    showReceipt(ctx, codename, result, files.length);
  } catch (err) {
    showRefusal(form, box, s, err, files.length > 0);
    return;
  } finally {
    forget(null);
  }
  forget(form);
}

/** After a busy answer (429/503) that lasted: nothing was stored and the words are kept;
 * the Send button, enabled again and focused, is the retry (with or without the files). */
function offerRetry(form, box, s, hasFiles) {
  if (hasFiles) offerWithoutFiles(form, box, s);
  form.querySelector('button[type="submit"]').focus();
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
