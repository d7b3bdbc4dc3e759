"""Resumable ciphertext uploads: tus 1.0.0 core + creation + termination + expiration.

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
import contextlib
import datetime as dt
import email.utils
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from app.crypto import padme
from app.crypto.header import MAX_HEADER_BYTES
from app.crypto.stream import payload_size
from app.protocol.ids import ID, ROLE, is_a
from app.protocol.utcday import today
from app.store import NotFound, is_disk_full
from app.store.uploads import UploadConflict, UploadTooLong, expires_at

from .budget import Ticket
from .errors import MSG, N_, Refusal
from .forms import cross_site
from .pacing import BodyStalled, paced_body
from .quota import QuotaExceeded

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,expiration"
WRITE_BATCH = 1024 * 1024  # received bytes appended per worker-thread hand-off

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


def message_limit(settings: Any) -> int:
    """The testimony document: the text (4 bytes a character at worst), answers, file list."""
    return ciphertext_limit(4 * settings.max_text_chars + 64 * 1024 + 1024 * settings.max_files)


def _translate(request: Request, message: str) -> str:
    web = request.app.state.web
    return web.catalogs.get(request.scope.get("guwah.lang", "en")).gettext(message)


def refuse(request: Request, status: int, message: str,
           headers: dict[str, str] | None = None) -> JSONResponse:
    """A refusal as JSON: ``{"error": "<one translated sentence>"}``."""
    return JSONResponse({"error": _translate(request, message)}, status_code=status,
                        headers={"Tus-Resumable": TUS_VERSION, **(headers or {})})


def _expires(info: Any) -> str:
    return email.utils.format_datetime(info.expires, usegmt=True)


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


router = APIRouter()


def _tus_ok(request: Request) -> bool:
    return request.headers.get("tus-resumable") == TUS_VERSION


@router.options("/api/uploads")
@router.options("/api/uploads/{upload_id}")
async def tus_options(request: Request) -> Response:
    web = request.app.state.web
    return Response(status_code=204, headers={
        "Tus-Resumable": TUS_VERSION,
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": TUS_EXTENSIONS,
        "Tus-Max-Size": str(ciphertext_limit(web.settings.max_file_bytes)),
    })


def _precheck(request: Request) -> JSONResponse | None:
    if not _tus_ok(request):
        return refuse(request, 412, UMSG["tus_version"], {"Tus-Version": TUS_VERSION})
    if cross_site(dict(request.headers), request.headers.get("host")):
        return refuse(request, 403, MSG["cross_site"])
    return None


@router.post("/api/uploads")
async def tus_create(request: Request) -> Response:
    """Create an upload: ``Upload-Length`` (required), ``Upload-Metadata`` desk + role."""
    if (bad := _precheck(request)) is not None:
        return bad
    web = request.app.state.web
    settings = web.settings
    nonce = web.tokens.check(request.headers.get("guwah-form-token", ""))
    if nonce is None:
        return refuse(request, 403, MSG["csrf"])
    if "upload-defer-length" in request.headers:
        return refuse(request, 400, UMSG["upload_bad"])
    try:
        length = int(request.headers.get("upload-length", ""))
        meta = parse_metadata(request.headers.get("upload-metadata", ""))
    except ValueError:
        return refuse(request, 400, UMSG["upload_bad"])
    role = meta.get("role", "")
    match = ROLE.fullmatch(role)
    if length < 0 or set(meta) - {"desk", "role"} or match is None:
        return refuse(request, 400, UMSG["upload_bad"])
    if match.group(1) is not None and int(match.group(1)) > settings.max_files:
        return refuse(request, 413, MSG["too_many_files"])
    limit = message_limit(settings) if role == "message" else ciphertext_limit(
        settings.max_file_bytes)
    if length > limit:
        return refuse(request, 413, MSG["file_big"] if role != "message" else MSG["text_long"])
    # a hint, not a reservation: a create that could not fit right now is told at once
    if web.budget.room() < length:
        return refuse(request, 507, MSG["pending"])
    if web.budget.disk_short(length):
        return refuse(request, 507, MSG["disk"])
    try:
        slot = web.ledger.admit(nonce, length)
    except QuotaExceeded as exc:
        return refuse(request, exc.status, exc.message)
    try:
        info = await anyio.to_thread.run_sync(_create, request, meta.get("desk", ""), role,
                                              length)
    except BaseException:
        web.ledger.drop(slot)
        raise
    if isinstance(info, Response):
        web.ledger.drop(slot)
        return info
    web.ledger.bind(slot, info.id)
    return Response(status_code=201, headers={
        "Tus-Resumable": TUS_VERSION,
        "Location": f"/api/uploads/{info.id}",
        "Upload-Offset": "0",
        "Upload-Expires": _expires(info),
    })


def _create(request: Request, desk_name: str, role: str, length: int) -> Any:
    """One thread hop: the new upload's info, or the refusal that fits."""
    store = request.app.state.web.store
    try:
        desk = store.get_desk(desk_name)
    except NotFound:
        return refuse(request, 422, MSG["unknown_desk"])
    if not desk.recipients:
        return refuse(request, 422, MSG["unknown_desk"])
    try:
        return store.uploads.create(desk.id, role, length)
    except Exception as exc:  # the row insert or the empty file: 507 when the disk is full
        if is_disk_full(exc):
            return refuse(request, 507, MSG["disk"])
        raise


