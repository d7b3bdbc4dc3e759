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
import email.utils
import math
import queue
import threading
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from app.crypto import padme
from app.ids import ID, ROLE, is_a

from .errors import N_
from .forms import cross_site

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,expiration"
WRITE_QUEUE = 16  # received pieces waiting for the writer thread, per PATCH
IDLE_SECONDS = 120  # a PATCH that receives nothing for this long is ended (bytes kept)
MAX_ACTIVE_PATCHES = 16  # PATCH streams written at once by this process; more -> 503
AGE_HEADER_MAX = 1 << 20  # app.crypto.header.MAX_HEADER_BYTES
STREAM_CHUNK = 64 * 1024

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
    "upload_long": N_("More data arrived than announced. Nothing of this part was kept."),
    "upload_type": N_("This address only accepts encrypted uploads from this site."),
}


def ciphertext_limit(plaintext_max: int) -> int:
    """Largest age file for a plaintext of at most ``plaintext_max`` bytes after padding."""
    padded = padme(max(plaintext_max, 1))
    chunks = max(1, math.ceil(padded / STREAM_CHUNK))
    return AGE_HEADER_MAX + 16 + padded + 16 * chunks


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
_patch_slots = threading.BoundedSemaphore(MAX_ACTIVE_PATCHES)


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
        from .errors import MSG

        return refuse(request, 403, MSG["cross_site"])
    return None


@router.post("/api/uploads")
async def tus_create(request: Request) -> Response:
    """Create an upload: ``Upload-Length`` (required), ``Upload-Metadata`` desk + role."""
    from .errors import MSG

    if (bad := _precheck(request)) is not None:
        return bad
    web = request.app.state.web
    settings = web.settings
    if web.tokens.check(request.headers.get("guwah-form-token", "")) is None:
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
    store = web.store

    def create() -> Any:
        from app.store import NotFound

        try:
            desk = store.get_desk(meta.get("desk", ""))
        except NotFound:
            return refuse(request, 422, MSG["unknown_desk"])
        if not desk.recipients:
            return refuse(request, 422, MSG["unknown_desk"])
        area = store.uploads
        if area.reserved_bytes() + web.inflight + length > settings.max_pending_bytes:
            return refuse(request, 507, MSG["pending"])
        if store.free_bytes() - length < settings.min_free_bytes:
            return refuse(request, 507, MSG["disk"])
        return area.create(desk.id, role, length)

    info = await anyio.to_thread.run_sync(create)
    if isinstance(info, Response):
        return info
    return Response(status_code=201, headers={
        "Tus-Resumable": TUS_VERSION,
        "Location": f"/api/uploads/{info.id}",
        "Upload-Offset": "0",
        "Upload-Expires": _expires(info),
    })


async def _live_info(request: Request, upload_id: str) -> Any:
    """The upload's info, or a refusal (404 unknown, 410 expired: then it is removed)."""
    import datetime as dt

    from app.store import NotFound

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
    """Append the body at ``Upload-Offset``; 204 with the new offset once it is on disk."""
    from app.store.uploads import UploadTooLong

    from .errors import MSG

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
    settings = web.settings
    if not is_a(ID, upload_id):
        return refuse(request, 404, UMSG["upload_gone"])
    if not _patch_slots.acquire(blocking=False):
        return refuse(request, 503, MSG["busy"], {"Retry-After": "5"})
    try:
        opened = await anyio.to_thread.run_sync(_open_for_patch, request, upload_id)
        if isinstance(opened, Response):
            return opened
        appender = opened
        try:
            if appender.offset != client_offset:
                return refuse(request, 409, UMSG["upload_offset"],
                              {"Upload-Offset": str(appender.offset)})
            try:
                await _stream_into(request, appender)
            except ClientDisconnect:
                # what arrived was written: it is a prefix of what the client sent at this
                # offset, and the client re-syncs with HEAD before it continues
                pass
            except UploadTooLong:
                await anyio.to_thread.run_sync(appender.rollback)
                return refuse(request, 413, UMSG["upload_long"])
            except OSError:  # e.g. the disk filled up under us: keep nothing of this PATCH
                with contextlib.suppress(OSError):
                    await anyio.to_thread.run_sync(appender.rollback)
                return refuse(request, 507, MSG["disk"])
            offset = await anyio.to_thread.run_sync(appender.finish)
        finally:
            await anyio.to_thread.run_sync(appender.close)
    finally:
        _patch_slots.release()
    import datetime as dt

    from app.store.uploads import expires_at

    expires = expires_at(dt.datetime.now(dt.UTC).date(), settings.upload_expiry_hours)
    return Response(status_code=204, headers={
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(offset),
        "Upload-Expires": email.utils.format_datetime(expires, usegmt=True),
    })


async def _stream_into(request: Request, appender: Any) -> None:
    """Copy the request body onto the upload while more of it is being received.

    A writer thread does the write(2) calls (they can stall when the kernel throttles dirty
    pages) while the event loop keeps receiving; at most WRITE_QUEUE pieces (each at most
    what uvicorn hands over at once, a few hundred KiB) wait in between, so memory stays
    bounded. Raises what the body stream or the writer raised (ClientDisconnect, OSError,
    UploadTooLong) after everything received before it was written.
    """
    pieces: queue.Queue[bytes | None] = queue.Queue(WRITE_QUEUE)
    failure: list[BaseException] = []

    def writer() -> None:
        while (piece := pieces.get()) is not None:
            if failure:
                continue  # drain: the producer must never block on a dead writer
            try:
                appender.write(piece)
            except BaseException as exc:  # reported to the event loop below
                failure.append(exc)

    async def produce() -> None:
        body = request.stream().__aiter__()
        try:
            while True:
                # a circuit that dies without closing the connection must not hold the
                # upload (one writer at a time) for ever: give up after IDLE_SECONDS
                with anyio.move_on_after(IDLE_SECONDS) as idle:
                    try:
                        chunk = await body.__anext__()
                    except StopAsyncIteration:
                        break
                if idle.cancelled_caught:
                    raise ClientDisconnect()
                if failure:
                    break
                if not chunk:
                    continue
                try:
                    pieces.put_nowait(chunk)
                except queue.Full:
                    await anyio.to_thread.run_sync(pieces.put, chunk)
        finally:
            try:
                pieces.put_nowait(None)
            except queue.Full:
                await anyio.to_thread.run_sync(pieces.put, None)

    received: list[BaseException] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, writer)
        try:
            await produce()
        except ClientDisconnect as exc:
            received.append(exc)
    if failure:
        raise failure[0]
    if received:
        raise received[0]


def _open_for_patch(request: Request, upload_id: str) -> Any:
    """One thread hop: the upload's appender (one query), or the refusal that fits."""
    import datetime as dt

    from app.store import NotFound
    from app.store.uploads import UploadConflict

    from .errors import MSG

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
    if web.store.free_bytes() - (appender.length - appender.offset) < web.settings.min_free_bytes:
        appender.close()
        return refuse(request, 507, MSG["disk"])
    return appender


@router.delete("/api/uploads/{upload_id}")
async def tus_delete(request: Request, upload_id: str) -> Response:
    """tus termination: the upload and its bytes are removed at once."""
    from app.store import NotFound

    if (bad := _precheck(request)) is not None:
        return bad
    if not is_a(ID, upload_id):
        return refuse(request, 404, UMSG["upload_gone"])
    try:
        await anyio.to_thread.run_sync(request.app.state.web.store.uploads.delete, upload_id)
    except NotFound:
        return refuse(request, 404, UMSG["upload_gone"])
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})
