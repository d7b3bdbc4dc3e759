// Returning witness, JavaScript on (built to static/js/return.js, ESM, loaded with SRI).
//
// Takes over the codename form on /return: the browser derives the mailbox itself (the same
// scrypt as the server, mailbox.js), asks POST /api/mailbox for the reply ciphertexts with the
// mailbox token in the request body (hex; never in a URL), decrypts each reply here with the
// reply identity, and renders it as text. The codename and the reply identity never leave this
// page; the server only hashes the token to find the mailbox, and answers an unknown mailbox
// with the same empty list it gives a mailbox with no reply yet.
//
// A follow-up is encrypted here too (worker.js, to the editor keys of the mailbox's desk that
// /api/mailbox names), uploaded as ciphertext and committed through POST /api/submissions
// with the mailbox token, so the server links it to the first submission. The upload client
// is submit.js's (upload-client.js): it resumes cut uploads, recovers an answer lost after
// the commit, and says when the server is busy. Browsers without Web Workers get a button to the server-sealed form instead.
//
// Without this script (JavaScript off, or SRI mismatch) the same form posts to the server,
// which does the same in memory.

import { bech32 } from "@scure/base";
import { bytesToHex } from "@noble/hashes/utils.js";
import { identityToRecipient } from "age-encryption";
import { deleteRepliesBox } from "./delete-replies.js";
import { fill } from "./i18n.js";
import { CodenameError, decryptReply, deriveMailbox, normalizeCodename } from "./mailbox.js";
import { Busy, Refused, commitBody, commitSubmission, uploadTestimony, utcDay } from "./upload-client.js";

/** The worker next to this script (same origin: allowed by script-src 'self'). */
const WORKER_URL = new URL("./worker.js", import.meta.url).href;

const form = document.getElementById("return-form");
const msgs = document.getElementById("return-js");

function msg(name) {
  return msgs?.dataset[name] ?? "";
}

function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function base64ToBytes(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The post-quantum reply identity made from the same 32-byte seed as the X25519 one. */
function hybridIdentity(x25519Identity) {
  const seed = bech32.decodeToBytes(x25519Identity.toLowerCase()).bytes;
  const identity = bech32.encodeFromBytes("AGE-SECRET-KEY-PQ-", seed).toUpperCase();
  seed.fill(0);
  return identity;
}

async function openReply(bytes, identities) {
  for (const identity of identities()) {
    try {
      const plain = await decryptReply(bytes, identity);
      const doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plain).trimEnd());
      plain.fill(0);
      if (doc && doc.format === "guwah-reply/1" && typeof doc.text === "string") return doc;
      return null;
    } catch {
      // not this kind of identity (or damaged): try the next, then report it as unreadable
    }
  }
  return null;
}

function showError(text) {
  let p = document.getElementById("return-error");
  if (!p) {
    p = el("p", { id: "return-error", class: "error", role: "alert" });
    form.after(p);
  }
  p.textContent = text;
}

function renderReplies(section, replies) {
  section.append(el("h2", {}, msg("msgReplies")));
  if (replies.length === 0) {
    section.append(el("p", { id: "no-replies" }, msg("msgNone")));
    return;
  }
  const list = el("ol", { class: "replies", id: "replies" });
  for (const reply of replies) {
    const li = el("li", { class: "reply" });
    li.append(el("p", { class: "day" }, fill(msg("msgReceived"), { day: reply.day })));
    if (reply.text === null) {
      li.append(el("p", { class: "reply-text unreadable", dir: "auto" }, msg("msgUnreadable")));
    } else {
      const div = el("div", { class: "reply-text", dir: "auto" });
      reply.text.split("\n").forEach((line, i) => {
        if (i > 0) div.append(el("br"));
        div.append(document.createTextNode(line));
      });
      li.append(div);
    }
    list.append(li);
  }
  section.append(list);
}

/** The server-sealed way: post the codename form itself (the witness chose it). */
function fallbackFollowUp(section, onFollowUp) {
  section.append(el("p", {}, msg("msgFollowUpNote")));
  const button = el("button", { type: "button", id: "follow-up-open" }, msg("msgFollowUpButton"));
  button.addEventListener("click", onFollowUp);
  section.append(button);
}

/** The follow-up form's fields: text, files, Send, and a status line. */
function followUpFields() {
  const box = el("form", { id: "follow-up-js" });
  box.append(el("p", {}, msg("msgFollowUpJs")));
  box.append(el("label", { for: "follow-up-text" }, msg("msgAdd")));
  const text = el("textarea", { id: "follow-up-text", rows: "8", spellcheck: "false", dir: "auto" });
  box.append(text);
  box.append(el("label", { for: "follow-up-files" }, msg("msgFiles")));
  const files = el("input", { id: "follow-up-files", type: "file", multiple: "" });
  box.append(files);
  box.append(el("p", { class: "protection" }, msg("msgFollowUpProtection")));
  const send = el("button", { type: "submit" }, msg("msgSend"));
  box.append(send);
  const status = el("div", { id: "follow-up-status", role: "status" });
  box.append(status);
  const say = (line, cls = null) => status.replaceChildren(el("p", cls ? { class: cls } : {}, line));
  return { box, text, files, send, say };
}

/** The page's sentence for what the browser can refuse before sending, or null. */
function followUpRefusal(testimony, chosen) {
  if (!testimony.trim() && chosen.length === 0) return msg("msgEmpty");
  if (chosen.length > Number(msgs.dataset.maxFiles || 20)) return msg("msgTooMany");
  const maxBytes = Number(msgs.dataset.maxFileBytes || 0);
  if (maxBytes && chosen.some((f) => f.size > maxBytes)) return msg("msgTooBig");
  return null;
}

