"""The tus routes of browser uploads: create, HEAD, PATCH, DELETE (the protocol's pieces and
its limits: app/web/uploads.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from functools import partial

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from app.protocol.ids import ID, ROLE, is_a
from app.protocol.utcday import today
from app.store import NotFound, is_disk_full
from app.store.uploads import (
    UploadAppender,
    UploadArea,
    UploadConflict,
    UploadInfo,
    UploadTooLong,
    expires_at,
)

from ..budget import Ticket
from ..errors import MSG, Refusal
from ..forms import cross_site
from ..pacing import BodyStalled, paced_body
from ..quota import QuotaExceeded
from ..state import Web, WebDep
from ..uploads import (
    TUS_EXTENSIONS,
    TUS_VERSION,
    UMSG,
    ciphertext_limit,
    http_date,
    message_limit,
    parse_metadata,
    refuse,
)
from ..write_behind import WriteBehind

router = APIRouter()


def _tus_ok(request: Request) -> bool:
    return request.headers.get("tus-resumable") == TUS_VERSION


@router.options("/api/uploads")
@router.options("/api/uploads/{upload_id}")
async def tus_options(web: WebDep) -> Response:
    return Response(status_code=204, headers={
        "Tus-Resumable": TUS_VERSION,
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": TUS_EXTENSIONS,
        "Tus-Max-Size": str(ciphertext_limit(web.settings.max_file_bytes)),
    })


def _precheck(web: Web, request: Request) -> JSONResponse | None:
    if not _tus_ok(request):
        return refuse(web, request, 412, UMSG["tus_version"], {"Tus-Version": TUS_VERSION})
    if cross_site(dict(request.headers), request.headers.get("host")):
        return refuse(web, request, 403, MSG["cross_site"])
    return None


@router.post("/api/uploads")
async def tus_create(request: Request, web: WebDep) -> Response:
    """Create an upload: ``Upload-Length`` (required), ``Upload-Metadata`` desk + role."""
    if (bad := _precheck(web, request)) is not None:
        return bad
    settings = web.settings
    nonce = web.tokens.check(request.headers.get("guwah-form-token", ""))
    if nonce is None:
        return refuse(web, request, 403, MSG["csrf"])
    if "upload-defer-length" in request.headers:
        return refuse(web, request, 400, UMSG["upload_bad"])
    try:
        length = int(request.headers.get("upload-length", ""))
        meta = parse_metadata(request.headers.get("upload-metadata", ""))
    except ValueError:
        return refuse(web, request, 400, UMSG["upload_bad"])
    role = meta.get("role", "")
    match = ROLE.fullmatch(role)
    if length < 0 or set(meta) - {"desk", "role"} or match is None:
        return refuse(web, request, 400, UMSG["upload_bad"])
    if match.group(1) is not None and int(match.group(1)) > settings.max_files:
        return refuse(web, request, 413, MSG["too_many_files"])
    limit = message_limit(settings) if role == "message" else ciphertext_limit(
        settings.max_file_bytes)
    if length > limit:
        return refuse(web, request, 413, MSG["file_big"] if role != "message" else MSG["text_long"])
    # a hint, not a reservation: a create that could not fit right now is told at once
    if web.budget.room() < length:
        return refuse(web, request, 507, MSG["pending"])
    if web.budget.disk_short(length):
        return refuse(web, request, 507, MSG["disk"])
    try:
        slot = web.ledger.admit(nonce, length)
    except QuotaExceeded as exc:
        return refuse(web, request, exc.status, exc.message)
    try:
        info = await anyio.to_thread.run_sync(_create, web, request, meta.get("desk", ""), role,
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
        "Upload-Expires": http_date(info.expires),
    })


def _create(web: Web, request: Request, desk_name: str, role: str,
            length: int) -> UploadInfo | JSONResponse:
    """One thread hop: the new upload's info, or the refusal that fits."""
    store = web.store
    try:
        desk = store.get_desk(desk_name)
    except NotFound:
        return refuse(web, request, 422, MSG["unknown_desk"])
    if not desk.recipients:
        return refuse(web, request, 422, MSG["unknown_desk"])
    try:
        return store.uploads.create(desk.id, role, length)
    except Exception as exc:  # the row insert or the empty file: 507 when the disk is full
        if is_disk_full(exc):
            return refuse(web, request, 507, MSG["disk"])
        raise