async def _live_info(request: Request, upload_id: str) -> Any:
    """The upload's info, or a refusal (404 unknown, 410 expired: then it is removed)."""
    web = request.app.state.web
    area = web.store.uploads
    if not is_a(ID, upload_id):
        return refuse(request, 404, UMSG["upload_gone"])
    try:
        # only what is on disk for good: a PATCH still running may hold unsynced bytes
        info = await anyio.to_thread.run_sync(area.info, upload_id, True)
    except NotFound:
        return refuse(request, 404, UMSG["upload_gone"])
    if info.expires <= dt.datetime.now(dt.UTC):
        try:
            await anyio.to_thread.run_sync(area.delete, upload_id)
        except NotFound:
            pass
        return refuse(request, 410, UMSG["upload_gone"])
    return info


@router.head("/api/uploads/{upload_id}")
async def tus_head(request: Request, upload_id: str) -> Response:
    if not _tus_ok(request):
        return Response(status_code=412, headers={"Tus-Resumable": TUS_VERSION,
                                                  "Tus-Version": TUS_VERSION})
    info = await _live_info(request, upload_id)
    if isinstance(info, Response):
        return Response(status_code=info.status_code, headers={"Tus-Resumable": TUS_VERSION})
    return Response(status_code=200, headers={
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(info.offset),
        "Upload-Length": str(info.length),
        "Upload-Expires": _expires(info),
    })


@router.patch("/api/uploads/{upload_id}")
async def tus_patch(request: Request, upload_id: str) -> Response:
    """Append the body at ``Upload-Offset``; 204 with the new offset once it is on disk.

    No slot is held while the client is quiet: each received piece is charged to the budget
    and written by a worker thread taken for that piece only (``WRITE_THREADS`` at once,
    waited for, never refused).  A body that stalls is cut off after what arrived was
    written; that prefix stays (it is charged to the budget, and the client resumes from the
    offset HEAD reports).
    """
    if (bad := _precheck(request)) is not None:
        return bad
    if request.headers.get("content-type", "").split(";")[0].strip() != (
            "application/offset+octet-stream"):
        return refuse(request, 415, UMSG["upload_type"])
    try:
        client_offset = int(request.headers.get("upload-offset", ""))
    except ValueError:
        return refuse(request, 400, UMSG["upload_bad"])
    web = request.app.state.web
    if not is_a(ID, upload_id):
        return refuse(request, 404, UMSG["upload_gone"])
    opened = await anyio.to_thread.run_sync(_open_for_patch, request, upload_id)
    if isinstance(opened, Response):
        return opened
    appender = opened
    ticket = web.budget.open(upload=True)
    kept = 0
    try:
        if appender.offset != client_offset:
            return refuse(request, 409, UMSG["upload_offset"],
                          {"Upload-Offset": str(appender.offset)})
        outcome = await _receive_into(request, appender, ticket, upload_id)
        if outcome is not None:
            return outcome
        offset = await anyio.to_thread.run_sync(appender.finish)
        kept = offset - appender.start
    finally:
        web.budget.close(ticket, keep=kept)
        await anyio.to_thread.run_sync(appender.close)
    expires = expires_at(today(), web.settings.upload_expiry_hours)
    return Response(status_code=204, headers={
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(offset),
        "Upload-Expires": email.utils.format_datetime(expires, usegmt=True),
    })