/** Encrypt, upload and commit one follow-up with the mailbox token (the server links it). */
async function sendFollowUp(ctx, mailbox, testimony, chosen) {
  const fields = { day: utcDay(), desk: ctx.desk, lang: ctx.lang, testimony, replyRecipient: mailbox.replyRecipient };
  const sent = await uploadTestimony(ctx, fields, chosen);
  await commitSubmission(ctx, { ...commitBody(ctx, sent, mailbox), mailbox_token: mailbox.tokenHex });
}

/** The browser-encrypted follow-up form; `mailbox` = {tokenHex, tokenHash, replyRecipient}. */
function followUpForm(section, desk, mailbox) {
  const s = { ...msgs.dataset };
  const { box, text, files, send, say } = followUpFields();
  box.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (send.disabled) return;
    const chosen = [...(files.files ?? [])];
    const testimony = text.value;
    const refusal = followUpRefusal(testimony, chosen);
    if (refusal !== null) return say(refusal, "error");
    send.disabled = true;
    const ctx = {
      s,
      csrf: form.querySelector('input[name="csrf"]').value,
      lang: document.documentElement.lang || "en",
      desk: desk.name,
      recipients: desk.recipients,
      worker: new Worker(WORKER_URL),
      status: (line) => say(line),
    };
    try {
      say(msg("msgSending"));
      await sendFollowUp(ctx, mailbox, testimony, chosen);
      const done = el("div", { id: "follow-up-received" });
      done.append(el("h3", {}, msg("msgSent")), el("p", {}, msg("msgSentNote")));
      box.replaceWith(done);
    } catch (err) {
      // the words stay in the form; Send, enabled again, is the retry
      say(err instanceof Refused ? err.message : msg("failed"), "error");
      send.disabled = false;
      if (err instanceof Busy) send.focus();
    } finally {
      ctx.worker.terminate();
    }
  });
  section.append(box);
}

function renderMailbox(replies, desk, mailbox, onFollowUp) {
  const main = form.parentElement;
  const section = el("section", { id: "mailbox-js", "aria-live": "polite" });
  renderReplies(section, replies);
  if (replies.length > 0) {
    section.append(deleteRepliesBox(mailbox.tokenHex, msg, () => document.getElementById("replies")?.remove()));
  }
  section.append(el("h2", { id: "follow-up" }, msg("msgFollowUp")));
  if (desk && typeof Worker !== "undefined" && typeof ReadableStream !== "undefined") {
    followUpForm(section, desk, mailbox);
  } else {
    fallbackFollowUp(section, onFollowUp);
  }
  main.append(section);
}

function start() {
  if (!form || !msgs) return;
  const note = document.getElementById("return-protection");
  if (note) note.textContent = msg("msgProtection");
  const input = form.querySelector("#codename");
  const button = form.querySelector("button[type=submit]");
  let busy = false;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    document.getElementById("return-error")?.remove();
    document.getElementById("mailbox-js")?.remove();
    let normalized;
    try {
      normalized = normalizeCodename(input.value);
    } catch (err) {
      // the page's translated sentence for this reason (return.html data-msg-codename-*)
      const code = err instanceof CodenameError ? err.code : "";
      const key = `msgCodename${code.charAt(0).toUpperCase()}${code.slice(1)}`;
      // never the English err.message: a reason the page has no sentence for reads as a typo
      showError(msg(key) || msg("msgCodenameWord"));
      return;
    }
    busy = true;
    button.disabled = true;
    const status = el("p", { id: "return-status", role: "status" }, msg("msgOpening"));
    form.after(status);
    let mailbox = null;
    try {
      mailbox = await deriveMailbox(normalized, "X25519", {
        onProgress: (f) => {
          status.textContent = `${msg("msgOpening")} ${Math.round(f * 100)}%`;
        },
      });
      const response = await fetch("/api/mailbox", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ token: bytesToHex(mailbox.token) }),
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
      if (!response.ok) throw new Error("mailbox request failed");
      const answer = await response.json();
      const x25519 = mailbox.replyIdentity;
      let pq = null;
      const identities = function* () {
        yield x25519;
        pq = pq ?? hybridIdentity(x25519);
        yield pq;
      };
      const replies = [];
      for (const item of answer.replies ?? []) {
        const doc = await openReply(base64ToBytes(String(item.age)), identities);
        const day = doc && /^\d{4}-\d{2}-\d{2}$/.test(String(doc.day)) ? doc.day : String(item.day);
        replies.push({ day, text: doc ? doc.text : null });
      }
      input.value = "";
      const desk = answer.desk && Array.isArray(answer.desk.recipients) ? answer.desk : null;
      const followUp = {
        tokenHex: bytesToHex(mailbox.token),
        tokenHash: mailbox.tokenHash,
        replyRecipient:
          desk?.kind === "mlkem768x25519"
            ? await identityToRecipient(pq ?? hybridIdentity(x25519))
            : mailbox.replyRecipient,
      };
      renderMailbox(replies, desk, followUp, () => {
        // The follow-up form needs the server to seal the parts (JavaScript-off path): the
        // witness chose this, so the codename goes to the server once, as without JavaScript.
        input.value = normalized;
        form.submit();
      });
    } catch {
      showError(msg("msgFailed"));
    } finally {
      mailbox?.token.fill(0);
      mailbox = null;
      status.remove();
      busy = false;
      button.disabled = false;
    }
  });
}

start();
