// Returning witness, JavaScript on (built to static/js/return.js, ESM, loaded with SRI).
//
// Takes over the codename form on /return: the browser derives the mailbox itself (the same
// scrypt as the server, mailbox.js), asks POST /api/mailbox for the reply ciphertexts with the
// mailbox token in the request body (hex; never in a URL), decrypts each reply here with the
// reply identity, and renders it as text. The codename and the reply identity never leave this
// page; the server only hashes the token to find the mailbox, and answers an unknown mailbox
// with the same empty list it gives a mailbox with no reply yet.
//
// Without this script (JavaScript off, or SRI mismatch) the same form posts to the server,
// which does the same in memory.

import { bech32 } from "@scure/base";
import { bytesToHex } from "@noble/hashes/utils.js";
import { CodenameError, decryptReply, deriveMailbox, normalizeCodename } from "./mailbox.js";

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

function renderMailbox(replies, onFollowUp) {
  const main = form.parentElement;
  const section = el("section", { id: "mailbox-js", "aria-live": "polite" });
  section.append(el("h2", {}, msg("msgReplies")));
  if (replies.length === 0) {
    section.append(el("p", { id: "no-replies" }, msg("msgNone")));
  } else {
    const list = el("ol", { class: "replies", id: "replies" });
    for (const reply of replies) {
      const li = el("li", { class: "reply" });
      li.append(el("p", { class: "day" }, msg("msgReceived").replace("{day}", reply.day)));
      if (reply.text === null) {
        li.append(el("p", { class: "reply-text unreadable" }, msg("msgUnreadable")));
      } else {
        const div = el("div", { class: "reply-text" });
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
  section.append(el("h2", { id: "follow-up" }, msg("msgFollowUp")));
  section.append(el("p", {}, msg("msgFollowUpNote")));
  const button = el("button", { type: "button", id: "follow-up-open" }, msg("msgFollowUpButton"));
  button.addEventListener("click", onFollowUp);
  section.append(button);
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
      showError(err instanceof CodenameError ? err.message : String(err));
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
      renderMailbox(replies, () => {
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