async def _live_info(web: Web, request: Request, upload_id: str) -> UploadInfo | JSONResponse:
    """The upload's info, or a refusal (404 unknown, 410 expired: then it is removed)."""
    area = web.store.uploads
    if not is_a(ID, upload_id):
        return refuse(web, request, 404, UMSG["upload_gone"])
    try:
        # only what is on disk for good: a PATCH still running may hold unsynced bytes
        info = await anyio.to_thread.run_sync(area.info, upload_id, True)
    except NotFound:
        return refuse(web, request, 404, UMSG["upload_gone"])
    if info.expires <= dt.datetime.now(dt.UTC):
        await anyio.to_thread.run_sync(_drop, area, upload_id)
        return refuse(web, request, 410, UMSG["upload_gone"])
    return info


def _drop(area: UploadArea, upload_id: str) -> None:
    """Remove an expired upload; one already gone is what was wanted."""
    with contextlib.suppress(NotFound):
        area.delete(upload_id)


@router.head("/api/uploads/{upload_id}")
async def tus_head(request: Request, upload_id: str, web: WebDep) -> Response:
    if not _tus_ok(request):
        return Response(status_code=412, headers={"Tus-Resumable": TUS_VERSION,
                                                  "Tus-Version": TUS_VERSION})
    info = await _live_info(web, request, upload_id)
    if isinstance(info, Response):
        return Response(status_code=info.status_code, headers={"Tus-Resumable": TUS_VERSION})
    return Response(status_code=200, headers={
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(info.offset),
        "Upload-Length": str(info.length),
        "Upload-Expires": http_date(info.expires),
    })


@router.patch("/api/uploads/{upload_id}")
async def tus_patch(request: Request, upload_id: str, web: WebDep) -> Response:
    """Append the body at ``Upload-Offset``; 204 with the new offset once it is on disk.

    No slot is held while the client is quiet: each received piece is charged to the budget
    and written by a worker thread taken only while received bytes wait to be written
    (app/web/write_behind.py; ``WRITE_THREADS`` at once, waited for, never refused).  A body
    that stalls is cut off after what arrived was written; that prefix stays (it is charged
    to the budget, and the client resumes from the offset HEAD reports).
    """
    if (bad := _precheck(web, request)) is not None:
        return bad
    if request.headers.get("content-type", "").split(";")[0].strip() != (
            "application/offset+octet-stream"):
        return refuse(web, request, 415, UMSG["upload_type"])
    try:
        client_offset = int(request.headers.get("upload-offset", ""))
    except ValueError:
        return refuse(web, request, 400, UMSG["upload_bad"])
    if not is_a(ID, upload_id):
        return refuse(web, request, 404, UMSG["upload_gone"])
    opened = await anyio.to_thread.run_sync(_open_for_patch, web, request, upload_id)
    if isinstance(opened, Response):
        return opened
    appender = opened
    ticket = web.budget.open(upload=True)
    kept = 0
    try:
        if appender.offset != client_offset:
            return refuse(web, request, 409, UMSG["upload_offset"],
                          {"Upload-Offset": str(appender.offset)})
        outcome = await _receive_into(web, request, appender, ticket, upload_id)
        if outcome is not None:
            return outcome
        offset = await anyio.to_thread.run_sync(_finish, appender)
        kept = offset - appender.start
    finally:
        web.budget.close(ticket, keep=kept)
        if not appender.closed:  # also when the request is cancelled: never leave it open
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(appender.close)
    expires = expires_at(today(), web.settings.upload_expiry_hours)
    return Response(status_code=204, headers={
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(offset),
        "Upload-Expires": http_date(expires),
    })


