"""The returning witness: read replies with the codename, and send a follow-up into the mailbox.

This module reads mailboxes and seals follow-up tickets; the routes are in
app/web/routers/mailbox.py:

- ``GET /return``: the codename form.  With JavaScript, ``static/js/return.js`` (Subresource
  Integrity) takes it over: the browser derives the mailbox itself, fetches the reply
  ciphertexts from ``POST /api/mailbox`` and decrypts them; the codename never leaves it.
- ``POST /return`` (JavaScript off): the server derives the mailbox in memory (the bounded
  KDF: at most ``kdf_concurrency`` at once, else 503 "busy"), reads the replies by token hash,
  decrypts them with the derived reply identity, renders them and forgets all of it: no
  session, no cookie.  A codename that opens no mailbox gets *the same page* as a mailbox with
  no reply yet, at the same cost (the KDF always runs, the same lookups are made), so the
  answer never tells whether a mailbox exists.
- ``POST /api/mailbox`` ``{"token": "<64 hex>"}`` → ``{"replies": [{"day", "age"}], "desk":
  {"name", "kind", "recipients"}}`` (age = base64 of the reply's age file; desk = where a
  follow-up goes, see :func:`follow_up_desk`); an unknown token gets exactly what a used
  mailbox without reply gets.  The token is only ever in this body (never
  in a URL); the server hashes it and keeps nothing.  A follow-up with JavaScript on is
  encrypted in the browser and committed through ``POST /api/submissions`` with
  ``mailbox_token`` (app/web/routers/commit.py), which links it to the first submission.
- ``POST /mailbox/follow-up`` (JavaScript off, multipart): sealed exactly like a first
  submission (app/web/sealing.py, ``follow_up=``) and linked to the mailbox.
- ``POST /mailbox/delete-replies`` and ``POST /api/mailbox/delete-replies``: the witness
  deletes the editors' replies, behind a confirmation (app/web/routers/withdraw.py).

The follow-up form does not echo the codename: it carries a *ticket*, the codename sealed
with ChaCha20-Poly1305 under a key derived from the server key, padded to a fixed length and
valid as long as a form token.  So the mailbox page holds no secret in clear, and it is byte
for byte the same, apart from its form tokens, for every codename that has no reply.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import secrets
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from app.crypto import AgeError, HybridIdentity, X25519Identity, decrypt, read_header
from app.crypto.mailbox import kdf, normalize_codename, token_hash
from app.protocol.followup import first_submission
from app.protocol.ids import DAY, HEX64, is_a
from app.store import Desk, Store

from . import sealing
from .errors import N_, BadForm, Busy, Refusal
from .forms import TOKEN_LIFETIME_HOURS

log = logging.getLogger("guwah.web")

REPLY_FORMAT = "guwah-reply/1"
HYBRID = "mlkem768x25519"
MAX_REPLIES = 500  # per mailbox page; an editor desk will never send this many
MAX_REPLY_BYTES = 4 * 1024 * 1024  # a reply is text (≤ 100,000 characters, padded)
API_BODY_BYTES = 1024
# CodenameError.code -> the sentence the witness sees (app/crypto/codename.py)
CODENAME_REFUSALS = {
    "count": "codename_words",
    "word": "codename_word",
    "number": "codename_number",
    "check": "codename_check",
}
TICKET_PAD = 128  # a normalized codename is at most 7 * 9 + 6 = 69 bytes


def mailbox_token(doc: dict[str, object]) -> bytes:
    """The mailbox token of a JSON request (``"token"``: 64 hex digits); BadForm otherwise."""
    hexed = doc.get("token")
    if not isinstance(hexed, str) or not is_a(HEX64, hexed):
        raise BadForm()
    return bytes.fromhex(hexed)

FOLLOW_UP_MSG = {
    "ticket": N_(
        "This follow-up form has expired. Nothing was kept. "
        "Enter your codename again to open your mailbox, then send it from there."
    ),
}


@dataclass(frozen=True)
class ShownReply:
    """One reply as the page shows it: the day and the text (None: could not be opened)."""

    day: str
    text: str | None


# --------------------------------------------------------------------------- tickets
class MailboxTickets:
    """Seal a codename into the follow-up form, and open it again when the form comes back."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(
            hashlib.sha256(b"guwah.org/v1/mailbox-ticket\x00" + key).digest()
        )

    def seal(self, codename: str) -> str:
        raw = codename.encode("utf-8")
        if len(raw) > TICKET_PAD:
            raise ValueError("codename too long for a ticket")
        nonce = secrets.token_bytes(12)
        plain = struct.pack(">I", _hour()) + raw + b"\x00" * (TICKET_PAD - len(raw))
        sealed = self._aead.encrypt(nonce, plain, b"guwah mailbox ticket v1")
        return "v1." + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, ticket: str) -> str:
        """The normalized codename in a genuine, fresh ticket; Refusal otherwise."""
        try:
            version, body = ticket.split(".")
            if version != "v1" or len(body) > 400:
                raise ValueError
            data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = self._aead.decrypt(data[:12], data[12:], b"guwah mailbox ticket v1")
            (hour,) = struct.unpack(">I", plain[:4])
            if not 0 <= _hour() - hour <= TOKEN_LIFETIME_HOURS:
                raise ValueError
            return normalize_codename(plain[4:].rstrip(b"\x00").decode("utf-8"))
        except (ValueError, InvalidTag, binascii.Error, struct.error, UnicodeDecodeError):
            raise Refusal(403, FOLLOW_UP_MSG["ticket"]) from None


