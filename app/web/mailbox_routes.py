"""The returning witness: read replies with the codename, and send a follow-up into the mailbox.

Routes (registered by ``create_app``):

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
  ``mailbox_token`` (app/web/commit.py), which links it to the first submission.
- ``POST /mailbox/follow-up`` (JavaScript off, multipart): sealed exactly like a first
  submission (app/web/sealing.py, ``follow_up=``) and linked to the mailbox.

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
import time
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from python_multipart.multipart import parse_options_header

from app.crypto import AgeError, HybridIdentity, X25519Identity, decrypt, read_header
from app.crypto.mailbox import CodenameError, kdf, normalize_codename, token_hash
from app.protocol.followup import first_submission
from app.protocol.ids import DAY, HEX64, is_a

from . import sealing
from .errors import MSG, N_, Refusal
from .forms import TOKEN_LIFETIME_HOURS, cross_site
from .jsonbody import parse_json
from .scripts import PageScript, page_script
from .withdraw_routes import withdraw_router

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
def derive(web: Any, codename: str) -> tuple[bytes, bytes]:
    """(token, reply seed) for a normalized codename, under the server's KDF bound."""
    if not web.kdf_slots.acquire(timeout=sealing.KDF_WAIT_SECONDS):
        raise Refusal(503, MSG["busy"])
    try:
        out = kdf(codename)
    finally:
        web.kdf_slots.release()
    return out[:32], out[32:64]


def read_replies(store: Any, token: bytes, seed: bytes) -> list[ShownReply]:
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
            fh = store.open_reply(info.id, hashed)
            try:
                data = fh.read(MAX_REPLY_BYTES + 1)
            finally:
                fh.close()
            if len(data) > MAX_REPLY_BYTES:
                raise ValueError("reply too large")
            kinds = {s.type for s in read_header(io.BytesIO(data)).stanzas}
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
            shown.append(ShownReply(day if is_a(DAY, day)
                                    else fallback_day, text))
        except (AgeError, ValueError, OSError, LookupError):
            # a reply this mailbox cannot open: say so, never why (nothing about its content)
            log.warning("a stored reply could not be opened")
            shown.append(ShownReply(fallback_day, None))
    return shown


def follow_up_desk(store: Any, hashed: str, *, has_replies: bool) -> Any:
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


def mailbox_answer(store: Any, token: bytes) -> dict[str, Any]:
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


def reply_ciphertexts(store: Any, token: bytes) -> list[dict[str, str]]:
    hashed = token_hash(token)
    out: list[dict[str, str]] = []
    for info in store.replies(hashed)[:MAX_REPLIES]:
        fh = store.open_reply(info.id, hashed)
        try:
            data = fh.read(MAX_REPLY_BYTES + 1)
        finally:
            fh.close()
        if len(data) > MAX_REPLY_BYTES:
            continue
        out.append({"day": info.day.isoformat(), "age": base64.b64encode(data).decode("ascii")})
    return out


# --------------------------------------------------------------------------- routes
def _return_script() -> PageScript | None:
    """return.js, its integrity hash and its shared modules, when built."""
    from .app import STATIC_DIR

    return page_script(STATIC_DIR / "js", "return.js")


def mailbox_router(web: Any) -> APIRouter:
    """Routes of the returning witness, bound to the app's shared state ``web``."""
    from .app import _form_key, _seal_request, _small_form, render

    router = APIRouter()
    tickets = MailboxTickets(_form_key(web.settings))
    script = _return_script()

    def desks() -> list[Any]:
        return [d for d in web.store.list_desks() if d.recipients]

    def mailbox_page(request: Request, replies: list[ShownReply] | None, ticket: str,
                     refusal: Refusal | None = None) -> Response:
        """The mailbox; after a refused follow-up (``refusal``), only its follow-up form,
        refilled from memory with what the witness wrote, the reason on top."""
        kept = (refusal.form or {}) if refusal is not None else {}
        return render(
            web, request.scope, "mailbox.html", refusal.status if refusal else 200,
            replies=replies, token=web.tokens.issue(), ticket=ticket,
            max_files=web.settings.max_files, max_file_bytes=web.settings.max_file_bytes,
            max_text_chars=web.settings.max_text_chars,
            kept=kept, refusal=refusal.message if refusal else None,
            refusal_status=refusal.status if refusal else None,
            text_lost="testimony" not in kept,
        )

    @router.get("/return", response_class=HTMLResponse)
    async def return_form(request: Request) -> Response:
        return render(web, request.scope, "return.html", token=web.tokens.issue(),
                      js=script, max_files=web.settings.max_files,
                      max_file_bytes=web.settings.max_file_bytes)

    @router.post("/return", response_class=HTMLResponse)
    async def return_check(request: Request) -> Response:
        form = await _small_form(request)
        if web.tokens.check(form.get("csrf", "")) is None:
            raise Refusal(403, MSG["csrf"])
        typed = form.pop("codename", "")
        try:
            codename = normalize_codename(typed)
        except CodenameError as err:
            raise Refusal(422, MSG[CODENAME_REFUSALS[err.code]]) from None
        del typed

        def work(normalized: str) -> tuple[list[ShownReply], str]:
            token, seed = derive(web, normalized)
            try:
                return read_replies(web.store, token, seed), tickets.seal(normalized)
            finally:
                del token, seed

        replies, ticket = await anyio.to_thread.run_sync(work, codename)
        del codename
        return mailbox_page(request, replies, ticket)

    @router.post("/api/mailbox")
    async def api_mailbox(request: Request) -> Response:
        def refuse(status: int, message: str) -> Response:
            lang = web.catalogs.pick(request.scope.get("guwah.lang")).code
            return JSONResponse({"error": web.catalogs.get(lang).gettext(message)},
                                status_code=status)

        if cross_site(dict(request.headers), request.headers.get("host")):
            return refuse(403, MSG["cross_site"])
        ctype = parse_options_header(request.headers.get("content-type", ""))[0]
        if ctype != b"application/json":
            return refuse(415, MSG["content_type"])
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > API_BODY_BYTES:
                return refuse(413, MSG["bad_form"])
        try:
            doc = parse_json(bytes(body), "ascii")
            hexed = doc["token"] if isinstance(doc, dict) else None
            if not is_a(HEX64, hexed):
                raise ValueError
            token = bytes.fromhex(hexed)
        except (ValueError, KeyError, UnicodeDecodeError):
            return refuse(400, MSG["bad_form"])
        finally:
            body.clear()
        del doc, hexed
        answer = await anyio.to_thread.run_sync(mailbox_answer, web.store, token)
        del token
        return JSONResponse(answer)

    @router.post("/mailbox/follow-up", response_class=HTMLResponse)
    async def follow_up(request: Request) -> Response:
        try:
            receipt = await _seal_request(web, request, desks, follow_up=tickets.open)
        except Refusal as exc:
            if exc.form is None:
                raise
            page = mailbox_page(request, None, exc.form.get("mailbox", ""), exc)
            exc.form = None
            return page
        files = receipt.files
        del receipt
        return render(web, request.scope, "followup_received.html", files=files)

    # "delete my replies" (app/web/withdraw_routes.py), with the same mailbox tickets
    router.include_router(withdraw_router(web, tickets.open, derive, _small_form, render))
    return router

