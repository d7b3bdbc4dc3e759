"""``POST /api/submissions``: turn complete uploads into one submission, atomically.

The witness's browser sends JSON naming its uploads. Before anything becomes visible the
server reads each upload's age header (no key needed) and checks that it is a well-formed
age file for exactly this desk: one stanza per desk recipient, all of the desk's kind, with
the right argument and body sizes, and a payload whose length fits age's STREAM layout
(16-byte nonce, 64 KiB chunks each with a 16-byte tag, only the last one short), ephemeral
shares that a key generation can output, and a payload that looks like ciphertext. Plaintext,
another desk's file, a made-up header or a truncated upload is refused with a translated
sentence, and the uploads it named are removed (nothing kept). Then one store transaction
adopts the uploads (a rename per file, no copy) and the submission appears.

What no check without keys can catch — a well-formed file for another key of the desk's kind —
is quarantined by ``guwah-editor import`` (app/editor/layout.py). No answer here depends on
whether a mailbox was used before (:func:`_mailbox`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from python_multipart.multipart import parse_options_header

from app.crypto import AgeError, NotAgeFileError, padme
from app.crypto.header import parse_header
from app.crypto.mailbox import token_hash as hash_token
from app.crypto.stream import plaintext_length
from app.crypto.x25519 import is_generated_share
from app.protocol.followup import first_submission
from app.protocol.ids import HEX64, ID, is_a
from app.store import is_disk_full

from .codename_ahead import repeated_soon
from .errors import MSG, N_
from .forms import cross_site
from .jsonbody import BadJson, parse_json
from .uploads import refuse

MAX_JSON = 64 * 1024
READ = 1024 * 1024
SAMPLE = 64 * 1024  # of each payload, tested for looking like ciphertext
MIN_SAMPLE = 272  # the smallest payload after its nonce: 256 padded bytes + a 16-byte tag
PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\n\r"
# stanza type -> (decoded size of its one argument, size of its body)
STANZA_SHAPES = {"X25519": (32, 32), "mlkem768x25519": (1120, 32)}

CMSG = {
    "not_age": N_(
        "A part of your submission did not arrive in the encrypted form that the editors' "
        "keys can open. Nothing was kept. Please reload the page and send again."
    ),
    "wrong_desk": N_(
        "A part of your submission was encrypted for other editors than the desk you chose. "
        "Nothing was kept. Please reload the page and send again."
    ),
    "truncated": N_(
        "A part of your submission arrived incomplete or damaged. Nothing was kept. "
        "Please reload the page and send again."
    ),
    "incomplete": N_(
        "Not all parts of your submission have finished uploading. Please wait for the "
        "upload to finish."
    ),
    "not_ciphertext": MSG["not_ciphertext"],
    "mailbox": N_("No earlier testimony belongs to this codename. Please check it."),
    "reply_key": N_(
        "The reply key does not match this codename's mailbox. Please reload the page."
    ),
}


class Invalid(Exception):
    """An upload is not what the desk can accept; ``key`` names the sentence in CMSG."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _b64(arg: str) -> bytes | None:
    try:
        return base64.b64decode(arg + "=" * (-len(arg) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def stream_payload_ok(payload: int) -> bool:
    """Whether ``payload`` bytes (after the header) can be an age STREAM payload of a
    Padmé-padded plaintext (docs/formats.md §2: every Guwah plaintext is padded), so a cut
    anywhere but at another Padmé length is caught without any key."""
    plain = plaintext_length(payload)
    return plain is not None and padme(plain) == plain


def check_age_file(src: Any, size: int, desk: Any) -> str:
    """Check an upload against ``desk``; return the SHA-256 of its bytes. Raises Invalid."""
    reader = _Hashing(src)
    try:
        header, rest = parse_header(reader)  # type: ignore[arg-type]
    except NotAgeFileError:
        raise Invalid("not_age") from None
    except AgeError:
        raise Invalid("truncated") from None
    header_len = reader.consumed - len(rest)
    check_stanzas(header.stanzas, desk)
    if not stream_payload_ok(size - header_len):
        raise Invalid("truncated")
    sample = bytearray(rest[:SAMPLE])
    while chunk := reader.read(READ):
        if len(sample) < SAMPLE:
            sample += chunk[: SAMPLE - len(sample)]
    if reader.consumed != size:
        raise Invalid("truncated")
    if not looks_random(bytes(sample)):
        raise Invalid("not_ciphertext")
    return reader.digest.hexdigest()


def check_stanzas(stanzas: list[Any], desk: Any) -> None:
    """One stanza per desk key, all of the desk's kind and shape, each with an ephemeral
    X25519 share that a key generation can output, no share twice. Raises Invalid."""
    kinds = {k.kind for k in desk.recipients}
    if len(stanzas) != len(desk.recipients) or kinds != {desk.kind}:
        raise Invalid("wrong_desk")
    shape = STANZA_SHAPES.get(desk.kind or "")
    shares = set()
    for stanza in stanzas:
        if stanza.type != desk.kind or shape is None or len(stanza.args) != 1:
            raise Invalid("wrong_desk")
        arg = _b64(stanza.args[0])
        if arg is None or len(arg) != shape[0] or len(stanza.body) != shape[1]:
            raise Invalid("wrong_desk")
        share = arg[-32:]  # X25519: the share; hybrid: ML-KEM ciphertext ‖ X25519 share
        if share in shares or not is_generated_share(share):
            raise Invalid("not_ciphertext")
        shares.add(share)


def looks_random(sample: bytes) -> bool:
    """Whether the start of a payload can be age ciphertext (a nonce, then ChaCha20-Poly1305
    output: indistinguishable from random bytes).

    Two tests, each failing for random bytes with probability below 2^-100 at the smallest
    Guwah payload (16 + 256 + 16 = 288 bytes): at most 88 % printable text (random: 38 %;
    Hoeffding gives e^(-2n·0.5²)), and zlib cannot shrink it by a tenth (at most 2^(8m+1) inputs
    compress to m bytes). So plain text, zeros or repeated blocks dressed in a header are
    refused; compressed or encrypted bytes of the sender's choosing are not (docs/threat-model.md).
    """
    if len(sample) < MIN_SAMPLE:
        return True
    printable = sum(sample.count(b) for b in PRINTABLE)
    if printable > 0.883 * len(sample):
        return False
    return len(zlib.compress(sample, 6)) >= 0.9 * len(sample)


class _Hashing:
    """A reader that hashes and counts everything read through it."""

    def __init__(self, src: Any) -> None:
        self._src = src
        self.digest = hashlib.sha256()
        self.consumed = 0

    def read(self, n: int = 4096) -> bytes:
        out = self._src.read(4096 if n is None or n < 0 else n)
        self.digest.update(out)
        self.consumed += len(out)
        return bytes(out)

    read1 = read


router = APIRouter()


def _parse(body: bytes, max_files: int) -> dict[str, Any] | None:
    """The commit request, checked for shape; None when malformed."""
    try:
        data = parse_json(body)
    except BadJson:
        return None
    if not isinstance(data, dict):
        return None
    strings = ("csrf", "desk", "message_upload", "token_hash", "reply_recipient")
    if any(not isinstance(data.get(k), str) for k in strings):
        return None
    files = data.get("files", [])
    if not isinstance(files, list) or len(files) > max_files:
        return None
    uploads = [data["message_upload"]]
    for i, item in enumerate(files, start=1):
        if not isinstance(item, dict) or set(item) != {"role", "upload"}:
            return None
        if item["role"] != f"file-{i}" or not isinstance(item["upload"], str):
            return None
        uploads.append(item["upload"])
    if any(not is_a(ID, u) for u in uploads) or len(set(uploads)) != len(uploads):
        return None
    token = data.get("mailbox_token")
    if token is not None and not is_a(HEX64, token):
        return None
    if not is_a(HEX64, data["token_hash"]) and token is None:
        return None
    return data


@router.post("/api/submissions")
async def commit(request: Request) -> Response:
    """Validate the named uploads and make them one visible submission; 201 {"id", ...}."""
    web = request.app.state.web
    settings = web.settings
    ctype = parse_options_header(request.headers.get("content-type", ""))[0]
    if ctype != b"application/json":
        return refuse(request, 415, MSG["content_type"])
    if cross_site(dict(request.headers), request.headers.get("host")):
        return refuse(request, 403, MSG["cross_site"])
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON:
            return refuse(request, 413, MSG["field_long"])
    data = _parse(bytes(body), settings.max_files)
    if data is None:
        return refuse(request, 400, MSG["bad_form"])
    nonce = web.tokens.check(data["csrf"])
    if nonce is None:
        return refuse(request, 403, MSG["csrf"])
    again = web.ahead.repeated(nonce, data)  # sent again after a lost answer: same receipt
    if again is not None:
        return JSONResponse(again, status_code=201)
    if web.tokens.is_spent(nonce):
        return refuse(request, 409, MSG["used"])
    roles = {"message": data["message_upload"]}
    roles.update({f["role"]: f["upload"] for f in data["files"]})
    result = await anyio.to_thread.run_sync(_commit_sync, web, request, data, roles)
    if isinstance(result, Response):
        again = await repeated_soon(web.ahead, nonce, data)  # a twin request stored it first
        return result if again is None else JSONResponse(again, status_code=201)
    if not web.tokens.spend(nonce):
        # a second commit with the same form raced this one; both hold distinct uploads,
        # and this one is stored: report success (the witness has one codename either way)
        pass
    desk = result["desk"]
    answer = {
        "id": result["id"],
        "desk": desk.name,
        "keys": [{"name": k.name, "fingerprint": k.fingerprint} for k in desk.recipients],
    }
    web.ahead.remember(nonce, data, answer)
    return JSONResponse(answer, status_code=201)


def _commit_sync(web: Any, request: Request, data: dict[str, Any],
                 roles: dict[str, str]) -> Any:
    from app.store import (
        AlreadyUsed,
        BadReplyRecipient,
        BadTokenHash,
        NotFound,
        StoreError,
    )

    store = web.store
    area = store.uploads
    try:
        desk = store.get_desk(data["desk"])
    except NotFound:
        return refuse(request, 422, MSG["unknown_desk"])
    if not desk.recipients:
        return refuse(request, 422, MSG["unknown_desk"])
    token_hash, parent_id = _mailbox(store, data)
    if token_hash is None:
        return refuse(request, 422, CMSG["mailbox"])

    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    hashes: dict[str, tuple[str, str]] = {}
    for role, upload_id in roles.items():
        try:
            info = area.info(upload_id)
        except NotFound:
            return refuse(request, 422, CMSG["incomplete"])
        if info.expires <= now:
            return refuse(request, 410, CMSG["incomplete"])
        if info.desk_id != desk.id or info.role != role:
            _remove(area, roles)
            return refuse(request, 422, CMSG["wrong_desk"])
        if not info.complete:
            return refuse(request, 422, CMSG["incomplete"])
        try:
            with area.open(upload_id) as src:
                sha = check_age_file(src, info.length, desk)
        except Invalid as exc:
            _remove(area, roles)
            return refuse(request, 422, CMSG[exc.key])
        hashes[role] = (upload_id, sha)
    try:
        try:
            submission_id = area.adopt(desk, token_hash, data["reply_recipient"], parent_id,
                                       hashes)
        except NotFound:  # the first submission was deleted meanwhile: start the mailbox anew
            submission_id = area.adopt(desk, token_hash, data["reply_recipient"], None, hashes)
    except AlreadyUsed:
        return refuse(request, 409, MSG["used"])
    except BadReplyRecipient:
        return refuse(request, 422, CMSG["reply_key"])
    except BadTokenHash:
        return refuse(request, 400, MSG["bad_form"])
    except StoreError as exc:
        if is_disk_full(exc):  # the rename or the database commit found no space
            return refuse(request, 507, MSG["disk"])
        return refuse(request, 500, MSG["server"])
    return {"id": submission_id, "desk": desk}


def _mailbox(store: Any, data: dict[str, Any]) -> tuple[str | None, str | None]:
    """(token hash, parent id) of the commit; (None, None) if token and hash disagree.

    No answer may depend on whether the mailbox was used before (a person made to hand over
    a codename must be able to say it was never used): a first submission whose token hash
    names a used mailbox is stored like any other, and a follow-up (``mailbox_token``) into a
    mailbox nobody used starts it, with whatever reply recipient it brings, exactly as the
    JavaScript-off paths do. Only a follow-up proves the token, so only it is linked.
    """
    token_hash = data["token_hash"]
    if data.get("mailbox_token") is None:
        return token_hash, None
    computed = hash_token(bytes.fromhex(data["mailbox_token"]))
    if token_hash and token_hash != computed:
        return None, None
    first = first_submission(store.list_submissions(token_hash=computed))
    return computed, (first.id if first is not None else None)


def _remove(area: Any, roles: dict[str, str]) -> None:
    """Drop every upload a refused commit named: nothing of it is kept."""
    from app.store import NotFound

    for upload_id in roles.values():
        try:
            area.delete(upload_id)
        except NotFound:
            pass