async def _receive_into(request: Request, appender: Any, ticket: Ticket,
                        upload_id: str) -> Response | None:
    """Copy the body onto the upload piece by piece; a refusal, or None when it went well.

    A disconnect or a stall keeps what was written (a prefix of what the client sent at
    this offset); a refusal (too long, budget, disk) keeps nothing of this PATCH.
    """
    web = request.app.state.web
    batch: list[bytes] = []
    batched = 0
    try:
        async for piece in _arrived(request):
            await web.budget.take(ticket, len(piece), web.settings.budget_wait_seconds)
            web.ledger.fed(upload_id)
            batch.append(piece)
            batched += len(piece)
            if batched >= WRITE_BATCH:
                await _write(web, appender, ticket, batch)
                batch, batched = [], 0
        if batch:  # also after a disconnect or a stall: what arrived is kept
            await _write(web, appender, ticket, batch)
    except UploadTooLong:
        await _rollback(appender)
        return refuse(request, 413, UMSG["upload_long"])
    except Refusal as exc:  # the budget: no room, or the disk is short
        await _rollback(appender)
        return refuse(request, 507, exc.message)
    except OSError as exc:  # e.g. the disk filled up under us: keep nothing of this PATCH
        await _rollback(appender)
        if not is_disk_full(exc):
            raise
        return refuse(request, 507, MSG["disk"])
    return None


async def _arrived(request: Request) -> AsyncIterator[bytes]:
    """The body's pieces; it just ends when the client disconnects or stalls (the client
    re-syncs with HEAD before it continues)."""
    try:
        async for piece in paced_body(request.stream(), request.app.state.web.pacing):
            yield piece
    except (ClientDisconnect, BodyStalled):
        return


async def _write(web: Any, appender: Any, ticket: Ticket, batch: list[bytes]) -> None:
    """Append pieces that arrived on a worker thread, joined into one write.

    Why batches and not each piece: a piece is often 64 KiB, and each thread hand-off wakes
    the event loop and a thread; at about 1 MiB the hand-offs no longer show in the profile.
    """
    data = batch[0] if len(batch) == 1 else b"".join(batch)
    await anyio.to_thread.run_sync(appender.write, data, limiter=web.write_limiter)
    web.budget.landed(ticket, len(data))


async def _rollback(appender: Any) -> None:
    with contextlib.suppress(OSError), anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(appender.rollback)


def _open_for_patch(request: Request, upload_id: str) -> Any:
    """One thread hop: the upload's appender (one query), or the refusal that fits."""
    web = request.app.state.web
    area = web.store.uploads
    try:
        appender = area.appender(upload_id)
    except UploadConflict:
        return refuse(request, 409, UMSG["upload_busy"])
    except NotFound:
        return refuse(request, 404, UMSG["upload_gone"])
    if appender.expires(web.settings.upload_expiry_hours) <= dt.datetime.now(dt.UTC):
        appender.close()
        try:
            area.delete(upload_id)
        except NotFound:
            pass
        return refuse(request, 410, UMSG["upload_gone"])
    return appender


@router.delete("/api/uploads/{upload_id}")
async def tus_delete(request: Request, upload_id: str) -> Response:
    """tus termination: the upload and its bytes are removed at once."""
    if (bad := _precheck(request)) is not None:
        return bad
    if not is_a(ID, upload_id):
        return refuse(request, 404, UMSG["upload_gone"])
    web = request.app.state.web
    try:
        info = await anyio.to_thread.run_sync(web.store.uploads.info, upload_id)
        await anyio.to_thread.run_sync(web.store.uploads.delete, upload_id)
    except NotFound:
        return refuse(request, 404, UMSG["upload_gone"])
    web.ledger.drop(upload_id)
    web.budget.release_stored(info.offset)
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})