async def _receive_into(web: Web, request: Request, appender: UploadAppender, ticket: Ticket,
                        upload_id: str) -> Response | None:
    """Copy the body onto the upload piece by piece; a refusal, or None when it went well.

    A disconnect or a stall keeps what was written (a prefix of what the client sent at
    this offset); a refusal (too long, budget, disk) keeps nothing of this PATCH.
    """
    async with anyio.create_task_group() as tg:  # ends only once no write is running
        writer = WriteBehind(tg, appender.write, partial(web.budget.landed, ticket),
                             web.write_limiter)
        failure = await _pump(web, request, writer, ticket, upload_id)
    try:
        if failure is not None:
            raise failure
    except UploadTooLong:
        await _rollback(appender)
        return refuse(web, request, 413, UMSG["upload_long"])
    except Refusal as exc:  # the budget: no room, or the disk is short
        await _rollback(appender)
        return refuse(web, request, 507, exc.message)
    except OSError as exc:  # e.g. the disk filled up under us: keep nothing of this PATCH
        await _rollback(appender)
        if not is_disk_full(exc):
            raise
        return refuse(web, request, 507, MSG["disk"])
    return None


async def _pump(web: Web, request: Request, writer: WriteBehind, ticket: Ticket,
                upload_id: str) -> Exception | None:
    """Charge each received piece and hand it to ``writer``; the failure, returned (not
    raised, so that the task group does not wrap it)."""
    try:
        async for piece in _arrived(web, request):
            await web.budget.take(ticket, len(piece), web.settings.budget_wait_seconds)
            web.ledger.fed(upload_id)
            await writer.put(piece)
        await writer.drain()  # also after a disconnect or a stall: what arrived is kept
    except Exception as exc:
        writer.abandon()  # refused: nothing more of this PATCH is written
        return exc
    except BaseException:  # cancelled (the server stops): nothing more is written either
        writer.abandon()
        raise
    return None


async def _arrived(web: Web, request: Request) -> AsyncIterator[bytes]:
    """The body's pieces; it just ends when the client disconnects or stalls (the client
    re-syncs with HEAD before it continues)."""
    try:
        async for piece in paced_body(request.stream(), web.pacing):
            yield piece
    except (ClientDisconnect, BodyStalled):
        return


def _finish(appender: UploadAppender) -> int:
    """On a worker thread: make the PATCH durable, then let the upload go; the offset.

    One hop for both, not two: each hop wakes a thread and then the event loop, a fixed cost
    that every ``PATCH`` pays whatever its size. If ``finish`` fails, the caller's ``finally``
    closes the appender."""
    offset = appender.finish()
    with contextlib.suppress(OSError):  # the bytes are durable: a failed close loses nothing
        appender.close()
    return offset


async def _rollback(appender: UploadAppender) -> None:
    with contextlib.suppress(OSError), anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(appender.rollback)


def _open_for_patch(web: Web, request: Request,
                    upload_id: str) -> UploadAppender | JSONResponse:
    """One thread hop: the upload's appender (one query), or the refusal that fits."""
    area = web.store.uploads
    try:
        appender = area.appender(upload_id)
    except UploadConflict:
        return refuse(web, request, 409, UMSG["upload_busy"])
    except NotFound:
        return refuse(web, request, 404, UMSG["upload_gone"])
    if appender.expires(web.settings.upload_expiry_hours) <= dt.datetime.now(dt.UTC):
        appender.close()
        _drop(area, upload_id)
        return refuse(web, request, 410, UMSG["upload_gone"])
    return appender


@router.delete("/api/uploads/{upload_id}")
async def tus_delete(request: Request, upload_id: str, web: WebDep) -> Response:
    """tus termination: the upload and its bytes are removed at once."""
    if (bad := _precheck(web, request)) is not None:
        return bad
    if not is_a(ID, upload_id):
        return refuse(web, request, 404, UMSG["upload_gone"])
    try:
        info = await anyio.to_thread.run_sync(web.store.uploads.info, upload_id)
        await anyio.to_thread.run_sync(web.store.uploads.delete, upload_id)
    except NotFound:
        return refuse(web, request, 404, UMSG["upload_gone"])
    web.ledger.drop(upload_id)
    web.budget.release_stored(info.offset)
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})
