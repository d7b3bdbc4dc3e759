"""Resumable ciphertext uploads: tus 1.0.0 core + creation + termination + expiration.

This module holds the protocol's pieces (limits, metadata, answers); the routes are in
app/web/routers/uploads.py.

Written here (no tus server library) so that it is plain what happens to the bytes: each
PATCH body is streamed from ``request.stream()`` straight onto the end of the upload's file
in the store's uploads area (``app.store.uploads``), fsynced before the new offset is
acknowledged, and nowhere else (no temp file, no spooling, never ``request.body()``). What
arrives is ciphertext: the witness's browser encrypted it; the commit (app/web/commit.py)
refuses anything that is not an age file for the desk.

Metadata carries only ``desk`` and ``role`` (no file names: they are inside the encrypted
testimony). A write is accepted only at the upload's current offset (409 otherwise), one
writer per upload at a time, so no byte is ever stored twice.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils

from fastapi import Request
from fastapi.responses import JSONResponse

from app.crypto import padme
from app.crypto.header import MAX_HEADER_BYTES
from app.crypto.stream import payload_size
from app.settings import Settings

from .errors import N_
from .rendering import translate
from .state import Web

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,expiration"

UMSG = {
    "tus_version": N_(
        "This upload client speaks another protocol version. Please reload the page."
    ),
    "upload_bad": N_("The upload request was damaged. Please reload the page and send again."),
    "upload_gone": N_(
        "This upload has expired or was removed. Nothing of it was kept. Please send again."
    ),
    "upload_offset": N_(
        "The upload went out of step with the server. The page will continue where it stopped."
    ),
    "upload_busy": N_("This upload is already being sent. Please wait a moment."),
    "upload_long": N_(
        "This part of the upload was larger than expected. Nothing of it was kept. "
        "Please reload the page and send again."
    ),
    "upload_type": N_("This address only accepts encrypted uploads from this site."),
}


def ciphertext_limit(plaintext_max: int) -> int:
    """Largest age file for a plaintext of at most ``plaintext_max`` bytes after padding."""
    return MAX_HEADER_BYTES + payload_size(padme(max(plaintext_max, 1)))


def message_limit(settings: Settings) -> int:
    """The testimony document: the text (4 bytes a character at worst), answers, file list."""
    return ciphertext_limit(4 * settings.max_text_chars + 64 * 1024 + 1024 * settings.max_files)


def refuse(web: Web, request: Request, status: int, message: str,
           headers: dict[str, str] | None = None) -> JSONResponse:
    """A refusal as JSON: ``{"error": "<one translated sentence>"}``."""
    return JSONResponse({"error": translate(web, request.scope, message)}, status_code=status,
                        headers={"Tus-Resumable": TUS_VERSION, **(headers or {})})


def http_date(when: dt.datetime) -> str:
    """An ``Upload-Expires`` value (RFC 9110 date)."""
    return email.utils.format_datetime(when, usegmt=True)


def parse_metadata(header: str) -> dict[str, str]:
    """tus ``Upload-Metadata``: ``key base64,key base64``; ValueError when malformed."""
    out: dict[str, str] = {}
    for item in header.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition(" ")
        if not key or key in out or len(out) >= 8:
            raise ValueError("bad metadata")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("bad metadata") from None
    return out