def _hour() -> int:
    return int(time.time() // 3600)


# --------------------------------------------------------------------------- reading
def derive(kdf_slots: threading.BoundedSemaphore, codename: str) -> tuple[bytes, bytes]:
    """(token, reply seed) for a normalized codename, under the server's KDF bound."""
    if not kdf_slots.acquire(timeout=sealing.KDF_WAIT_SECONDS):
        raise Busy()
    try:
        out = kdf(codename)
    finally:
        kdf_slots.release()
    return out[:32], out[32:64]


def read_replies(store: Store, token: bytes, seed: bytes) -> list[ShownReply]:
    """Look up and decrypt a mailbox's replies in memory.

    The same steps run whether the mailbox exists or not: hash, one lookup, build the reply
    identity; only the number of replies changes the work, and a mailbox with replies is one
    whose codename the visitor already holds.
    """
    hashed = token_hash(token)
    infos = store.replies(hashed)[:MAX_REPLIES]
    x25519 = X25519Identity.from_secret(seed)
    hybrid: HybridIdentity | None = None
    shown: list[ShownReply] = []
    for info in infos:
        fallback_day = info.day.isoformat()
        try:
            data = _reply_bytes(store, info.id, hashed)
            if data is None:
                raise ValueError("reply too large")
            kinds = {s.type for s in read_header(io.BytesIO(data)).stanzas}
            # Any: app.crypto's Identity protocol declares ``type`` settable, its classes
            # make it read-only, so neither identity class matches it for mypy
            identity: Any = x25519
            if HYBRID in kinds:
                hybrid = hybrid or HybridIdentity.from_seed(seed)
                identity = hybrid
            plain = decrypt(data, [identity])
            del data
            doc = json.loads(plain.rstrip(b" ").decode("utf-8"))
            del plain
            if not isinstance(doc, dict) or doc.get("format") != REPLY_FORMAT:
                raise ValueError("not a reply")
            text = doc.get("text")
            day = doc.get("day")
            if not isinstance(text, str):
                raise ValueError("reply without text")
            shown.append(ShownReply(day if isinstance(day, str) and is_a(DAY, day)
                                    else fallback_day, text))
        except (AgeError, ValueError, OSError, LookupError):
            # a reply this mailbox cannot open: say so, never why (nothing about its content)
            log.warning("a stored reply could not be opened")
            shown.append(ShownReply(fallback_day, None))
    return shown


def follow_up_desk(store: Store, hashed: str, *, has_replies: bool) -> Desk | None:
    """The desk a browser-encrypted follow-up into this mailbox is encrypted to, or None.

    With one desk, that desk, for every mailbox. With several, the desk of the mailbox's first
    submission only when the mailbox holds replies (whoever reads them knows the mailbox is
    used); otherwise None for used and unused mailboxes alike, and the page offers the
    follow-up sealed by the server, which links it to the right desk without saying which
    (sealing.py). Naming the desk there would tell a person holding a codename that it was used.
    """
    available = [d for d in store.list_desks() if d.recipients]
    if len(available) == 1:
        return available[0]
    if not has_replies:
        return None
    first = first_submission(store.list_submissions(token_hash=hashed))
    named = next((d for d in available if first is not None and d.name == first.desk), None)
    return named or (available[0] if available else None)


def mailbox_answer(store: Store, token: bytes) -> dict[str, Any]:
    """The JSON answer of POST /api/mailbox: ciphertexts, and where a follow-up goes."""
    replies = reply_ciphertexts(store, token)
    desk = follow_up_desk(store, token_hash(token), has_replies=bool(replies))
    return {
        "replies": replies,
        "desk": None if desk is None else {
            "name": desk.name,
            "kind": desk.kind,
            "recipients": [k.age_recipient for k in desk.recipients],
        },
    }


def _reply_bytes(store: Store, reply_id: str, hashed: str) -> bytes | None:
    """A reply's age file, or None when it is larger than any reply can be."""
    fh = store.open_reply(reply_id, hashed)
    try:
        data = fh.read(MAX_REPLY_BYTES + 1)
    finally:
        fh.close()
    return None if len(data) > MAX_REPLY_BYTES else data


def reply_ciphertexts(store: Store, token: bytes) -> list[dict[str, str]]:
    hashed = token_hash(token)
    out: list[dict[str, str]] = []
    for info in store.replies(hashed)[:MAX_REPLIES]:
        data = _reply_bytes(store, info.id, hashed)
        if data is None:
            continue
        out.append({"day": info.day.isoformat(), "age": base64.b64encode(data).decode("ascii")})
    return out


